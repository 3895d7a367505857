"""Task-agnostic distillation of a BERT teacher into an ALBERT student (MiniLMv2-style).

    albert convert-bert --teacher BERT --output STUDENT --embedding-size 128 --share all
    albert distill --teacher BERT --student STUDENT --data corpus/*.txt --output RUN [--max-steps N ...]
    torchrun --nproc-per-node K -m albert distill ...     # same command line, DDP

The student learns to reproduce the teacher's *last* self-attention layer on plain text
(Wang et al. 2021, "MiniLMv2: Multi-Head Self-Attention Relation Distillation"): for each of
queries, keys and values X (batch, T, H), split into R relation heads of size d_r = H / R,
the relation softmax(X X^T / sqrt(d_r)) over the non-padding keys is a distribution per
query; the loss is KL(teacher || student), averaged over non-padding queries, relation heads
and the three relations (Q-Q, K-K, V-V). Relations are T x T whatever the hidden size, so
teacher and student may differ in width, depth and head count - only R must divide both
hidden sizes. When the widths are equal the last hidden states are also matched (MSE), which
is what a sentence-embedding teacher (mean pooling of the last layer) is judged by.
Optionally (`mlm_weight > 0`, a teacher with an MLM head) the student also keeps its
masked-LM loss on the data's masks, in the same forward (the masked copies are appended to
the batch).

Everything else is pretraining's loop (`albert.pretrain.Pretrainer`): data order, exact
resume, checkpoints (the student, in the transformers layout with its tokenizer), DDP,
metrics.jsonl, NaN handling. The teacher is frozen, in eval mode and never saved; it is run
through our own `AlbertModel` (`convert_bert.teacher_reference`, exact for any BERT), and the
layer internals are read with forward hooks, so neither model is changed for distillation.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert.errors import AlbertError
from albert.modeling import AlbertPreTrainedModel
from albert.pretrain import (
    PretrainConfig,
    Pretrainer,
    add_training_arguments,
    run_pretraining,
)
from albert.train.distributed import Distributed

logger = logging.getLogger("albert")

RELATIONS = ("qq", "kk", "vv")
DATA_DIR = "data"  # OUTPUT/data: shards built from raw --data text with the student's tokenizer
MANIFEST_FILE = "manifest.json"
IGNORE_INDEX = -100


@dataclass
class DistillConfig(PretrainConfig):
    """A pretraining config plus the teacher, the raw inputs and the loss weights.

    `model` is the student directory; `data` is filled in with the shard directory once built."""

    teacher: str = ""
    inputs: list[str] = field(default_factory=list)  # --data: text files/dirs/globs or an `albert data` dir
    relation_heads: int | None = None  # default: the teacher's attention heads
    hidden_weight: float = 1.0  # last-layer hidden-state MSE (equal hidden sizes only); 0: off
    mlm_weight: float = 0.0  # the student's own MLM loss (teacher with an MLM head only); 0: off
    max_seq_length: int = 128  # when building shards from raw text
    data_workers: int = 1
    optimizer: str = "adamw"
    learning_rate: float = 2e-4
    eval_every: int = 500
    eval_batches: int = 20

    def validate(self) -> None:
        super().validate()
        if not self.teacher:
            raise AlbertError("no teacher given; pass --teacher DIR (a BERT in the transformers layout)")
        if not self.inputs:
            raise AlbertError(
                "no data given; pass --data with text files, directories, globs or `albert data` output"
            )
        if self.hidden_weight < 0 or self.mlm_weight < 0:
            raise AlbertError("--hidden-weight and --mlm-weight must be >= 0")
        if self.relation_heads is not None and self.relation_heads < 1:
            raise AlbertError(f"--relation-heads must be at least 1, got {self.relation_heads}")
        if self.data_workers < 1:
            raise AlbertError("--data-workers must be at least 1")


# ----------------------------------------------------------------------------------------
# the loss


def relation_kl(teacher: Tensor, student: Tensor, heads: int, attention_mask: Tensor) -> Tensor:
    """KL(teacher || student) of the self-relations softmax(X X^T / sqrt(d_r)) of `heads` relation
    heads; X is (batch, T, hidden) - the hidden sizes may differ. Padding keys get no probability,
    padding queries no weight; the result is the mean over non-padding queries and heads."""
    log_t = _relation_log_probs(teacher, heads, attention_mask)
    log_s = _relation_log_probs(student, heads, attention_mask)
    keys = attention_mask[:, None, None, :].bool()
    kl = torch.where(keys, log_t.exp() * (log_t - log_s), 0.0).sum(-1)  # (batch, heads, T)
    queries = attention_mask[:, None, :].to(kl.dtype)
    return (kl * queries).sum() / (queries.sum() * heads).clamp(min=1)


def _relation_log_probs(x: Tensor, heads: int, attention_mask: Tensor) -> Tensor:
    batch, length, hidden = x.shape
    x = x.float().view(batch, length, heads, hidden // heads).transpose(1, 2)
    scores = x @ x.transpose(-1, -2) / math.sqrt(hidden // heads)
    scores = scores.masked_fill(~attention_mask[:, None, None, :].bool(), torch.finfo(scores.dtype).min)
    return scores.log_softmax(-1)


def hidden_mse(teacher: Tensor, student: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean squared difference per hidden unit, averaged over non-padding tokens."""
    per_token = (student.float() - teacher.float()).pow(2).mean(-1)
    mask = attention_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


