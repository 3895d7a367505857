"""Pretraining: masked-LM + sentence-order prediction, the ALBERT recipe.

    albert pretrain --data DATA --model albert-tiny --output RUN [--max-steps N ...]
    torchrun --nproc-per-node K -m albert pretrain ...      # same command line, DDP

The recipe (Lan et al. 2019, sec. 4.1): LAMB (no bias correction, weight decay 0.01 except on
LayerNorm and biases), linear warmup then linear decay, gradient clipping at global norm 1.0,
MLM logits only at the masked positions (`sparse_prediction=True`: the vocabulary projection
over every position would be most of a small model's cost).

Exact resumption is a design goal, not a hope: data order comes from our own sampler (one
seeded permutation per epoch, consumed `global batch` indices per step and cut into
per-rank micro-batches), so a checkpoint stores the data position as (epoch, index) next to
the model, optimiser, scheduler and every RNG. On CPU, N steps + resume to 2N reproduces the
per-step losses of 2N steps straight. Rank 0 writes logs and checkpoints; every rank resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from albert.checkpoint import build_model
from albert.config import PRESETS
from albert.errors import AlbertError
from albert.modeling import AlbertForPreTraining
from albert.optim import build_optimizer, linear_warmup_decay
from albert.paths import check_output
from albert.training import (
    PRECISIONS,
    CheckpointDirectory,
    CheckpointInfo,
    Distributed,
    MetricsLog,
    StopSignal,
    TensorBoard,
    capture_rng_state,
    iter_groups,
    progress_bar,
    resolve_precision,
    restore_rng_state,
    seed_everything,
    setup_distributed,
    teardown_distributed,
)

logger = logging.getLogger("albert")

BATCH_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels", "sentence_order_label")
TOKENIZER_FILES = ("spiece.model", "vocab.txt")
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"
STATE_FILE = "trainer_state.json"


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on (the CLI flags, one to one)."""

    data: str
    model: str = "albert-tiny"
    output: str = "pretrain-output"
    tokenizer: str | None = None
    eval_data: str | None = None
    eval_fraction: float = 0.01  # held out from --data when --eval-data is not given
    max_steps: int = 10_000
    batch_size: int = 32  # per device
    grad_accum: int = 1
    learning_rate: float = 1e-3
    warmup_steps: int | None = None  # default: 2.5% of max_steps (the paper's 3125 of 125k)
    optimizer: str = "lamb"
    weight_decay: float = 0.01
    bias_correction: bool = False
    max_grad_norm: float = 1.0
    save_every: int = 1000
    keep: int = 3
    eval_every: int = 1000
    eval_batches: int = 50  # per evaluation, global
    log_every: int = 10
    seed: int = 12345
    resume: bool = False
    gradient_checkpointing: bool = False
    precision: str = "auto"
    device: str = "auto"
    num_workers: int = 0
    tensorboard: bool = False
    max_nan_steps: int = 5
    fsdp: bool = False

    @property
    def warmup(self) -> int:
        return int(0.025 * self.max_steps) if self.warmup_steps is None else self.warmup_steps

    def validate(self) -> None:
        positive = (
            "max_steps",
            "batch_size",
            "grad_accum",
            "save_every",
            "keep",
            "log_every",
            "eval_batches",
        )
        bad = [
            f"--{name.replace('_', '-')}={getattr(self, name)}"
            for name in positive
            if getattr(self, name) < 1
        ]
        if bad:
            raise AlbertError(f"{', '.join(bad)}: must be at least 1")
        if self.learning_rate <= 0 or self.warmup < 0 or self.eval_every < 0 or self.num_workers < 0:
            raise AlbertError(
                "--learning-rate must be positive; --warmup-steps, --eval-every, --num-workers >= 0"
            )
        if not 0 <= self.eval_fraction < 1:
            raise AlbertError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if self.optimizer not in ("lamb", "adamw"):
            raise AlbertError(f"unknown optimizer {self.optimizer!r}; choose lamb or adamw")
        if self.precision not in PRECISIONS:
            raise AlbertError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.max_nan_steps < 0:
            raise AlbertError("--max-nan-steps must be >= 0")
        check_output(self.output, directory=True)


# ----------------------------------------------------------------------------------------
# data: datasets, the held-out split and the deterministic sampler


def _load_dataset(directory: str, tokenizer_dir: str | None) -> Any:
    from albert.data import PretrainingDataset

    if not Path(directory).is_dir():
        raise AlbertError(f"no pretraining data directory {directory}; build one with `albert data`")
    return PretrainingDataset(directory, tokenizer_dir=tokenizer_dir)


