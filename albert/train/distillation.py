"""The distillation objective (`albert distill`): a BERT teacher's last self-attention layer,
taught to an ALBERT student (MiniLMv2: Wang et al. 2021, "Multi-Head Self-Attention Relation
Distillation").

One step, for each micro-batch of plain text (the shards' dynamic masks are undone):
  1. the frozen teacher (eval mode, no gradients, never saved; our own `AlbertModel` built by
     `convert_bert.teacher_reference`, exact for any BERT) reads the text; `LastLayerTap` keeps
     its last layer's queries, keys and values X (batch, T, H) and its last hidden states;
  2. the student reads the same text in one forward - plus, when `mlm_weight > 0`, the masked
     copies appended to the batch, for its own masked-LM loss - and is tapped the same way;
  3. for each of Q, K, V, split into R relation heads of size d_r = H / R, the relation
     softmax(X X^T / sqrt(d_r)) over the non-padding keys is a distribution per query; the loss is
     KL(teacher || student), averaged over non-padding queries, relation heads and the three
     relations. Relations are T x T whatever the hidden size, so teacher and student may differ
     in width, depth and head count - only R must divide both hidden sizes;
  4. with equal widths the last hidden states are also matched (MSE, what a sentence-embedding
     teacher is judged by): loss = relation_loss + hidden_weight * hidden_mse + mlm_weight * mlm_loss.

Everything else (data order, exact resume, checkpoints of the student with its tokenizer, DDP,
metrics, NaN handling) is the loop's, `albert.train.loop`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from albert.config import AlbertConfig
from albert.errors import AlbertError
from albert.modeling import AlbertPreTrainedModel
from albert.train.data import DataSource
from albert.train.distributed import Distributed, unwrap_model
from albert.train.loop import TrainConfig
from albert.train.objective import LOOP_STATS, Batch
from albert.train.precision import Precision

RELATIONS = ("qq", "kk", "vv")
LOSS_NAMES = ("loss", "relation_loss", *(f"{r}_kl" for r in RELATIONS), "hidden_mse", "mlm_loss")
DATA_DIR = "data"  # OUTPUT/data: shards built from raw --data text with the student's tokenizer
MANIFEST_FILE = "manifest.json"
IGNORE_INDEX = -100


@dataclass
class DistillConfig(TrainConfig):
    """The loop's config plus the teacher, the raw inputs and the loss weights.

    `model` is the student directory; `data` is unused (the shards are `inputs` when they are
    `albert data` output, else built into OUTPUT/data)."""

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

    Q, K and V come from the last layer's attention through its `qkv_output` hook point (the
    projections the layer itself computed). With shared layers that attention runs several times
    per forward; only its last application is the last layer, so applications are counted (reset
    by a pre-hook on the base model). Capturing inside the forward keeps it valid under DDP and
    FSDP, whose parameters exist only during the forward. Use as a context manager around one
    forward, or `remove()` when done."""

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
            self.attention.qkv_output.register_forward_hook(self._on_projections),
            base.encoder.register_forward_hook(self._on_encoder),
        ]

    def _reset(self, module: nn.Module, args: Any) -> None:
        self.calls, self.qkv, self.hidden = 0, None, None

    def _on_projections(self, module: nn.Module, args: Any, projected: Tensor) -> None:
        self.calls += 1
        if self.calls == self.applications:
            q, k, v = projected.chunk(3, dim=-1)
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

    def __enter__(self) -> LastLayerTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


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
# the objective