class LastLayerTap:
    """Reads an ALBERT's last layer during its forward: queries, keys, values and output.

    A forward hook on the last layer's attention recomputes Q, K, V from its input with the
    layer's own weights (our attention fuses the three projections and SDPA hides them). With
    shared layers that module runs several times per forward; only its last application is the
    last layer, so applications are counted (reset by a pre-hook on the base model; the extra
    calls of a gradient-checkpointing recomputation never match). Capturing inside the forward
    keeps it valid under DDP and FSDP, whose parameters exist only during the forward."""

    def __init__(self, model: AlbertPreTrainedModel) -> None:
        base = model.base_model
        plan = base.encoder.layer_plan()
        self.attention = plan[-1][0].attention
        self.applications = sum(owner.attention is self.attention for owner, _ in plan)
        self.calls = 0
        self.qkv: tuple[Tensor, Tensor, Tensor] | None = None
        self.hidden: Tensor | None = None
        self.handles = [
            base.register_forward_pre_hook(self._reset),
            self.attention.register_forward_hook(self._on_attention),
            base.encoder.register_forward_hook(self._on_encoder),
        ]

    def _reset(self, module: nn.Module, args: Any) -> None:
        self.calls, self.qkv, self.hidden = 0, None, None

    def _on_attention(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.calls += 1
        if self.calls != self.applications:
            return
        x = args[0]
        fused = args[2] if len(args) > 2 and args[2] is not None else module.fused_qkv()
        q, k, v = F.linear(x, *fused).chunk(3, dim=-1)
        self.qkv = (q, k, v)

    def _on_encoder(self, module: nn.Module, args: Any, output: tuple[Tensor, ...]) -> None:
        self.hidden = output[0]

    def take(self) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        if self.qkv is None or self.hidden is None:
            raise RuntimeError("the last layer did not run; LastLayerTap is attached to another model")
        qkv, hidden = self.qkv, self.hidden
        self.qkv = self.hidden = None  # no references kept past the step
        return qkv, hidden

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


# ----------------------------------------------------------------------------------------
# teacher, student and data checks


def read_vocabulary(directory: Path) -> list[str] | None:
    path = directory / "vocab.txt"
    if not path.is_file():
        return None
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]


def check_same_vocabulary(teacher_dir: Path, student_dir: Path) -> None:
    """The student must tokenise exactly like the teacher: relations are compared token by token."""
    teacher_vocab, student_vocab = read_vocabulary(teacher_dir), read_vocabulary(student_dir)
    if teacher_vocab is None or student_vocab is None or teacher_vocab != student_vocab:
        why = "has no vocab.txt" if student_vocab is None else "has a different vocab.txt"
        raise AlbertError(
            f"student {student_dir} {why} than teacher {teacher_dir}; distillation compares the two token by "
            f"token, so make the student with `albert convert-bert --teacher {teacher_dir} --output STUDENT`"
        )


def is_built_data(inputs: list[str]) -> bool:
    return len(inputs) == 1 and (Path(inputs[0]) / MANIFEST_FILE).is_file()


def _data_matches(manifest: dict[str, Any], cfg: DistillConfig, files: list[Path]) -> bool:
    from albert.data.shards import tokenizer_fingerprint

    options = manifest.get("options", {})
    return (
        manifest.get("tokenizer", {}).get("fingerprint") == tokenizer_fingerprint(cfg.model)
        and options.get("max_seq_length") == cfg.max_seq_length
        and options.get("seed") == cfg.seed
        and options.get("dynamic_masking") is True
        and [f.get("path") for f in manifest.get("inputs", [])] == [str(p) for p in files]
    )


