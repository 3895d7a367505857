"""`albert finetune`: fine-tune an ALBERT model on a labelled task, keep the best dev checkpoint.

    albert finetune --task text-classification --train train.csv --dev dev.csv \\
        --model runs/pretrain/final --output runs/sst

The recipe is the paper's (AdamW, linear warmup then linear decay, dropout in the head), with
two CPU-friendly choices: batches are bucketed by length (sorted within chunks of 50 batches,
then shuffled, deterministic in the seed) and padded only to their own longest member, so
little compute goes to padding; and dev is evaluated after every epoch with early stopping
(`--patience`). The output directory always holds the best model so far, in the transformers
layout (config.json with id2label/label2id, model.safetensors, tokenizer files) plus
`finetune_args.json` (everything needed to evaluate and predict with it) and `metrics.jsonl`.

Layer-wise learning-rate decay (`--layerwise-lr-decay d`) gives depth k the rate lr * d^(top-k).
In BERT every layer is a depth. Under ALBERT's cross-layer sharing one block *is* all L layers,
so there are only three depths: embeddings + the E->H projection (lr * d^2), the shared block
(lr * d) and the pooler + task head (lr). With grouped sharing (num_hidden_groups = G) each
group is its own depth; with `share="none"` this is exactly BERT's per-layer decay.

Task-specific distillation (`--teacher DIR`, Hinton et al. 2015): a model already fine-tuned on
the same task and labels (typically a larger one, e.g. a BERT converted with `albert convert-bert`
and fine-tuned) runs frozen next to the student on every batch, and the student's loss becomes
(1 - alpha) * the task loss + alpha * the distance to the teacher's outputs: KL between the
temperature-T softmaxes (times T^2, so gradients keep their scale) for class, token, choice and
span logits; MSE for regression; BCE to the teacher's sigmoid for multi-label. Soft targets carry
what the teacher learned about similar classes and hard examples, which a small student cannot
find in the one-hot labels alone. Teacher and student must tokenise identically (checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from albert.errors import AlbertError
from albert.hardware import PRECISIONS, announce
from albert.hub import resolve
from albert.paths import check_output, save_guard
from albert.tasks import TASKS, get_task
from albert.tasks.common import (
    Task,
    TaskOptions,
    feature_length,
    length_bucketed_batches,
    pad_batch,
    run_model,
)
from albert.tokenization import AlbertTokenizer

FINETUNE_ARGS = "finetune_args.json"
METRICS_FILE = "metrics.jsonl"


@dataclass
class FinetuneConfig:
    """Everything `finetune` needs; the CLI flags map one to one (`--learning-rate` -> learning_rate)."""

    task: str
    train: str
    dev: str
    model: str  # a preset name (random init), a config.json, or a model/pretraining directory
    output: str
    tokenizer: str | None = None  # default: the tokenizer saved in the model directory
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    learning_rate: float = 3e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 42
    patience: int | None = None  # epochs without dev improvement before stopping
    layerwise_lr_decay: float = 1.0
    max_steps: int | None = None
    logging_steps: int = 10
    max_grad_norm: float = 1.0
    teacher: str | None = None  # a model fine-tuned on the same task and labels, to distil from
    distill_alpha: float = 0.5  # weight of the teacher's soft targets (1 - alpha: the labels)
    distill_temperature: float = 2.0
    overwrite: bool = False  # allow --output to be the --model directory (replaced by the best epoch)
    precision: str = "auto"  # auto: bf16 autocast on CPUs with native bf16, else fp32 (albert.hardware)
    task_options: TaskOptions = field(default_factory=TaskOptions)

    def check(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"unknown task {self.task!r} (choose one of: {', '.join(TASKS)})")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append("--epochs and --batch-size must be at least 1")
        if not 0 < self.learning_rate < math.inf:
            problems.append(f"--learning-rate must be positive and finite, not {self.learning_rate}")
        if not 0 <= self.weight_decay < math.inf:
            problems.append(f"--weight-decay must be >= 0, not {self.weight_decay}")
        if self.logging_steps < 1:
            problems.append(f"--logging-steps must be at least 1, not {self.logging_steps}")
        if self.seed < 0:
            problems.append(f"--seed must be >= 0, not {self.seed}")
        if not 0 <= self.warmup_ratio < 1:
            problems.append(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if not 0 < self.layerwise_lr_decay <= 1:
            problems.append(f"--layerwise-lr-decay must be in (0, 1], not {self.layerwise_lr_decay}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"--max-steps must be at least 1, not {self.max_steps}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"--patience must be at least 1, not {self.patience}")
        if not 0 <= self.distill_alpha <= 1:
            problems.append(f"--distill-alpha must be in [0, 1], not {self.distill_alpha}")
        if not self.distill_temperature > 0:
            problems.append(f"--distill-temperature must be positive, not {self.distill_temperature}")
        if self.precision not in PRECISIONS:
            problems.append(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if problems:
            raise AlbertError("; ".join(problems))
        self.task_options.check()
        check_output(self.output, directory=True)
        if Path(self.model).is_dir() and Path(self.output).resolve() == Path(self.model).resolve():
            if not self.overwrite:
                raise AlbertError(
                    f"--output {self.output} is the --model directory: fine-tuning would overwrite the model "
                    "it starts from; choose another --output, or pass --overwrite to replace it"
                )


# ----------------------------------------------------------------------------------------
# model, tokenizer, optimiser


def load_tokenizer(config: FinetuneConfig) -> AlbertTokenizer:
    if config.tokenizer is not None:
        from albert.data.shards import check_same_tokenizer

        check_same_tokenizer(config.tokenizer, config.model)
        return AlbertTokenizer.from_pretrained(config.tokenizer)
    model_path = resolve(config.model).directory
    if model_path is not None and (
        (model_path / "spiece.model").is_file() or (model_path / "vocab.txt").is_file()
    ):
        return AlbertTokenizer.from_pretrained(model_path)
    raise AlbertError(
        f"--model {config.model} holds no tokenizer; pass --tokenizer DIR (the directory `albert tokenizer train` wrote)"
    )


def build_task_model(config: FinetuneConfig, task: Task, tokenizer: Any, overrides: dict[str, Any]) -> Any:
    """The task's head class from a preset (vocabulary sized to the tokenizer), a config.json or a
    checkpoint directory (a pretraining checkpoint's encoder loads; the head starts fresh)."""
    from albert.checkpoint import build_model
    from albert.modeling import MODEL_CLASSES

    spec = resolve(config.model)
    if spec.preset is not None:
        overrides = {**overrides, "vocab_size": len(tokenizer)}
    model = build_model(MODEL_CLASSES[task.model_class], spec, **overrides)
    if model.config.vocab_size < len(tokenizer):
        raise AlbertError(
            f"the tokenizer has {len(tokenizer)} pieces but the model's vocab_size is {model.config.vocab_size}; "
            "use the tokenizer the model was pretrained with"
        )
    if task.options.max_seq_length > model.config.max_position_embeddings:
        raise AlbertError(
            f"--max-seq-length {task.options.max_seq_length} exceeds the model's max_position_embeddings="
            f"{model.config.max_position_embeddings}"
        )
    return model


def layer_depth(name: str, config: Any) -> int:
    """Depth of a parameter for layer-wise LR decay: 0 = embeddings and the E->H projection,
    1..G = the G shared layer groups, G + 1 = pooler and task head (see the module docstring)."""
    name = name.removeprefix("albert.")
    if name.startswith(("embeddings.", "encoder.embedding_hidden_mapping_in.")):
        return 0
    if match := re.match(r"encoder\.albert_layer_groups\.(\d+)\.", name):
        return 1 + int(match.group(1))
    if match := re.match(r"encoder\.unshared_layers\.(\d+)\.", name):
        layer = int(match.group(1)) // config.inner_group_num
        return 1 + int(layer / (config.num_hidden_layers / config.num_hidden_groups))
    return config.num_hidden_groups + 1


def apply_layerwise_lr_decay(optimizer: Any, model: Any, decay: float) -> None:
    """Split each optimizer group by depth and scale its lr by decay^(top - depth), in place."""
    top = model.config.num_hidden_groups + 1
    scale = {id(p): decay ** (top - layer_depth(n, model.config)) for n, p in model.named_parameters()}
    groups = []
    for group in optimizer.param_groups:
        by_scale: dict[float, list[Any]] = defaultdict(list)
        for param in group["params"]:
            by_scale[scale[id(param)]].append(param)
        settings = {k: v for k, v in group.items() if k != "params"}
        groups.extend({**settings, "params": ps, "lr": group["lr"] * s} for s, ps in sorted(by_scale.items()))
    optimizer.param_groups = []
    for group in groups:
        optimizer.add_param_group(group)


# ----------------------------------------------------------------------------------------
# task-specific distillation

LOGIT_OUTPUTS = ("logits", "start_logits", "end_logits")


def load_teacher(config: FinetuneConfig, task: Task, tokenizer: Any, student: Any) -> Any:
    """The frozen teacher for `--teacher`: same task head, same labels, same tokenisation."""
    from albert.checkpoint import build_model
    from albert.modeling import MODEL_CLASSES
    from albert.tokenization import AlbertTokenizer

    assert config.teacher is not None
    path = Path(config.teacher)
    if not (path / "config.json").is_file():
        raise AlbertError(
            f"--teacher {config.teacher} is not a model directory (no config.json); pass the output "
            "directory of an `albert finetune` run on this task"
        )
    architectures = json.loads((path / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    if task.model_class not in architectures:
        raise AlbertError(
            f"--teacher {config.teacher} is not fine-tuned for {task.name} (its architecture is "
            f"{', '.join(architectures) or 'not recorded'}); fine-tune it on this task first with `albert finetune`"
        )
    teacher_tokenizer = AlbertTokenizer.from_pretrained(path)
    if (
        teacher_tokenizer.get_vocab() != tokenizer.get_vocab()
        or teacher_tokenizer.options != tokenizer.options
    ):
        raise AlbertError(
            f"--teacher {config.teacher} tokenises differently from the student (another vocabulary or "
            "normalisation); distillation compares outputs token by token, so give the student the "
            "teacher's tokenizer (e.g. make it with `albert convert-bert` from the teacher's base model)"
        )
    teacher = build_model(MODEL_CLASSES[task.model_class], path)
    want, have = student.config.label2id, teacher.config.label2id
    labelled = task.model_class in ("AlbertForSequenceClassification", "AlbertForTokenClassification")
    if teacher.config.num_labels != student.config.num_labels or (labelled and want != have):
        raise AlbertError(
            f"--teacher {config.teacher} predicts labels {have} but the training data has {want}; "
            "the teacher must be fine-tuned on the same task and label set"
        )
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def soft_target_loss(
    student: Any, teacher: Any, temperature: float, problem: str | None, keep: Any = None
) -> Any:
    """Distance from the student's outputs to the teacher's on the positions in `keep` (all if None).

    Classes (last dim) are compared by KL(teacher_T || student_T) * T^2; regression by MSE;
    multi-label by BCE to sigmoid(teacher)."""
    import torch.nn.functional as F

    if keep is not None:
        student, teacher = student[keep], teacher[keep]
    if student.numel() == 0:
        return student.sum()
    student, teacher = student.float(), teacher.float()
    if problem == "regression":
        return F.mse_loss(student, teacher)
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(student, teacher.sigmoid())
    log_student = F.log_softmax(student / temperature, dim=-1).flatten(0, -2)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1).flatten(0, -2)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def distillation_loss(
    student_out: Any, teacher_out: Any, inputs: dict[str, Any], model: Any, temperature: float
) -> Any:
    """The soft-target loss summed over the task's logit outputs (start and end for QA: averaged).

    Token logits count only where the student has a label; span logits exclude padding."""
    from albert.modeling import AlbertForSequenceClassification, resolve_problem_type
    from albert.tasks.common import IGNORE_INDEX

    names = [n for n in LOGIT_OUTPUTS if getattr(student_out, n, None) is not None]
    # the rule the task loss follows; token, span and choice logits are always class scores
    sequence = isinstance(model, AlbertForSequenceClassification)
    problem = resolve_problem_type(model.config, inputs.get("labels")) if sequence else None
    total = 0.0
    for name in names:
        student, teacher = getattr(student_out, name), getattr(teacher_out, name)
        keep = None
        if name != "logits":  # span logits: one class per position, padding masked out of both
            pad = inputs["attention_mask"] == 0
            student, teacher = student.masked_fill(pad, -1e4), teacher.masked_fill(pad, -1e4)
        elif student.dim() == 3 and "labels" in inputs:  # token classification
            keep = inputs["labels"] != IGNORE_INDEX
        total = total + soft_target_loss(student, teacher, temperature, problem, keep)
    return total / len(names)


# ----------------------------------------------------------------------------------------
# saving


def save_best(model: Any, tokenizer: Any, output: Path, args: dict[str, Any]) -> None:
    """Write the model, tokenizer and finetune_args.json into a temporary sibling directory, then
    move each file into `output` with an atomic rename: no file is ever half written."""
    staging = output / ".best.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    kept = f"the previous best checkpoint in {output} is intact" if (output / "config.json").is_file() else ""
    try:
        with save_guard(staging, kept):
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / FINETUNE_ARGS).write_text(json.dumps(args, indent=2) + "\n", encoding="utf-8")
    finally:
        if not (staging / FINETUNE_ARGS).is_file():  # failed part-way: nothing half-written stays
            shutil.rmtree(staging, ignore_errors=True)
    for path in staging.iterdir():
        os.replace(path, output / path.name)
    staging.rmdir()


def train_step(
    model: Any,
    batch: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    max_grad_norm: float,
    teacher: Any = None,
    config: FinetuneConfig | None = None,
    precision: Any = None,
) -> float:
    """One optimizer step on a padded numpy batch; the loss (weights untouched if it is not finite).

    With a teacher the loss mixes the task loss and the soft-target loss (`config.distill_alpha`).
    `precision` (an `albert.train.precision.Precision`; None: fp32) is the forwards' autocast; the
    weights, their gradients and the optimizer state stay fp32, and the losses are fp32."""
    import contextlib

    import torch

    from albert.tasks.common import MODEL_INPUTS

    inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
    autocast = precision.autocast(torch.device("cpu")) if precision is not None else contextlib.nullcontext()
    with autocast:
        out = model(**inputs)
        if teacher is not None:
            with torch.no_grad():
                teacher_out = teacher(**{k: inputs[k] for k in MODEL_INPUTS})
    loss = out.loss.float()
    if teacher is not None:
        assert config is not None
        soft = distillation_loss(out, teacher_out, inputs, model, config.distill_temperature)
        loss = (1 - config.distill_alpha) * loss + config.distill_alpha * soft
    if not torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        return loss.item()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def evaluate_model(
    model: Any, task: Task, examples: list[Any], features: list[Any], batch_size: int, pad_id: int
) -> dict[str, Any]:
    """Dev metrics of an in-memory model (the same path `albert evaluate` takes)."""
    from albert.pipelines import TorchRunner

    was_training = model.training
    model.eval()
    outputs = run_model(TorchRunner(model), features, batch_size, pad_id, task.sequence_outputs)
    model.train(was_training)
    return task.metrics(examples, features, outputs)


# ----------------------------------------------------------------------------------------
# the loop


def finetune(config: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune, evaluate on dev after each epoch, keep the best model in `config.output`.

    Returns the best epoch, the metric it was selected by, its dev metrics and the step count."""
    import torch

    from albert.optim import build_optimizer, linear_warmup_decay
    from albert.train.metrics import MetricsLog, progress_bar
    from albert.train.precision import resolve_precision
    from albert.train.rng import seed_everything

    config.check()
    precision = resolve_precision(config.precision, torch.device("cpu"))
    seed_everything(config.seed)
    tokenizer = load_tokenizer(config)
    task = get_task(config.task, dataclasses.replace(config.task_options))
    train_examples, dev_examples = task.read(config.train), task.read(config.dev)
    overrides = task.fit_labels(train_examples)
    task.check_labels(train_examples, config.train)
    task.check_labels(dev_examples, config.dev)
    model = build_task_model(config, task, tokenizer, overrides)
    teacher = load_teacher(config, task, tokenizer, model) if config.teacher else None
    train_features = task.features(train_examples, tokenizer, training=True)
    dev_features = task.features(dev_examples, tokenizer, training=False)
    if not train_features:
        raise AlbertError(f"{config.train} gave no usable training examples")
    lengths = [feature_length(f) for f in train_features]

    optimizer = build_optimizer(model, "adamw", config.learning_rate, config.weight_decay)
    if config.layerwise_lr_decay < 1:
        apply_layerwise_lr_decay(optimizer, model, config.layerwise_lr_decay)
    steps_per_epoch = math.ceil(len(train_features) / config.batch_size)
    total_steps = min(config.max_steps or math.inf, config.epochs * steps_per_epoch)
    scheduler = linear_warmup_decay(optimizer, int(config.warmup_ratio * total_steps), int(total_steps))

    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(output / METRICS_FILE)
    args = {
        **{k: v for k, v in dataclasses.asdict(config).items() if k != "task_options"},
        "task_options": dataclasses.asdict(config.task_options),
        "resolved": task.saved_options(),
        "trained_precision": precision.name,  # what "auto" chose; the saved weights are fp32 either way
    }
    best: dict[str, Any] = {"epoch": None, "score": -math.inf}
    step, stale, running = 0, 0, []
    announce("finetune", precision.description)
    bar = progress_bar(int(total_steps), desc=f"finetune {config.task}")
    model.train()
    try:
        for epoch in range(1, config.epochs + 1):
            for indices in length_bucketed_batches(
                lengths, config.batch_size, shuffle=True, seed=config.seed + epoch
            ):
                batch = pad_batch([train_features[i] for i in indices], tokenizer.pad_token_id)
                loss = train_step(
                    model, batch, optimizer, scheduler, config.max_grad_norm, teacher, config, precision
                )
                if not math.isfinite(loss):
                    raise AlbertError(
                        f"the loss became {loss} at step {step + 1}; lower --learning-rate "
                        f"(the best checkpoint so far is kept in {output})"
                    )
                step += 1
                running.append(loss)
                bar.update(1)
                if step % config.logging_steps == 0:
                    log.write(
                        {
                            "step": step,
                            "epoch": epoch,
                            "loss": sum(running) / len(running),
                            "lr": scheduler.get_last_lr()[0],
                        }
                    )
                    bar.set_postfix(loss=f"{sum(running) / len(running):.4f}")
                    running = []
                if step >= total_steps:
                    break
            metrics = evaluate_model(
                model, task, dev_examples, dev_features, config.eval_batch_size, tokenizer.pad_token_id
            )
            name = task.primary_metric(metrics)
            log.write({"step": step, "epoch": epoch, "eval": True, **metrics})
            if metrics[name] > best["score"]:
                best = {"epoch": epoch, "step": step, "metric": name, "score": metrics[name], "dev": metrics}
                save_best(model, tokenizer, output, {**args, "best": best})
                stale = 0
            else:
                stale += 1
            if step >= total_steps or (config.patience is not None and stale >= config.patience):
                break
    finally:
        bar.close()
        log.close()
    return {
        "output_dir": str(output),
        "steps": step,
        **{k: best[k] for k in ("epoch", "metric", "score", "dev")},
    }


# ----------------------------------------------------------------------------------------
# CLI


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Data options shared with `albert evaluate` (defaults None: unset flags fall back to the
    saved fine-tuning options, then to TaskOptions' defaults)."""
    group = parser.add_argument_group("data")
    group.add_argument("--max-seq-length", type=int, help="tokens per sequence (default 128)")
    group.add_argument("--text-column", help="text-classification: text column (default text)")
    group.add_argument("--text-pair-column", help="text-classification: second text column, for pairs")
    group.add_argument("--label-column", help="text-classification: label column (default label)")
    group.add_argument(
        "--problem-type",
        choices=["single_label_classification", "multi_label_classification", "regression"],
        help="text-classification: default detected from the labels",
    )
    group.add_argument("--token-column", type=int, help="token-classification: token column (default 0)")
    group.add_argument(
        "--tag-column", type=int, help="token-classification: tag column (default -1, the last)"
    )
    group.add_argument(
        "--char-level",
        action=argparse.BooleanOptionalAction,
        help="token-classification: one token per character (default: detected from the data)",
    )
    group.add_argument(
        "--doc-stride", type=int, help="question-answering: tokens between windows (default 128)"
    )
    group.add_argument(
        "--max-query-length", type=int, help="question-answering: question tokens kept (default 64)"
    )
    group.add_argument("--n-best", type=int, help="question-answering: start/end candidates (default 20)")
    group.add_argument(
        "--max-answer-length", type=int, help="question-answering: longest answer in tokens (default 30)"
    )
    group.add_argument(
        "--null-score-diff-threshold",
        type=float,
        help="question-answering (v2): predict no answer above this (default 0)",
    )
    group.add_argument(
        "--version-2-with-negative",
        action=argparse.BooleanOptionalAction,
        help="question-answering: allow no-answer predictions (default: detected from the training file)",
    )


def given_task_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options set on the command line (flags left unset are absent)."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TaskOptions)
        if getattr(args, f.name, None) is not None
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=list(TASKS))
    parser.add_argument("--train", required=True, help="training file")
    parser.add_argument(
        "--dev", required=True, help="dev file (evaluated every epoch; the best epoch is kept)"
    )
    parser.add_argument(
        "--model", required=True, help="preset name (random init), config.json, or model directory"
    )
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the model directory's)")
    parser.add_argument("--output", required=True, help="output directory (holds the best model)")
    parser.add_argument(
        "--overwrite", action="store_true", help="allow --output to be the --model directory (it is replaced)"
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--patience", type=int, help="stop after this many epochs without dev improvement")
    parser.add_argument(
        "--layerwise-lr-decay",
        type=float,
        default=1.0,
        help="d in (0, 1]: depth k trains at lr * d^(top - k); under ALBERT's full sharing the depths are "
        "embeddings + E->H projection, the shared block, the head (default 1 = off)",
    )
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="training precision: auto = bf16 autocast (fp32 master weights) on CPUs with native bf16 "
        "(AVX512-BF16/AMX), else fp32; the saved model is fp32 either way",
    )
    group = parser.add_argument_group("distillation from a fine-tuned teacher")
    group.add_argument(
        "--teacher",
        help="a model fine-tuned on the same task and labels, with the student's tokenizer; the student "
        "also learns its soft outputs",
    )
    group.add_argument(
        "--distill-alpha",
        type=float,
        default=0.5,
        help="weight of the teacher's soft targets; 1 - alpha goes to the labels (default 0.5)",
    )
    group.add_argument(
        "--distill-temperature", type=float, default=2.0, help="softmax temperature T (default 2)"
    )
    add_task_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = FinetuneConfig(
        task=args.task,
        train=args.train,
        dev=args.dev,
        model=args.model,
        output=args.output,
        tokenizer=args.tokenizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        seed=args.seed,
        patience=args.patience,
        layerwise_lr_decay=args.layerwise_lr_decay,
        max_steps=args.max_steps,
        logging_steps=args.logging_steps,
        teacher=args.teacher,
        distill_alpha=args.distill_alpha,
        distill_temperature=args.distill_temperature,
        overwrite=args.overwrite,
        precision=args.precision,
        task_options=TaskOptions.from_dict(given_task_options(args)),
    )
    result = finetune(config)
    print(json.dumps(result))
    return 0