def find_tokenizer_dir(explicit: str | None, manifest: dict[str, Any], data_dir: str) -> Path:
    """--tokenizer, else a tokenizer path recorded in the data manifest, else one inside DATA."""
    candidates: list[Path] = [Path(explicit)] if explicit else []
    if not explicit:
        recorded = manifest.get("tokenizer")
        places = [recorded] if isinstance(recorded, str) else []
        if isinstance(recorded, dict):
            places += [recorded.get(key) for key in ("path", "dir", "directory")]
        places += [manifest.get("tokenizer_dir")]
        for place in places:
            if isinstance(place, str):
                path = Path(place)
                candidates.append(path if path.is_absolute() else Path(data_dir) / path)
        candidates += [Path(data_dir) / "tokenizer", Path(data_dir)]
    for candidate in candidates:
        if any((candidate / name).is_file() for name in TOKENIZER_FILES):
            return candidate
    if explicit:
        raise AlbertError(
            f"--tokenizer {explicit} has no spiece.model or vocab.txt; pass a tokenizer directory"
        )
    raise AlbertError(
        f"cannot find the tokenizer {data_dir} was built with (its manifest records no existing tokenizer "
        "directory); pass --tokenizer DIR, the directory given to `albert data --tokenizer`"
    )


def _default_collate() -> Any:
    from albert.data import collate_pretraining

    return collate_pretraining


def split_held_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices): a seeded random `fraction` of 0..n-1 held out."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    order = np.random.default_rng([seed, 0xE7A1]).permutation(n)
    held = max(1, int(round(n * fraction)))
    if held >= n:
        raise AlbertError(f"--eval-fraction {fraction} leaves no training data out of {n} sequences")
    return np.sort(order[held:]), np.sort(order[:held])


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The order of `indices` in `epoch`: a pure function of (seed, epoch), so nothing to save."""
    return indices[np.random.default_rng([seed, epoch]).permutation(len(indices))]


def micro_batches(
    order: np.ndarray, start: int, batch_size: int, grad_accum: int, rank: int, world_size: int
) -> list[list[int]]:
    """This rank's micro-batches for the rest of an epoch, from global position `start`.

    Step s takes order[start + s*G : start + (s+1)*G] with G = batch*accum*world; micro-batch a
    of rank r is its slice (a*world + r)*batch. One process with accumulation k and k processes
    without accumulation therefore see the same micro-batches."""
    global_batch = batch_size * grad_accum * world_size
    batches = []
    for step_start in range(start, len(order) - global_batch + 1, global_batch):
        for a in range(grad_accum):
            offset = step_start + (a * world_size + rank) * batch_size
            batches.append(order[offset : offset + batch_size].tolist())
    return batches


# ----------------------------------------------------------------------------------------
# the model


def build_pretraining_model(spec: str, vocab_size: int, max_seq_length: int | None) -> AlbertForPreTraining:
    """PRESET or config.json: a fresh model sized to the tokenizer. A model directory: its weights,
    which must already fit the tokenizer's vocabulary."""
    path = Path(spec)
    fresh = (spec in PRESETS and not path.exists()) or (path.is_file() and path.suffix == ".json")
    if fresh:
        model = build_model(AlbertForPreTraining, spec, vocab_size=vocab_size)
    else:
        model = build_model(AlbertForPreTraining, spec)
        if model.config.vocab_size != vocab_size:
            raise AlbertError(
                f"model {spec} has vocab_size={model.config.vocab_size} but the data's tokenizer has {vocab_size} "
                "tokens; pretrain with the tokenizer the model was trained with, or start from a preset"
            )
    if max_seq_length and max_seq_length > model.config.max_position_embeddings:
        raise AlbertError(
            f"the data has sequences of up to {max_seq_length} tokens but the model has only "
            f"{model.config.max_position_embeddings} positions; rebuild the data with a smaller --max-seq-length"
        )
    return model  # type: ignore[return-value]


def _shard_fsdp(model: nn.Module) -> nn.Module:
    """FSDP2 over the whole model as one unit: ALBERT's shared layers are re-entered L times and
    its encoder reads the attention weights directly, so finer units would gather too late.
    Gradients and optimiser state are sharded; parameters are gathered for each forward."""
    try:
        from torch.distributed.fsdp import fully_shard
    except ImportError:
        raise AlbertError("--fsdp needs PyTorch >= 2.6 (torch.distributed.fsdp.fully_shard)") from None
    fully_shard(model)
    return model


# ----------------------------------------------------------------------------------------
# the run


@dataclass
class DataPosition:
    """Where training is in the data: global steps taken, and (epoch, index) into its order."""

    step: int = 0
    epoch: int = 0
    index: int = 0
    skipped_steps: int = 0
    consecutive_bad: int = 0
    tokens_seen: int = 0


# per-step sums, reduced across ranks in one collective
STAT_NAMES = (
    "loss",
    "mlm_loss",
    "sop_loss",
    "mlm_correct",
    "mlm_total",
    "sop_correct",
    "sop_total",
    "tokens",
    "micro_batches",
    "bad",
    "stop",
)