def prepare_data(cfg: DistillConfig, announce: Any = print) -> Path:
    """The shard directory to train on: `--data` itself when it is `albert data` output, else
    OUTPUT/data, built from the raw text with the student's tokenizer - or reused when its
    manifest records the same inputs, tokenizer and options (a --resume, or a second run)."""
    if is_built_data(cfg.inputs):
        return Path(cfg.inputs[0])
    from albert.data import build_pretraining_data
    from albert.data.shards import read_manifest
    from albert.data.text import expand_inputs

    files = expand_inputs(cfg.inputs)
    target = Path(cfg.output) / DATA_DIR
    if (target / MANIFEST_FILE).is_file():
        if _data_matches(read_manifest(target), cfg, files):
            announce(f"reusing the distillation data in {target}")
            return target
        if cfg.resume:
            raise AlbertError(
                f"{target} was built from other inputs, tokenizer or options than this --resume asks for; pass the "
                "same --data, --max-seq-length and --seed as the run being resumed, or delete that directory"
            )
    announce(f"building distillation data from {len(files)} file(s) into {target}")
    build_pretraining_data(
        cfg.model,
        [str(p) for p in files],
        target,
        max_seq_length=cfg.max_seq_length,
        seed=cfg.seed,
        workers=cfg.data_workers,
        dynamic_masking=True,
        progress=True,
    )
    return target


# ----------------------------------------------------------------------------------------
# the run