class DistillationObjective:
    """The relation (+ hidden-state, + MLM) losses of a student against a frozen teacher; the
    model the loop trains is the student."""

    name = "distill"
    stat_names = (*LOSS_NAMES, *LOOP_STATS)
    find_unused_parameters = True  # the SOP head and pooler take no part in the objective
    progress = {"loss": "loss", "rel": "relation_loss", "mse": "hidden_mse"}
    progress_format = ".4f"

    def __init__(self, cfg: DistillConfig, dist: Distributed, precision: Precision) -> None:
        from albert.convert_bert import read_teacher

        self.cfg, self.dist, self.precision = cfg, dist, precision
        info = read_teacher(cfg.teacher)
        if not (Path(cfg.model) / "config.json").is_file():
            raise AlbertError(
                f"student {cfg.model} is not a model directory; make one with "
                f"`albert convert-bert --teacher {cfg.teacher} --output STUDENT`"
            )
        check_same_vocabulary(info.directory, Path(cfg.model))
        if cfg.mlm_weight > 0 and not info.has_mlm_head:
            raise AlbertError(
                f"--mlm-weight needs a teacher with an MLM head (BertForMaskedLM/BertForPreTraining); "
                f"{cfg.teacher} has none, so pass --mlm-weight 0"
            )
        self.teacher_positions = int(info.config.get("max_position_embeddings", 512))
        self.teacher = build_teacher(info, dist.device)
        teacher_config, student_config = self.teacher.config, AlbertConfig.from_pretrained(cfg.model)
        self.relation_heads = relation_heads(cfg.relation_heads, teacher_config, student_config)
        self.match_hidden = cfg.hidden_weight > 0 and student_config.hidden_size == teacher_config.hidden_size

    def data_source(self) -> DataSource:
        """The shards (built by rank 0 while the others wait), read with the student's tokenizer
        (the teacher's vocabulary, checked)."""
        cfg = self.cfg
        if self.dist.is_main:
            prepare_data(cfg, announce=self.dist.say)
        self.dist.barrier()
        shards = cfg.inputs[0] if is_built_data(cfg.inputs) else str(Path(cfg.output) / DATA_DIR)
        from albert.data.shards import read_manifest

        longest = read_manifest(Path(shards)).get("options", {}).get("max_seq_length")
        if longest and longest > self.teacher_positions:
            raise AlbertError(
                f"the data has sequences of up to {longest} tokens but the teacher has only "
                f"{self.teacher_positions} positions; use a smaller --max-seq-length"
            )
        return DataSource(shards, tokenizer=cfg.model, held_out=cfg.eval_data)

    def describe(self, model: nn.Module) -> str:
        cfg, student, teacher = self.cfg, model.config, self.teacher.config
        hidden = "on" if self.match_hidden else "off (hidden sizes differ)" if cfg.hidden_weight else "off"
        return (
            f"distilling {cfg.teacher} (H={teacher.hidden_size}) into {cfg.model} "
            f"({model.num_parameters() / 1e6:.1f}M parameters, E={student.embedding_size} H={student.hidden_size} "
            f"L={student.num_hidden_layers} share={student.share}); {self.relation_heads} relation heads, hidden "
            f"MSE {hidden}, MLM weight {cfg.mlm_weight}"
        )

    def losses(self, model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Any]]:
        device, cfg = self.dist.device, self.cfg
        inputs = {
            k: batch[k].to(device, non_blocking=True)
            for k in ("input_ids", "token_type_ids", "attention_mask", "labels")
        }
        labels, mask, segments = inputs["labels"], inputs["attention_mask"], inputs["token_type_ids"]
        plain = torch.where(labels != IGNORE_INDEX, labels, inputs["input_ids"])  # undo the masking
        size = plain.shape[0]
        with_mlm = cfg.mlm_weight > 0

        # 1. the teacher's last layer on the plain text
        with LastLayerTap(self.teacher) as tap, torch.no_grad(), self.precision.autocast(device):
            self.teacher(input_ids=plain, attention_mask=mask, token_type_ids=segments)
        teacher_qkv, teacher_hidden = tap.take()

        # 2. one student forward: the plain text, plus (for MLM) the masked copies. With no MLM,
        # all-ignored labels keep `sparse_prediction` from projecting anything onto the vocabulary.
        ignored = torch.full_like(labels, IGNORE_INDEX)
        student_inputs = {
            "input_ids": torch.cat([plain, inputs["input_ids"]]) if with_mlm else plain,
            "attention_mask": torch.cat([mask, mask]) if with_mlm else mask,
            "token_type_ids": torch.cat([segments, segments]) if with_mlm else segments,
            "labels": torch.cat([ignored, labels]) if with_mlm else ignored,
        }
        with LastLayerTap(unwrap_model(model)) as tap, self.precision.autocast(device):  # type: ignore[arg-type]
            out = model(**student_inputs, sparse_prediction=True)
        student_qkv, student_hidden = tap.take()

        # 3. relation KL for Q, K, V on the plain half; 4. hidden MSE and the MLM loss
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
        losses["loss"] = relation + cfg.hidden_weight * hidden + cfg.mlm_weight * mlm
        return losses, {"tokens": mask.sum()}

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        micro = max(totals["micro_batches"], 1)
        return {name: totals[name] / micro for name in LOSS_NAMES}

    def held_out_sums(self, model: nn.Module, batches: Iterable[Batch], tokenizer: Any) -> Tensor:
        """Token-weighted sums of every loss, and the token count."""
        sums = torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64, device=self.dist.device)
        for batch in batches:
            losses, counts = self.losses(model, batch)
            tokens = counts["tokens"].double()
            for i, name in enumerate(LOSS_NAMES):
                sums[i] += losses[name].double() * tokens
            sums[-1] += tokens
        return sums

    def held_out_record(self, sums: list[float], step: int) -> dict[str, Any]:
        *totals, tokens = sums
        means = {name: total / max(tokens, 1) for name, total in zip(LOSS_NAMES, totals, strict=True)}
        return {"step": step, "eval": True, **means, "tokens": int(tokens)}

    def eval_message(self, record: dict[str, Any]) -> str:
        return (
            f"step {record['step']}: eval loss {record['loss']:.4f} (relations {record['relation_loss']:.4f}, "
            f"hidden mse {record['hidden_mse']:.4f})"
        )


def build_teacher(info: Any, device: torch.device) -> nn.Module:
    """The frozen teacher on `device`; building it does not move the RNG (exact resume)."""
    from albert.convert_bert import teacher_reference

    with torch.random.fork_rng(devices=[]):
        teacher = teacher_reference(info)
    info.state = {}  # the weights now live in the model
    teacher.to(device).eval()
    teacher.requires_grad_(False)
    return teacher


def relation_heads(chosen: int | None, teacher: AlbertConfig, student: AlbertConfig) -> int:
    """--relation-heads, by default the teacher's attention heads; it must divide both widths."""
    heads = chosen or teacher.num_attention_heads
    sizes = (teacher.hidden_size, student.hidden_size)
    if any(size % heads for size in sizes):
        raise AlbertError(
            f"--relation-heads {heads} must divide both hidden sizes (teacher {sizes[0]}, student {sizes[1]}); "
            "choose a common divisor"
        )
    return heads