def forward_with_counts(model: nn.Module, inputs: dict[str, Tensor]) -> tuple[Any, dict[str, Any]]:
    """The pretraining forward (MLM logits at masked positions only) and its hit counts."""
    out = model(**{k: inputs[k] for k in BATCH_KEYS if k in inputs}, sparse_prediction=True)
    labels = inputs["labels"]
    masked = labels[labels != -100]
    sop = inputs["sentence_order_label"].view(-1)
    return out, {
        "mlm_correct": (out.prediction_logits.argmax(-1) == masked).sum(),
        "mlm_total": masked.numel(),
        "sop_correct": (out.sop_logits.argmax(-1) == sop).sum(),
        "sop_total": sop.numel(),
        "tokens": inputs["attention_mask"].sum(),
    }


def evaluate_pretraining(
    model: str | Path, data: str | Path, max_sequences: int = 1024, batch_size: int = 32
) -> dict[str, Any]:
    """Score a pretraining checkpoint on `albert data` output, as `albert pretrain` evaluates:
    MLM and SOP accuracy, perplexity and the word-order gain, over up to `max_sequences`
    sequences (a seeded sample, masked as in epoch 0). Used by ``albert evaluate --data DIR``."""
    from albert.tokenization import SPM_FILE, VOCAB_FILE

    _check_has_mlm_head(model)  # before loading any data: a config read is enough to refuse
    # a checkpoint carries its tokenizer: then the data must have been built with it
    carries_tokenizer = any((Path(model) / name).is_file() for name in (SPM_FILE, VOCAB_FILE))
    dataset = _load_dataset(str(data), str(model) if carries_tokenizer else None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    network = AlbertForPreTraining.from_pretrained(model).eval()
    chosen = np.sort(np.random.default_rng(0).permutation(len(dataset))[:max_sequences]).tolist()
    batches = (
        dataset.collate([dataset[i] for i in chosen[start : start + batch_size]])
        for start in range(0, len(chosen), batch_size)
    )
    specials = torch.tensor([dataset.manifest["tokenizer"][k] for k in ("cls_token_id", "sep_token_id")])
    sums = held_out_sums(network, batches, forward_with_counts, specials, "cpu")
    return held_out_metrics(sums.tolist(), step=0) | {"model": str(model), "data": str(data)}


def _check_has_mlm_head(model: str | Path) -> None:
    """Refuse a model saved without a masked-LM head (a fine-tuned classifier, a bare encoder):
    its head would be random and every number meaningless."""
    from albert.config import AlbertConfig

    architectures = AlbertConfig.from_pretrained(model).architectures or []
    if architectures and not {"AlbertForPreTraining", "AlbertForMaskedLM"} & set(architectures):
        raise AlbertError(
            f"{model} is an {architectures[0]}, without the masked-LM head pretraining metrics need; pass a "
            "pretraining checkpoint (RUN/checkpoints/step-N), or evaluate a fine-tuned model on its labelled file"
        )


HeldOutForward = Callable[[nn.Module, dict[str, Tensor]], tuple[Any, dict[str, Any]]]


def held_out_sums(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    forward: HeldOutForward,
    specials: Tensor,
    device: Any,
) -> Tensor:
    """Token- and sequence-weighted sums over held-out batches, to add up across processes:
    MLM loss, masked tokens, MLM hits, SOP loss, SOP hits, sequences, shuffled-order MLM loss."""
    sums = torch.zeros(7, dtype=torch.float64, device=device)
    shuffler = torch.Generator().manual_seed(0)  # the same shuffles at every evaluation
    with torch.no_grad():
        for batch in batches:
            out, counts = forward(model, batch)
            # both forwards on every rank, whatever its batch holds: FSDP's collectives must pair up
            shuffled, _ = forward(model, shuffle_word_order(batch, specials, shuffler))
            n_masked = counts["mlm_total"]
            if n_masked:
                sums[0] += out.mlm_loss.double() * n_masked
                sums[6] += shuffled.mlm_loss.double() * n_masked
            sums[1] += n_masked
            sums[2] += counts["mlm_correct"]
            sums[3] += out.sop_loss.double() * counts["sop_total"]
            sums[4] += counts["sop_correct"]
            sums[5] += counts["sop_total"]
    return sums


def held_out_metrics(sums: Any, step: int) -> dict[str, Any]:
    """The evaluation record from `held_out_sums` (added up over processes)."""
    mlm_sum, n_masked, mlm_correct, sop_sum, sop_correct, n_seq, shuffled_sum = (float(x) for x in sums)
    mlm_loss = mlm_sum / max(n_masked, 1)
    return {
        "step": step,
        "eval": True,
        "loss": mlm_loss + sop_sum / max(n_seq, 1),
        "mlm_loss": mlm_loss,
        "sop_loss": sop_sum / max(n_seq, 1),
        "mlm_accuracy": mlm_correct / max(n_masked, 1),
        "sop_accuracy": sop_correct / max(n_seq, 1),
        "perplexity": math.exp(min(mlm_loss, 50.0)),
        # what word order is worth to the model: MLM loss on the same sequences with their
        # tokens shuffled, minus the loss in order; ~0 = a bag-of-words model (see the docs)
        "word_order_gain": shuffled_sum / max(n_masked, 1) - mlm_loss,
        "sequences": int(n_seq),
    }


def shuffle_word_order(
    batch: dict[str, Tensor], specials: Tensor, generator: torch.Generator
) -> dict[str, Tensor]:
    """A copy of `batch` with each sequence's tokens (and their MLM labels) in random order;
    [CLS], [SEP], padding and the segment layout stay where they are.

    A model that scores this as well as the real order predicts from which words occur, not
    from where: a bag of words. Small models sit on that plateau for a long time before
    attention learns to use positions, and such a model gives fine-tuning little.
    """
    ids, labels = batch["input_ids"].clone(), batch["labels"].clone()
    movable = batch["attention_mask"].bool() & ~torch.isin(ids, specials)
    for row in range(ids.shape[0]):
        where = movable[row].nonzero().flatten()
        order = where[torch.randperm(where.numel(), generator=generator)]
        ids[row, where], labels[row, where] = ids[row, order], labels[row, order]
    return {**batch, "input_ids": ids, "labels": labels}


class Pretrainer:
    """One pretraining run: builds data, model and optimiser, resumes, trains, evaluates, saves.

    The loop (checkpoints, exact resume, DDP/FSDP, metrics, NaN handling) is objective-agnostic:
    a subclass with another objective (`albert.distill.Distiller`) overrides `_step_losses`,
    `STAT_NAMES`, `evaluate`, `_record`, `_postfix`, `_eval_message` and `_describe`."""

    STAT_NAMES = STAT_NAMES  # per-step sums; every key `_step_losses` returns must be one of them
    progress_name = "pretrain"
    find_unused_parameters = False  # DDP: True when the objective leaves some parameters unused

    def __init__(self, cfg: PretrainConfig, dist: Distributed) -> None:
        cfg.validate()
        self.cfg, self.dist = cfg, dist
        self.output = Path(cfg.output)
        self.checkpoints = CheckpointDirectory(self.output / "checkpoints", keep=cfg.keep)
        self.precision = resolve_precision(cfg.precision, dist.device)
        if cfg.fsdp and not dist.enabled:
            logger.warning("--fsdp has no effect in a single process; launch with torchrun to shard")
        if cfg.tensorboard:
            TensorBoard.check_available()
        resume_from = self._find_resume_checkpoint()

        self._build_data()
        seed_everything(cfg.seed)  # identical initialisation on every rank (FSDP needs it)
        spec = str(resume_from.path) if resume_from else cfg.model
        self.model = build_pretraining_model(spec, self.vocab_size, self.max_seq_length)
        self.model.to(dist.device)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.wrapped = self._wrap(self.model)
        self.optimizer = build_optimizer(
            self.model,
            cfg.optimizer,
            lr=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            bias_correction=cfg.bias_correction,
        )
        self.scheduler = linear_warmup_decay(self.optimizer, cfg.warmup, cfg.max_steps)
        self.scaler = torch.amp.GradScaler(dist.device.type) if self.precision.needs_scaler else None
        self.position = DataPosition()
        seed_everything(cfg.seed + dist.rank)  # dropout differs per rank, as it should
        if resume_from is not None:
            self._load_checkpoint(resume_from)

    # -- setup --------------------------------------------------------------------------
    def _find_resume_checkpoint(self) -> CheckpointInfo | None:
        if not self.cfg.resume:
            complete, _ = self.checkpoints.scan()
            if complete:
                raise AlbertError(
                    f"{self.output} already holds checkpoints (newest: step {complete[-1].step}); pass --resume to "
                    "continue that run, or choose another --output"
                )
            return None
        found = self.checkpoints.latest(report=self._say)
        if found is None:
            self._say(f"--resume: no complete checkpoint in {self.checkpoints.root}; starting from step 0")
        else:
            self._say(f"resuming from {found.path}")
        return found

    def _build_data(self) -> None:
        cfg = self.cfg
        probe = _load_dataset(cfg.data, cfg.tokenizer)
        manifest = dict(getattr(probe, "manifest", {}) or {})
        self.tokenizer_dir = find_tokenizer_dir(cfg.tokenizer, manifest, cfg.data)
        from albert.tokenization import AlbertTokenizer

        self.tokenizer = AlbertTokenizer.from_pretrained(self.tokenizer_dir)
        self.vocab_size = len(self.tokenizer)
        self.max_seq_length = (manifest.get("options") or {}).get("max_seq_length")
        self.train_dataset = _load_dataset(cfg.data, str(self.tokenizer_dir))
        if cfg.eval_data:
            self.eval_dataset = _load_dataset(cfg.eval_data, str(self.tokenizer_dir))
            self.train_indices = np.arange(len(self.train_dataset))
            self.eval_indices = np.arange(len(self.eval_dataset))
        else:
            # a separate instance: its masking stays at epoch 0 while training's moves on
            self.eval_dataset = probe
            fraction = cfg.eval_fraction if cfg.eval_every else 0.0
            self.train_indices, self.eval_indices = split_held_out(len(probe), fraction, cfg.seed)
        if hasattr(self.eval_dataset, "set_epoch"):
            self.eval_dataset.set_epoch(0)
        self.collate = getattr(self.train_dataset, "collate", None) or _default_collate()
        if len(self.train_indices) < self.global_batch:
            raise AlbertError(
                f"{len(self.train_indices)} training sequences are fewer than one global batch "
                f"({self.global_batch} = batch {cfg.batch_size} x accumulation {cfg.grad_accum} x "
                f"{self.dist.world_size} processes); lower --batch-size/--grad-accum or build more data"
            )

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        if self.cfg.fsdp:
            return _shard_fsdp(model)
        device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=self.find_unused_parameters
        )

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size

    def _say(self, message: str) -> None:
        if self.dist.is_main:
            from tqdm.auto import tqdm

            tqdm.write(message)

    # -- checkpoints ----------------------------------------------------------------------
    def _optimizer_state(self) -> dict[str, Any]:
        if self.cfg.fsdp and self.dist.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            optimizer = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        else:
            optimizer = self.optimizer.state_dict()
        return {
            "optimizer": optimizer,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
        }

    def _model_for_saving(self) -> nn.Module:
        if not (self.cfg.fsdp and self.dist.enabled):
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(
            self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        with torch.random.fork_rng(devices=[]):  # initialising the copy must not move the RNG
            copy = AlbertForPreTraining(self.model.config)
        if self.dist.is_main:
            copy.load_state_dict(state)
        return copy

    def save_checkpoint(self) -> Path | None:
        """Every rank takes part (RNG states, FSDP gathers); rank 0 writes."""
        rng_states = self.dist.gather_objects(capture_rng_state())
        model = self._model_for_saving()
        optimizer_state = self._optimizer_state()
        path = None
        if self.dist.is_main:
            trainer_state = {
                **dataclasses.asdict(self.position),
                "world_size": self.dist.world_size,
                "global_batch": self.global_batch,
                "config": dataclasses.asdict(self.cfg),
            }

            def write(directory: Path) -> None:
                model.save_pretrained(directory)  # type: ignore[operator]
                self.tokenizer.save_pretrained(directory)
                torch.save(optimizer_state, directory / OPTIMIZER_FILE)
                torch.save({"ranks": rng_states}, directory / RNG_FILE)
                (directory / STATE_FILE).write_text(
                    json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8"
                )

            path = self.checkpoints.save(self.position.step, write)
        self.dist.barrier()
        return path

    def _load_checkpoint(self, found: CheckpointInfo) -> None:
        directory = found.path
        try:
            state = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
            training = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
            rng = torch.load(directory / RNG_FILE, map_location="cpu", weights_only=True)
        except Exception as e:
            raise AlbertError(
                f"checkpoint {directory} is complete but unreadable ({type(e).__name__}: {str(e)[:200]}); "
                "delete it to resume from the one before"
            ) from None
        fields = {f.name for f in dataclasses.fields(DataPosition)}
        self.position = DataPosition(**{k: v for k, v in state.items() if k in fields})
        if state.get("global_batch") != self.global_batch:
            logger.warning(
                "the checkpoint was trained with global batch %s, this run uses %s: the data position is kept "
                "but the run is no longer an exact continuation",
                state.get("global_batch"),
                self.global_batch,
            )
        if self.cfg.fsdp and self.dist.enabled:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True)
            set_optimizer_state_dict(self.model, self.optimizer, training["optimizer"], options=options)
        else:
            self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        if self.scaler is not None and training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        ranks = rng["ranks"]
        if len(ranks) == self.dist.world_size:
            restore_rng_state(ranks[self.dist.rank])
        else:
            logger.warning(
                "checkpoint has RNG states for %d processes, not %d: reseeding",
                len(ranks),
                self.dist.world_size,
            )
            seed_everything(self.cfg.seed + self.dist.rank + self.position.step)

    # -- one step -------------------------------------------------------------------------
    def _forward(self, model: nn.Module, batch: dict[str, Tensor]) -> Any:
        inputs = {k: batch[k].to(self.dist.device, non_blocking=True) for k in BATCH_KEYS if k in batch}
        with self.precision.autocast(self.dist.device):
            return forward_with_counts(model, inputs)

    def _step_losses(
        self, model: nn.Module, batch: dict[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(losses, counts) of one micro-batch: `losses["loss"]` is what is minimised; every
        loss and count is summed into the step's statistics under its name."""
        out, counts = self._forward(model, batch)
        return {"loss": out.loss, "mlm_loss": out.mlm_loss, "sop_loss": out.sop_loss}, counts

    def train_step(self, micro: list[dict[str, Tensor]], stop: StopSignal | None = None) -> dict[str, float]:
        """Forward/backward over the micro-batches, then (unless the loss is not finite) one update."""
        self.wrapped.train()
        names = self.STAT_NAMES
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.dist.device)
        index = {name: i for i, name in enumerate(names)}
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            no_sync = getattr(self.wrapped, "no_sync", None)
            with contextlib.nullcontext() if last or no_sync is None else no_sync():
                losses, counts = self._step_losses(self.wrapped, batch)
                loss = losses["loss"].float() / len(micro)
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            for name, value in losses.items():
                sums[index[name]] += value.detach().float()
            for name, value in counts.items():
                sums[index[name]] += value
        sums[index["micro_batches"]] = len(micro)
        sums[index["bad"]] = float(not torch.isfinite(sums[index["loss"]]))
        sums[index["stop"]] = float(stop is not None and stop.received is not None)  # all ranks stop together
        stats = dict(zip(names, self.dist.all_reduce_sum(sums), strict=True))

        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        stats["grad_norm"] = float(grad_norm)
        bad = stats["bad"] > 0 or (self.scaler is None and not math.isfinite(stats["grad_norm"]))
        if bad:
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.update()
        elif self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        stats["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats["bad"] = float(bad)
        return stats

    # -- evaluation -------------------------------------------------------------------------
    def _held_out(self) -> tuple[nn.Module, DataLoader] | None:
        """(the model to score with, a loader over this rank's share of up to `eval_batches` global
        batches of held-out data): the same sequences whatever the process count, and every rank
        gets the same number of batches. None when nothing is held out."""
        cfg, dist = self.cfg, self.dist
        count = min(len(self.eval_indices), cfg.eval_batches * self.global_batch)
        count -= count % dist.world_size
        if count == 0:
            return None
        mine = self.eval_indices[:count][dist.rank :: dist.world_size]
        batches = [mine[i : i + cfg.batch_size].tolist() for i in range(0, len(mine), cfg.batch_size)]
        model = self.model if not (cfg.fsdp and dist.enabled) else self.wrapped
        return model, self._loader(self.eval_dataset, batches, seed=0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float] | None:
        """Held-out MLM accuracy, SOP accuracy and perplexity (token-weighted), over up to
        `eval_batches` global batches (so the same sequences whatever the process count); every
        rank gets the same number of batches."""
        dist = self.dist
        held_out = self._held_out()
        if held_out is None:
            return None
        model, loader = held_out
        was_training = model.training
        model.eval()
        specials = torch.tensor([self.tokenizer.cls_token_id, self.tokenizer.sep_token_id])
        sums = held_out_sums(model, loader, self._forward, specials, dist.device)
        model.train(was_training)
        return held_out_metrics(dist.all_reduce_sum(sums), self.position.step)

    # -- the loop ----------------------------------------------------------------------------
    def _loader(self, dataset: Any, batches: list[list[int]], seed: int) -> DataLoader:
        # A private generator: creating a DataLoader iterator draws a seed from it, which must
        # not advance the global torch RNG (dropout) or resumed runs would diverge.
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.collate,
            num_workers=self.cfg.num_workers,
            pin_memory=self.dist.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def _epoch_steps(self) -> Any:
        """Groups of `grad_accum` micro-batches for the rest of the current epoch."""
        cfg, pos = self.cfg, self.position
        if hasattr(self.train_dataset, "set_epoch"):
            self.train_dataset.set_epoch(pos.epoch)
        order = epoch_order(self.train_indices, cfg.seed, pos.epoch)
        batches = micro_batches(
            order, pos.index, cfg.batch_size, cfg.grad_accum, self.dist.rank, self.dist.world_size
        )
        loader = self._loader(self.train_dataset, batches, seed=cfg.seed + pos.epoch)
        return iter_groups(loader, cfg.grad_accum)

    def _advance(self, stats: dict[str, float]) -> None:
        pos = self.position
        pos.step += 1
        pos.index += self.global_batch
        pos.tokens_seen += int(stats["tokens"])
        if pos.index + self.global_batch > len(self.train_indices):
            pos.epoch, pos.index = pos.epoch + 1, 0
        if stats["bad"]:
            pos.skipped_steps += 1
            pos.consecutive_bad += 1
        else:
            pos.consecutive_bad = 0

    def train(self) -> dict[str, Any]:
        cfg, dist, pos = self.cfg, self.dist, self.position
        if dist.is_main:
            for leftover in self.checkpoints.remove_leftovers():
                self._say(f"removed {leftover.name}, left by an interrupted save")
        metrics = (
            MetricsLog(self.output / "metrics.jsonl", resume_step=pos.step if cfg.resume else None)
            if dist.is_main
            else None
        )
        board = TensorBoard(self.output / "tensorboard") if cfg.tensorboard and dist.is_main else None
        if dist.is_main:
            self._describe()
        bar = progress_bar(cfg.max_steps, initial=pos.step, desc=self.progress_name, enabled=dist.is_main)
        interval: dict[str, float] = {}
        interval_time = 0.0
        last_saved = pos.step if pos.step else -1  # a resumed run's step is already saved
        last_eval, interrupted = None, None
        try:
            with StopSignal() as stop:
                while pos.step < cfg.max_steps and interrupted is None:
                    for micro in self._epoch_steps():
                        started = time.perf_counter()
                        stats = self.train_step(micro, stop)
                        interval_time += time.perf_counter() - started
                        self._advance(stats)
                        for key, value in stats.items():
                            interval[key] = interval.get(key, 0.0) + value
                        interval["steps"] = interval.get("steps", 0.0) + 1
                        bar.update(1)
                        if stats["bad"]:
                            self._on_bad_step(stats, metrics)
                        if pos.step % cfg.log_every == 0 or pos.step == cfg.max_steps:
                            record = self._record(interval, interval_time, stats["learning_rate"])
                            bar.set_postfix(self._postfix(record), refresh=False)
                            if metrics:
                                metrics.write(record)
                            if board:
                                board.write(record)
                            interval, interval_time = {}, 0.0
                        if cfg.eval_every and pos.step % cfg.eval_every == 0:
                            last_eval = self._evaluate_and_log(metrics, board)
                        if stats["stop"]:
                            interrupted = stop.received or "a signal on another rank"
                        periodic = pos.step % cfg.save_every == 0 and not pos.consecutive_bad
                        if periodic or interrupted or pos.step >= cfg.max_steps:
                            self.save_checkpoint()
                            last_saved = pos.step
                        if interrupted or pos.step >= cfg.max_steps:
                            break
            if interrupted is None and cfg.eval_every and pos.step % cfg.eval_every:
                last_eval = self._evaluate_and_log(metrics, board)
            if last_saved != pos.step and interrupted is None:
                self.save_checkpoint()
        finally:
            bar.close()
            if metrics:
                metrics.close()
            if board:
                board.close()
        newest = self.checkpoints.latest(report=lambda _: None)
        if interrupted:
            self._say(
                f"stopped by {interrupted} after step {pos.step}; saved {newest.path if newest else '-'}; "
                "continue with --resume"
            )
        return {
            "step": pos.step,
            "output": str(self.output),
            "checkpoint": str(newest.path) if newest else None,
            "eval": last_eval,
            "skipped_steps": pos.skipped_steps,
            "interrupted": interrupted,
            "rank": dist.rank,
        }

    def _record(self, interval: dict[str, float], seconds: float, learning_rate: float) -> dict[str, Any]:
        micro = max(interval["micro_batches"], 1)
        return {
            "step": self.position.step,
            "epoch": self.position.epoch,
            "loss": interval["loss"] / micro,
            "mlm_loss": interval["mlm_loss"] / micro,
            "sop_loss": interval["sop_loss"] / micro,
            "mlm_accuracy": interval["mlm_correct"] / max(interval["mlm_total"], 1),
            "sop_accuracy": interval["sop_correct"] / max(interval["sop_total"], 1),
            "learning_rate": learning_rate,
            "grad_norm": interval["grad_norm"] / interval["steps"],
            "tokens_per_second": interval["tokens"] / max(seconds, 1e-9),
            "tokens_seen": self.position.tokens_seen,
            "skipped_steps": self.position.skipped_steps,
        }

    @staticmethod
    def _postfix(record: dict[str, Any]) -> dict[str, str]:
        return {
            "loss": f"{record['loss']:.3f}",
            "mlm_acc": f"{record['mlm_accuracy']:.3f}",
            "sop_acc": f"{record['sop_accuracy']:.3f}",
            "tok/s": f"{record['tokens_per_second']:.0f}",
        }

    def _evaluate_and_log(
        self, metrics: MetricsLog | None, board: TensorBoard | None
    ) -> dict[str, Any] | None:
        result = self.evaluate()
        if result is None:
            return None
        if metrics:
            metrics.write(result)
        if board:
            board.write(result, prefix="eval")
        if self.dist.is_main:
            from tqdm.auto import tqdm

            tqdm.write(self._eval_message(result))
        return result

    @staticmethod
    def _eval_message(result: dict[str, Any]) -> str:
        return (
            f"step {result['step']}: eval mlm_acc {result['mlm_accuracy']:.3f} sop_acc "
            f"{result['sop_accuracy']:.3f} perplexity {result['perplexity']:.1f} "
            f"word-order gain {result['word_order_gain']:.2f} nats"
        )

    def _on_bad_step(self, stats: dict[str, float], metrics: MetricsLog | None) -> None:
        pos = self.position
        logger.warning(
            "step %d: loss or gradients not finite; update skipped (%d so far)", pos.step, pos.skipped_steps
        )
        if pos.consecutive_bad <= self.cfg.max_nan_steps:
            return
        newest = self.checkpoints.latest(report=lambda _: None)
        if metrics:
            metrics.write(
                {"step": pos.step, "skipped_steps": pos.skipped_steps, "stopped": "non-finite loss"}
            )
        raise AlbertError(
            f"loss was NaN/inf for {pos.consecutive_bad} consecutive steps (up to step {pos.step}); stopped without "
            f"saving. Last good checkpoint: {newest.path if newest else 'none'}. Lower --learning-rate, raise "
            "--warmup-steps or use --precision fp32, then continue with --resume"
        )

    def _describe(self) -> None:
        cfg, model = self.cfg, self.model
        self._say(
            f"pretraining {model.num_parameters() / 1e6:.1f}M parameters (vocab {self.vocab_size}) on "
            f"{len(self.train_indices)} sequences ({len(self.eval_indices)} held out); global batch "
            f"{self.global_batch} = {cfg.batch_size} x {cfg.grad_accum} accumulation x {self.dist.world_size} "
            f"process(es); {cfg.optimizer} lr {cfg.learning_rate} warmup {cfg.warmup}; {self.precision.name} on "
            f"{self.dist.device}; step {self.position.step} -> {cfg.max_steps}"
        )


def run_pretraining(cfg: PretrainConfig, trainer_class: type[Pretrainer] = Pretrainer) -> dict[str, Any]:
    """Run (or resume) pretraining - or `trainer_class`'s objective in the same loop; returns a
    summary (final step, checkpoint, last evaluation)."""
    cfg.validate()
    import torch.distributed as torch_dist

    owns_group = not (torch_dist.is_available() and torch_dist.is_initialized())
    dist = setup_distributed(cfg.device)
    try:
        return trainer_class(cfg, dist).train()
    finally:
        if owns_group:
            teardown_distributed()


def pretrain(
    data: str, model: str = "albert-tiny", output: str = "pretrain-output", **options: Any
) -> dict[str, Any]:
    """Python entry point: `pretrain(data_dir, "albert-tiny", "run", max_steps=1000)`."""
    return run_pretraining(PretrainConfig(data=str(data), model=str(model), output=str(output), **options))


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = PretrainConfig(data="")
    a = parser.add_argument
    a("--data", required=True, help="pretraining data directory written by `albert data`")
    a("--model", default=d.model, help="preset name, config.json, or a model directory to continue from")
    a("--output", required=True, help="run directory: checkpoints/, metrics.jsonl")
    a("--tokenizer", help="tokenizer directory (default: the one the data was built with)")
    a("--eval-data", help="held-out data directory (default: hold out --eval-fraction of --data)")
    add_training_arguments(parser, d)


def add_training_arguments(parser: argparse.ArgumentParser, d: PretrainConfig) -> None:
    """The training-loop options, shared with `albert distill` (`d` holds the defaults)."""
    a = parser.add_argument
    a(
        "--eval-fraction",
        type=float,
        default=d.eval_fraction,
        help="fraction of the data held out for evaluation",
    )
    a("--max-steps", type=int, default=d.max_steps)
    a("--batch-size", type=int, default=d.batch_size, help="sequences per device per micro-batch")
    a("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimiser step")
    a("--learning-rate", "--lr", type=float, default=d.learning_rate)
    a("--warmup-steps", type=int, default=None, help="linear warmup steps (default: 2.5%% of --max-steps)")
    a("--optimizer", choices=("lamb", "adamw"), default=d.optimizer)
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--bias-correction", action="store_true", help="Adam bias correction in LAMB (off in ALBERT)")
    a("--max-grad-norm", type=float, default=d.max_grad_norm, help="global-norm clipping (0: off)")
    a("--save-every", type=int, default=d.save_every, help="checkpoint every N steps")
    a("--keep", type=int, default=d.keep, help="keep the newest N checkpoints")
    a("--eval-every", type=int, default=d.eval_every, help="evaluate every N steps (0: never)")
    a("--eval-batches", type=int, default=d.eval_batches, help="global batches per evaluation")
    a("--log-every", type=int, default=d.log_every, help="write metrics every N steps")
    a("--seed", type=int, default=d.seed)
    a("--resume", action="store_true", help="continue from the newest complete checkpoint in --output")
    a("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    a("--precision", choices=PRECISIONS, default=d.precision, help="auto: bf16/fp16 on GPUs, fp32 on CPUs")
    a("--device", default=d.device, help="auto, cpu or cuda")
    a("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    a("--tensorboard", action="store_true", help="also write TensorBoard scalars to OUTPUT/tensorboard")
    a(
        "--max-nan-steps",
        type=int,
        default=d.max_nan_steps,
        help="stop after more consecutive non-finite steps",
    )
    a("--fsdp", action="store_true", help="shard with FSDP instead of DDP under torchrun")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    cfg = PretrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    summary = run_pretraining(cfg)
    if summary["rank"] == 0 and summary["interrupted"] is None and summary.get("checkpoint"):
        print(f"done: step {summary['step']}, checkpoint {summary['checkpoint']}")
    return 0