class Distiller(Pretrainer):
    """Pretraining's loop with the distillation objective; `self.model` is the student."""

    STAT_NAMES = (
        "loss",
        "relation_loss",
        *(f"{r}_kl" for r in RELATIONS),
        "hidden_mse",
        "mlm_loss",
        "tokens",
        "micro_batches",
        "bad",
        "stop",
    )
    LOSS_NAMES = ("loss", "relation_loss", *(f"{r}_kl" for r in RELATIONS), "hidden_mse", "mlm_loss")
    progress_name = "distill"
    find_unused_parameters = True  # the SOP head and pooler take no part in the objective

    def __init__(self, cfg: DistillConfig, dist: Distributed) -> None:
        from albert.convert_bert import read_teacher

        cfg.validate()
        self.teacher_info = read_teacher(cfg.teacher)
        if not (Path(cfg.model) / "config.json").is_file():
            raise AlbertError(
                f"student {cfg.model} is not a model directory; make one with "
                f"`albert convert-bert --teacher {cfg.teacher} --output STUDENT`"
            )
        check_same_vocabulary(self.teacher_info.directory, Path(cfg.model))
        if cfg.mlm_weight > 0 and not self.teacher_info.has_mlm_head:
            raise AlbertError(
                f"--mlm-weight needs a teacher with an MLM head (BertForMaskedLM/BertForPreTraining); "
                f"{cfg.teacher} has none, so pass --mlm-weight 0"
            )
        super().__init__(cfg, dist)
        self.cfg: DistillConfig = cfg
        self.teacher = self._build_teacher()
        self.relation_heads = self._relation_heads()
        self.match_hidden = cfg.hidden_weight > 0 and self.model.config.hidden_size == self.teacher_hidden
        self.student_tap = LastLayerTap(self.model)
        self.teacher_tap = LastLayerTap(self.teacher)

    # -- setup --------------------------------------------------------------------------
    def _build_data(self) -> None:
        cfg = self.cfg
        if self.dist.is_main:
            cfg.data = str(prepare_data(cfg, announce=self._say))  # type: ignore[arg-type]
        self.dist.barrier()
        if not self.dist.is_main:
            built = is_built_data(cfg.inputs)  # type: ignore[attr-defined]
            cfg.data = cfg.inputs[0] if built else str(Path(cfg.output) / DATA_DIR)  # type: ignore[attr-defined]
        cfg.tokenizer = cfg.model  # the student's tokenizer (the teacher's vocabulary, checked)
        super()._build_data()
        teacher_positions = int(self.teacher_info.config.get("max_position_embeddings", 512))
        if self.max_seq_length and self.max_seq_length > teacher_positions:
            raise AlbertError(
                f"the data has sequences of up to {self.max_seq_length} tokens but the teacher has only "
                f"{teacher_positions} positions; use a smaller --max-seq-length"
            )

    def _build_teacher(self) -> nn.Module:
        from albert.convert_bert import teacher_reference

        with torch.random.fork_rng(devices=[]):  # building must not move the RNG (exact resume)
            teacher = teacher_reference(self.teacher_info)
        self.teacher_info.state = {}  # the weights now live in the model
        teacher.to(self.dist.device).eval()
        teacher.requires_grad_(False)
        self.teacher_hidden = teacher.config.hidden_size
        self.teacher_heads = teacher.config.num_attention_heads
        return teacher

    def _relation_heads(self) -> int:
        heads = self.cfg.relation_heads or self.teacher_heads
        sizes = (self.teacher_hidden, self.model.config.hidden_size)
        if any(size % heads for size in sizes):
            raise AlbertError(
                f"--relation-heads {heads} must divide both hidden sizes (teacher {sizes[0]}, student {sizes[1]}); "
                "choose a common divisor"
            )
        return heads

    # -- one step -------------------------------------------------------------------------
    def _step_losses(
        self, model: nn.Module, batch: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        device = self.dist.device
        inputs = {
            k: batch[k].to(device, non_blocking=True)
            for k in ("input_ids", "token_type_ids", "attention_mask", "labels")
        }
        labels, mask = inputs["labels"], inputs["attention_mask"]
        plain = torch.where(labels != IGNORE_INDEX, labels, inputs["input_ids"])  # undo the masking
        size = plain.shape[0]
        with_mlm = self.cfg.mlm_weight > 0

        with torch.no_grad(), self.precision.autocast(device):
            self.teacher(input_ids=plain, attention_mask=mask, token_type_ids=inputs["token_type_ids"])
        teacher_qkv, teacher_hidden = self.teacher_tap.take()

        # One student forward: the plain text, plus (for MLM) the masked copies. With no MLM,
        # all-ignored labels keep `sparse_prediction` from projecting anything onto the vocabulary.
        ignored = torch.full_like(labels, IGNORE_INDEX)
        student_inputs = {
            "input_ids": torch.cat([plain, inputs["input_ids"]]) if with_mlm else plain,
            "attention_mask": torch.cat([mask, mask]) if with_mlm else mask,
            "token_type_ids": torch.cat([inputs["token_type_ids"]] * 2)
            if with_mlm
            else inputs["token_type_ids"],
            "labels": torch.cat([ignored, labels]) if with_mlm else ignored,
        }
        with self.precision.autocast(device):
            out = model(**student_inputs, sparse_prediction=True)
        student_qkv, student_hidden = self.student_tap.take()

        losses = {
            f"{name}_kl": relation_kl(t, s[:size], self.relation_heads, mask)
            for name, t, s in zip(RELATIONS, teacher_qkv, student_qkv, strict=True)
        }
        relation = sum(losses.values()) / len(RELATIONS)
        hidden = (
            hidden_mse(teacher_hidden, student_hidden[:size], mask) if self.match_hidden else relation * 0
        )
        mlm = out.mlm_loss.float() if with_mlm else relation * 0
        losses["relation_loss"] = relation
        losses["hidden_mse"] = hidden
        losses["mlm_loss"] = mlm
        losses["loss"] = relation + self.cfg.hidden_weight * hidden + self.cfg.mlm_weight * mlm
        return losses, {"tokens": mask.sum()}

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """The held-out distillation losses, token-weighted, over up to `eval_batches` global
        batches (the same sequences whatever the process count)."""
        dist = self.dist
        held_out = self._held_out()
        if held_out is None:
            return None
        model, loader = held_out
        was_training = model.training
        model.eval()
        sums = torch.zeros(len(self.LOSS_NAMES) + 1, dtype=torch.float64, device=dist.device)
        for batch in loader:
            losses, counts = self._step_losses(model, batch)
            tokens = counts["tokens"].double()
            for i, name in enumerate(self.LOSS_NAMES):
                sums[i] += losses[name].double() * tokens
            sums[-1] += tokens
        model.train(was_training)
        *totals, tokens = dist.all_reduce_sum(sums)
        result: dict[str, Any] = {"step": self.position.step, "eval": True}
        result.update(
            {name: total / max(tokens, 1) for name, total in zip(self.LOSS_NAMES, totals, strict=True)}
        )
        result["tokens"] = int(tokens)
        return result

    @staticmethod
    def _eval_message(result: dict[str, Any]) -> str:
        return (
            f"step {result['step']}: eval loss {result['loss']:.4f} (relations {result['relation_loss']:.4f}, "
            f"hidden mse {result['hidden_mse']:.4f})"
        )

    # -- logging ------------------------------------------------------------------------------
    def _record(self, interval: dict[str, float], seconds: float, learning_rate: float) -> dict[str, Any]:
        micro = max(interval["micro_batches"], 1)
        record: dict[str, Any] = {"step": self.position.step, "epoch": self.position.epoch}
        record.update({name: interval[name] / micro for name in self.LOSS_NAMES})
        record.update(
            {
                "learning_rate": learning_rate,
                "grad_norm": interval["grad_norm"] / interval["steps"],
                "tokens_per_second": interval["tokens"] / max(seconds, 1e-9),
                "tokens_seen": self.position.tokens_seen,
                "skipped_steps": self.position.skipped_steps,
            }
        )
        return record

    @staticmethod
    def _postfix(record: dict[str, Any]) -> dict[str, str]:
        return {
            "loss": f"{record['loss']:.4f}",
            "rel": f"{record['relation_loss']:.4f}",
            "mse": f"{record['hidden_mse']:.4f}",
            "tok/s": f"{record['tokens_per_second']:.0f}",
        }

    def _describe(self) -> None:
        cfg, student = self.cfg, self.model.config
        hidden = "on" if self.match_hidden else "off (hidden sizes differ)" if cfg.hidden_weight else "off"
        self._say(
            f"distilling {cfg.teacher} (H={self.teacher_hidden}) into {cfg.model} ({self.model.num_parameters() / 1e6:.1f}M "
            f"parameters, E={student.embedding_size} H={student.hidden_size} L={student.num_hidden_layers} "
            f"share={student.share}); {self.relation_heads} relation heads, hidden MSE {hidden}, MLM weight "
            f"{cfg.mlm_weight}; {len(self.train_indices)} sequences ({len(self.eval_indices)} held out); global "
            f"batch {self.global_batch}; {cfg.optimizer} lr {cfg.learning_rate} warmup {cfg.warmup}; "
            f"{self.precision.name} on {self.dist.device}; step {self.position.step} -> {cfg.max_steps}"
        )


def distill(
    teacher: str | Path,
    student: str | Path,
    data: str | Path | list[str] | list[Path],
    output: str | Path,
    **options: Any,
) -> dict[str, Any]:
    """Python entry point: `distill(bert_dir, student_dir, ["corpus.txt"], "run", max_steps=1000)`.
    Returns pretraining's summary; fine-tune from `summary["checkpoint"]`."""
    inputs = [str(p) for p in data] if isinstance(data, (list, tuple)) else [str(data)]
    cfg = DistillConfig(
        data="", model=str(student), output=str(output), teacher=str(teacher), inputs=inputs, **options
    )
    return run_pretraining(cfg, trainer_class=Distiller)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DistillConfig(data="")
    a = parser.add_argument
    a("--teacher", required=True, help="BERT directory (transformers layout, with vocab.txt)")
    a("--student", required=True, help="ALBERT directory with the teacher's vocabulary (from convert-bert)")
    a(
        "--data",
        nargs="+",
        required=True,
        help="text files, directories or globs; or an `albert data` directory",
    )
    a(
        "--output",
        required=True,
        help="run directory: data/, checkpoints/step-N/ (fine-tune from these), metrics.jsonl",
    )
    a(
        "--max-seq-length",
        type=int,
        default=d.max_seq_length,
        help="tokens per sequence when building from text",
    )
    a("--data-workers", type=int, default=d.data_workers, help="processes for building the data")
    a(
        "--relation-heads",
        type=int,
        default=None,
        help="relation heads (default: the teacher's attention heads)",
    )
    a(
        "--hidden-weight",
        type=float,
        default=d.hidden_weight,
        help="weight of the last-layer hidden MSE (0: off)",
    )
    a(
        "--mlm-weight",
        type=float,
        default=d.mlm_weight,
        help="weight of the student's MLM loss (teacher with MLM head)",
    )
    add_training_arguments(parser, d)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    options = vars(args).copy()
    teacher, student, data, output = (options.pop(k) for k in ("teacher", "student", "data", "output"))
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    summary = distill(teacher, student, data, output, **{k: v for k, v in options.items() if k in names})
    if summary["rank"] == 0 and summary["interrupted"] is None and summary.get("checkpoint"):
        print(f"done: step {summary['step']}, student checkpoint {summary['checkpoint']}")
    return 0
