"""`albert evaluate`: score a fine-tuned model on a labelled file; the metrics are the last line of
stdout, as one JSON object.

    albert evaluate --model runs/ner --data dev.conll
    albert evaluate --model runs/pretrain/checkpoints/step-2000 --data held-out-data/

The second form scores a pretraining checkpoint on `albert data` output as `albert pretrain`'s
evaluation does (`albert.train.pretraining.evaluate_pretraining`).

The task and the data options (columns, max length, doc stride, char-level...) come from the
model's `finetune_args.json` (or, without one, from the head class in config.json); flags
override them. Metrics: accuracy, macro-F1 and MCC (classification), Pearson/Spearman
(regression), conlleval entity precision/recall/F1, micro and per type (NER), SQuAD exact
match/F1 (QA), accuracy (multiple choice) - see `albert.metrics`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from albert.errors import AlbertError
from albert.finetune import add_task_arguments, given_task_options
from albert.hardware import PRECISIONS
from albert.hub import weights_directory
from albert.pipelines import load_model
from albert.tasks import TASKS, get_task, task_for_architecture
from albert.tasks.common import run_model


def resolve_task(model: str | Path, task: str | None) -> str:
    """The task named, or the one the model was fine-tuned for."""
    if task is not None:
        return task
    directory = Path(model).parent if Path(model).is_file() else weights_directory(model)  # .onnx: its folder
    args_file, config_file = directory / "finetune_args.json", directory / "config.json"
    if args_file.is_file():
        return json.loads(args_file.read_text(encoding="utf-8"))["task"]
    if config_file.is_file():
        for architecture in json.loads(config_file.read_text(encoding="utf-8")).get("architectures") or []:
            if (name := task_for_architecture(architecture)) is not None:
                return name
    raise AlbertError(f"cannot tell which task {model} was fine-tuned for; pass --task ({', '.join(TASKS)})")


def is_pretraining_data(data: str | Path) -> bool:
    """An `albert data` directory (scored as a pretraining checkpoint), not a labelled file."""
    return Path(data).is_dir() and (Path(data) / "manifest.json").is_file()


def evaluate(
    model: str | Path,
    data: str | Path,
    task: str | None = None,
    tokenizer: str | Path | None = None,
    runtime: str = "torch",
    batch_size: int = 64,
    dtype: Any = None,
    **option_overrides: Any,
) -> dict[str, Any]:
    """The metrics of a fine-tuned model (directory, or .onnx file with runtime="onnx") on `data`;
    for a pretraining checkpoint and an `albert data` directory, the pretraining metrics.
    `dtype` is the fine-tuned torch model's precision (see `albert.pipelines.load_model`)."""
    if is_pretraining_data(data):
        from albert.train.pretraining import evaluate_pretraining

        return {**evaluate_pretraining(model, data, batch_size=batch_size), "step": checkpoint_step(model)}
    name = resolve_task(model, task)
    loaded = load_model(name, model, tokenizer, runtime, dtype)
    options = loaded.task_options(**option_overrides)
    options.check()
    task_obj = get_task(name, options)
    task_obj.restore_labels(loaded.config)
    examples = task_obj.read(data)
    task_obj.check_labels(examples, data)
    features = task_obj.features(examples, loaded.tokenizer, training=False)
    outputs = run_model(
        loaded.runner, features, batch_size, loaded.tokenizer.pad_token_id, task_obj.sequence_outputs
    )
    return {"task": name, "examples": len(examples), **task_obj.metrics(examples, features, outputs)}


def checkpoint_step(model: str | Path) -> int | None:
    """The step a pretraining checkpoint was saved at: its trainer state, else a `step-N` name."""
    from albert.train.loop import STATE_FILE

    try:
        return int(json.loads((Path(model) / STATE_FILE).read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError, TypeError):
        match = re.fullmatch(r"step-(\d+)", Path(model).name)
        return int(match.group(1)) if match else None


NULL_REASONS = {
    "nan": "undefined (NaN): e.g. a correlation or MCC over constant predictions or labels, or a model "
    "whose outputs are not finite",
    "inf": "infinite: the loss overflowed (the model puts no probability on the right answers)",
}


def strict_json(metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` as valid JSON: NaN and infinities become null, and `null_because` says why."""
    reasons: dict[str, str] = {}

    def clean(value: Any, key: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            reasons[key] = NULL_REASONS["nan" if math.isnan(value) else "inf"]
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    cleaned = clean(metrics, "")
    if "step" in metrics and metrics["step"] is None:
        reasons["step"] = "unknown: the checkpoint has no trainer state and no step-N name"
    return {**cleaned, "null_because": reasons} if reasons else cleaned


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="fine-tuned model directory (or .onnx file with --runtime onnx)"
    )
    parser.add_argument(
        "--data",
        required=True,
        help="labelled file in the task's format, or an `albert data` directory to score a pretraining "
        "checkpoint (MLM/SOP accuracy, perplexity, word-order gain)",
    )
    parser.add_argument("--task", choices=list(TASKS), help="default: the task the model was fine-tuned for")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the model's)")
    parser.add_argument("--runtime", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="fine-tuned torch models: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
    )
    add_task_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise AlbertError(f"--batch-size must be at least 1, not {args.batch_size}")
    overrides = given_task_options(args)
    pretraining = is_pretraining_data(args.data)
    if pretraining and args.precision == "bf16":
        raise AlbertError(
            "--precision bf16 applies to fine-tuned models; pretraining checkpoints score in fp32"
        )
    announce = args.runtime == "torch" and not pretraining
    if announce:
        from albert.hardware import announce_precision, choose_precision  # torch: the torch runtime only

        precision = choose_precision(args.precision)
    else:
        precision = args.precision
    metrics = evaluate(
        args.model,
        args.data,
        args.task,
        args.tokenizer,
        args.runtime,
        args.batch_size,
        precision,
        **overrides,
    )
    if announce:
        announce_precision("evaluate", args.precision, precision)
    print(json.dumps(strict_json(metrics), allow_nan=False))
    return 0
