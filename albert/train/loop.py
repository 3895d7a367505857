"""The training loop: one `Trainer`, given an objective (`albert.train.objective.Objective`).

    run_training(cfg, PretrainingObjective)       # albert pretrain
    run_training(cfg, DistillationObjective)      # albert distill

The recipe around any objective (Lan et al. 2019, sec. 4.1): LAMB or AdamW (weight decay except on
LayerNorm and biases), linear warmup then linear decay, gradient clipping at a global norm.

Exact resumption is a design goal, not a hope: data order comes from our own sampler
(`albert.train.data`), so a checkpoint stores the data position as (epoch, index) next to the
model, optimiser, scheduler and every RNG. On CPU, N steps + resume to 2N reproduces the per-step
losses of 2N steps straight. Rank 0 writes logs and checkpoints; every rank resumes. A step whose
loss or gradients are not finite is skipped; weights that are not finite are never saved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from albert.checkpoint import build_model
from albert.errors import AlbertError
from albert.hardware import announce
from albert.hub import resolve
from albert.modeling import AlbertForPreTraining
from albert.optim import build_optimizer, linear_warmup_decay
from albert.paths import check_output
from albert.train.checkpoints import CheckpointDirectory, CheckpointInfo
from albert.train.data import TrainingData, epoch_order, iter_groups, load_training_data, micro_batches
from albert.train.distributed import Distributed, setup_distributed, shard_fsdp, teardown_distributed
from albert.train.metrics import MetricsLog, TensorBoard, progress_bar
from albert.train.objective import Objective
from albert.train.precision import PRECISIONS, Precision, resolve_precision
from albert.train.rng import capture_rng_state, restore_rng_state, seed_everything
from albert.train.signals import StopSignal

logger = logging.getLogger("albert")

OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng_state.pt"
STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    """Everything a training run depends on (`albert pretrain`'s flags, one to one)."""

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


def build_pretraining_model(spec: str, vocab_size: int, max_seq_length: int | None) -> AlbertForPreTraining:
    """PRESET or config.json: a fresh model sized to the tokenizer. A model directory: its weights,
    which must already fit the tokenizer's vocabulary."""
    resolved = resolve(spec)
    if not resolved.has_weights:
        model = build_model(AlbertForPreTraining, resolved, vocab_size=vocab_size)
    else:
        model = build_model(AlbertForPreTraining, resolved)
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


@dataclass
class DataPosition:
    """Where training is in the data: global steps taken, and (epoch, index) into its order."""

    step: int = 0
    epoch: int = 0
    index: int = 0
    skipped_steps: int = 0
    consecutive_bad: int = 0
    tokens_seen: int = 0


# what `--resume` does when this command's flags differ from the run's (see `Trainer._reconcile`)
RESUME_KEEPS = ("model", "seed")  # the checkpoint's weights; the seed that fixes the data order
# a new peak rate, or a new last step (the rest of the linear decay is re-spread to reach 0 there),
# applies from the resumed step on: how a finished run is continued for longer
RESUME_CHANGES = ("learning_rate", "max_steps")


class Trainer:
    """One training run: builds data, model and optimiser, resumes, trains, evaluates, saves.

    Everything here is the same for every objective; what one micro-batch costs, which
    statistics a step reports and how held-out data is scored come from `objective`."""

    def __init__(self, cfg: TrainConfig, objective: Objective, dist: Distributed) -> None:
        cfg.validate()
        self.objective, self.dist = objective, dist
        self.output = Path(cfg.output)
        self.checkpoints = CheckpointDirectory(self.output / "checkpoints", keep=cfg.keep)
        self.precision = resolve_precision(cfg.precision, dist.device)
        if cfg.fsdp and not dist.enabled:
            logger.warning("--fsdp has no effect in a single process; launch with torchrun to shard")
        if cfg.tensorboard:
            TensorBoard.check_available()
        resume_from = self._find_resume_checkpoint(cfg)
        self.cfg = cfg = self._reconcile(cfg, resume_from) if resume_from else cfg

        self.data = self._load_data()
        seed_everything(cfg.seed)  # identical initialisation on every rank (FSDP needs it)
        spec = str(resume_from.path) if resume_from else cfg.model
        self.model = build_pretraining_model(spec, len(self.data.tokenizer), self.data.max_seq_length)
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
        self.metrics: MetricsLog | None = None
        self.board: TensorBoard | None = None
        seed_everything(cfg.seed + dist.rank)  # dropout differs per rank, as it should
        if resume_from is not None:
            self._load_checkpoint(resume_from)

    # -- setup --------------------------------------------------------------------------
    def _find_resume_checkpoint(self, cfg: TrainConfig) -> CheckpointInfo | None:
        if not cfg.resume:
            complete, _ = self.checkpoints.scan()
            if complete:
                raise AlbertError(
                    f"{self.output} already holds checkpoints (newest: step {complete[-1].step}); pass --resume to "
                    "continue that run, or choose another --output"
                )
            return None
        found = self.checkpoints.latest(report=self.dist.say)
        if found is None:
            self.dist.say(
                f"--resume: no complete checkpoint in {self.checkpoints.root}; starting from step 0"
            )
        else:
            self.dist.say(f"resuming from {found.path}")
        return found

    def _reconcile(self, cfg: TrainConfig, found: CheckpointInfo) -> TrainConfig:
        """This command's config for continuing the run in `found`, saying every flag that differs:
        --model and --seed keep the run's values (its weights are the checkpoint's, and its data
        order follows its seed), a new --learning-rate or --max-steps applies from the resumed step on."""
        run = _read_state(found.path).get("config") or {}
        kept: dict[str, Any] = {}
        for name in (*RESUME_KEEPS, *RESUME_CHANGES):
            if name not in run or run[name] == getattr(cfg, name):
                continue
            flag, given, was = f"--{name.replace('_', '-')}", getattr(cfg, name), run[name]
            if name in RESUME_KEEPS:
                kept[name] = was
                self.dist.say(f"--resume: the run keeps {flag} {was} ({flag} {given} is ignored)")
            else:
                self.dist.say(
                    f"--resume: {flag} {given} replaces the run's {was} from step {found.step} on "
                    f"(pass {flag} {was} to continue the run exactly)"
                )
        return dataclasses.replace(cfg, **kept)

    def _load_data(self) -> TrainingData:
        cfg = self.cfg
        fraction = cfg.eval_fraction if cfg.eval_every else 0.0
        data = load_training_data(self.objective.data_source(), fraction, cfg.seed)
        if len(data.train_indices) < self.global_batch:
            raise AlbertError(
                f"{len(data.train_indices)} training sequences are fewer than one global batch "
                f"({self.global_batch} = batch {cfg.batch_size} x accumulation {cfg.grad_accum} x "
                f"{self.dist.world_size} processes); lower --batch-size/--grad-accum or build more data"
            )
        return data

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return model
        if self.cfg.fsdp:
            return shard_fsdp(model)
        device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=self.objective.find_unused_parameters
        )

    @property
    def global_batch(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size

    @property
    def sharded(self) -> bool:
        return self.cfg.fsdp and self.dist.enabled

    # -- checkpoints ----------------------------------------------------------------------
    def _optimizer_state(self) -> dict[str, Any]:
        if self.sharded:
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
        if not self.sharded:
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

    def _check_savable(self) -> None:
        """Never save a diverged run: not while the loss is NaN/inf (its weights produce it), and
        never weights that are themselves NaN/inf (every rank checks its shard)."""
        pos = self.position
        if pos.consecutive_bad:
            self._stop(
                f"the loss has been NaN/inf since step {pos.step - pos.consecutive_bad + 1} (through step "
                f"{pos.step}); stopped without saving",
                "non-finite loss",
            )
        # under FSDP the parameters are DTensors: each rank checks its own shard
        shards = (p.to_local() if hasattr(p, "to_local") else p for p in self.model.parameters())
        bad = sum(int(not torch.isfinite(shard.detach()).all()) for shard in shards)
        if self.dist.all_reduce_sum([float(bad)])[0]:
            self._stop(
                f"step {pos.step}'s update made the weights NaN/inf; stopped without saving",
                "weights not finite",
            )

    def save_checkpoint(self) -> Path | None:
        """Every rank takes part (RNG states, FSDP gathers, the finiteness check); rank 0 writes."""
        self._check_savable()
        rng_states = self.dist.gather_objects(capture_rng_state())
        model = self._model_for_saving()
        optimizer_state = self._optimizer_state()
        path, failure = None, None
        if self.dist.is_main:
            trainer_state = {
                **dataclasses.asdict(self.position),
                "world_size": self.dist.world_size,
                "global_batch": self.global_batch,
                "config": dataclasses.asdict(self.cfg),
            }

            def write(directory: Path) -> None:
                model.save_pretrained(directory)  # type: ignore[operator]
                self.data.tokenizer.save_pretrained(directory)
                torch.save(optimizer_state, directory / OPTIMIZER_FILE)
                torch.save({"ranks": rng_states}, directory / RNG_FILE)
                (directory / STATE_FILE).write_text(
                    json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8"
                )

            try:
                path = self.checkpoints.save(self.position.step, write)
            except OSError as e:  # disk full, quota, permissions: the save left nothing behind
                failure = e
        if self.dist.all_reduce_sum([float(failure is not None)])[0]:  # every rank stops together
            raise AlbertError(self._save_failure(failure))
        self.dist.barrier()
        return path

    def _save_failure(self, error: OSError | None) -> str:
        if error is None:
            return "rank 0 could not write a checkpoint (see its message); continue with --resume once fixed"
        newest = self.checkpoints.latest(report=lambda _: None)
        kept = (
            f"the previous checkpoint {newest.path} is intact" if newest else "no earlier checkpoint exists"
        )
        return (
            f"could not write checkpoint step-{self.position.step}: {error.filename or self.checkpoints.root}: "
            f"{error.strerror or error}; nothing of it was kept and {kept}. Free space (or fix the directory), "
            "then continue with --resume"
        )

    def _load_checkpoint(self, found: CheckpointInfo) -> None:
        directory = found.path
        state = _read_state(directory)
        try:
            training = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
            rng = torch.load(directory / RNG_FILE, map_location="cpu", weights_only=True)
        except Exception as e:
            raise _unreadable(directory, e) from None
        fields = {f.name for f in dataclasses.fields(DataPosition)}
        self.position = DataPosition(**{k: v for k, v in state.items() if k in fields})
        if state.get("global_batch") != self.global_batch:
            logger.warning(
                "the checkpoint was trained with global batch %s, this run uses %s: the data position is kept "
                "but the run is no longer an exact continuation",
                state.get("global_batch"),
                self.global_batch,
            )
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True)
            set_optimizer_state_dict(self.model, self.optimizer, training["optimizer"], options=options)
        else:
            self.optimizer.load_state_dict(training["optimizer"])
        self.scheduler.load_state_dict(training["scheduler"])
        self._rescale_learning_rate((state.get("config") or {}).get("learning_rate"))
        self._rate_from_this_schedule()
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

    def _rescale_learning_rate(self, run_rate: float | None) -> None:
        """A new --learning-rate on --resume: the restored schedule, scaled to the new peak."""
        if not run_rate or run_rate == self.cfg.learning_rate:
            return
        ratio = self.cfg.learning_rate / run_rate
        self.scheduler.base_lrs = [rate * ratio for rate in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["initial_lr"] = group.get("initial_lr", run_rate) * ratio

    def _rate_from_this_schedule(self) -> None:
        """The restored optimiser holds the rate the run's own schedule set for the next step; set
        it from this command's schedule instead, so a new --max-steps (or --learning-rate) applies
        from the very first resumed step. With the run's flags it is the same number."""
        step = self.scheduler.last_epoch
        pairs = zip(self.optimizer.param_groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas, strict=True)
        for group, base, factor in pairs:
            group["lr"] = base * factor(step)

    # -- one step -------------------------------------------------------------------------
    def train_step(self, micro: list[dict[str, Tensor]], stop: StopSignal | None = None) -> dict[str, float]:
        """Forward/backward over the micro-batches, then (unless the loss is not finite) one update."""
        self.wrapped.train()
        names = self.objective.stat_names
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.dist.device)
        index = {name: i for i, name in enumerate(names)}
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            no_sync = getattr(self.wrapped, "no_sync", None)
            with contextlib.nullcontext() if last or no_sync is None else no_sync():
                losses, counts = self.objective.losses(self.wrapped, batch)
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
        count = min(len(self.data.eval_indices), cfg.eval_batches * self.global_batch)
        count -= count % dist.world_size
        if count == 0:
            return None
        mine = self.data.eval_indices[:count][dist.rank :: dist.world_size]
        batches = [mine[i : i + cfg.batch_size].tolist() for i in range(0, len(mine), cfg.batch_size)]
        model = self.wrapped if self.sharded else self.model
        return model, self._loader(self.data.eval_dataset, batches, seed=0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any] | None:
        """The objective's held-out record over up to `eval_batches` global batches (so the same
        sequences whatever the process count), summed over every rank."""
        held_out = self._held_out()
        if held_out is None:
            return None
        model, loader = held_out
        was_training = model.training
        model.eval()
        sums = self.objective.held_out_sums(model, loader, self.data.tokenizer)
        model.train(was_training)
        return self.objective.held_out_record(self.dist.all_reduce_sum(sums), self.position.step)

    # -- the loop ----------------------------------------------------------------------------
    def _loader(self, dataset: Any, batches: list[list[int]], seed: int) -> DataLoader:
        # A private generator: creating a DataLoader iterator draws a seed from it, which must
        # not advance the global torch RNG (dropout) or resumed runs would diverge.
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=self.data.collate,
            num_workers=self.cfg.num_workers,
            pin_memory=self.dist.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )

    def _epoch_steps(self) -> Any:
        """Groups of `grad_accum` micro-batches for the rest of the current epoch."""
        cfg, pos, data = self.cfg, self.position, self.data
        if hasattr(data.train_dataset, "set_epoch"):
            data.train_dataset.set_epoch(pos.epoch)
        order = epoch_order(data.train_indices, cfg.seed, pos.epoch)
        batches = micro_batches(
            order, pos.index, cfg.batch_size, cfg.grad_accum, self.dist.rank, self.dist.world_size
        )
        loader = self._loader(data.train_dataset, batches, seed=cfg.seed + pos.epoch)
        return iter_groups(loader, cfg.grad_accum)

    def _advance(self, stats: dict[str, float]) -> None:
        pos = self.position
        pos.step += 1
        pos.index += self.global_batch
        pos.tokens_seen += int(stats["tokens"])
        if pos.index + self.global_batch > len(self.data.train_indices):
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
                dist.say(f"removed {leftover.name}, left by an interrupted save")
        self.metrics = (
            MetricsLog(self.output / "metrics.jsonl", resume_step=pos.step if cfg.resume else None)
            if dist.is_main
            else None
        )
        self.board = TensorBoard(self.output / "tensorboard") if cfg.tensorboard and dist.is_main else None
        if dist.is_main:  # which precision runs, and why: one line on stderr
            announce(self.objective.name, self.precision.description)
        dist.say(self._description())
        bar = progress_bar(cfg.max_steps, initial=pos.step, desc=self.objective.name, enabled=dist.is_main)
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
                            self._on_bad_step()
                        if pos.step % cfg.log_every == 0 or pos.step == cfg.max_steps:
                            record = self._record(interval, interval_time, stats["learning_rate"])
                            bar.set_postfix(self._postfix(record), refresh=False)
                            self._log(record, "train")
                            interval, interval_time = {}, 0.0
                        if cfg.eval_every and pos.step % cfg.eval_every == 0:
                            last_eval = self._evaluate_and_log()
                        if stats["stop"]:
                            interrupted = stop.received or "a signal on another rank"
                        periodic = pos.step % cfg.save_every == 0 and not pos.consecutive_bad
                        if periodic or interrupted or pos.step >= cfg.max_steps:
                            self.save_checkpoint()
                            last_saved = pos.step
                        if interrupted or pos.step >= cfg.max_steps:
                            break
            if interrupted is None and cfg.eval_every and pos.step % cfg.eval_every:
                last_eval = self._evaluate_and_log()
            if last_saved != pos.step and interrupted is None:
                self.save_checkpoint()
        finally:
            bar.close()
            if self.metrics:
                self.metrics.close()
            if self.board:
                self.board.close()
        newest = self.checkpoints.latest(report=lambda _: None)
        if interrupted:
            dist.say(
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

    def _log(self, record: dict[str, Any], prefix: str) -> None:
        if self.metrics:
            self.metrics.write(record)
        if self.board:
            self.board.write(record, prefix=prefix)

    def _record(self, interval: dict[str, float], seconds: float, learning_rate: float) -> dict[str, Any]:
        return {
            "step": self.position.step,
            "epoch": self.position.epoch,
            **self.objective.summarize(interval),
            "learning_rate": learning_rate,
            "grad_norm": interval["grad_norm"] / interval["steps"],
            "tokens_per_second": interval["tokens"] / max(seconds, 1e-9),
            "tokens_seen": self.position.tokens_seen,
            "skipped_steps": self.position.skipped_steps,
        }

    def _postfix(self, record: dict[str, Any]) -> dict[str, str]:
        shown = {
            label: format(record[key], self.objective.progress_format)
            for label, key in self.objective.progress.items()
        }
        return {**shown, "tok/s": f"{record['tokens_per_second']:.0f}"}

    def _evaluate_and_log(self) -> dict[str, Any] | None:
        result = self.evaluate()
        if result is None:
            return None
        self._log(result, "eval")
        self.dist.say(self.objective.eval_message(result))
        return result

    def _on_bad_step(self) -> None:
        pos = self.position
        logger.warning(
            "step %d: loss or gradients not finite; update skipped (%d so far)", pos.step, pos.skipped_steps
        )
        if pos.consecutive_bad > self.cfg.max_nan_steps:
            self._stop(
                f"loss was NaN/inf for {pos.consecutive_bad} consecutive steps (up to step {pos.step}); "
                "stopped without saving",
                "non-finite loss",
            )

    def _stop(self, what: str, reason: str) -> None:
        """End a run that diverged: a metrics record, and one line with the way forward."""
        pos = self.position
        newest = self.checkpoints.latest(report=lambda _: None)
        if self.metrics:
            self.metrics.write({"step": pos.step, "skipped_steps": pos.skipped_steps, "stopped": reason})
        fp32 = "" if self.precision.dtype is None else " or use --precision fp32"  # fp32 runs diverge too
        saved = f"Last good checkpoint: {newest.path}" if newest else "There is no earlier checkpoint"
        then = "continue with --resume" if newest else "run again"
        raise AlbertError(f"{what}. {saved}. Lower --learning-rate, raise --warmup-steps{fp32}, then {then}")

    def _description(self) -> str:
        cfg, data = self.cfg, self.data
        return (
            f"{self.objective.describe(self.model)}; {len(data.train_indices)} training sequences "
            f"({len(data.eval_indices)} held out); global batch {self.global_batch} = {cfg.batch_size} x "
            f"{cfg.grad_accum} accumulation x {self.dist.world_size} process(es); {cfg.optimizer} lr "
            f"{cfg.learning_rate} warmup {cfg.warmup}; {self.precision.name} on {self.dist.device}; "
            f"step {self.position.step} -> {cfg.max_steps}"
        )


def _read_state(directory: Path) -> dict[str, Any]:
    try:
        return json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except Exception as e:
        raise _unreadable(directory, e) from None


def _unreadable(directory: Path, error: Exception) -> AlbertError:
    return AlbertError(
        f"checkpoint {directory} is complete but unreadable ({type(error).__name__}: {str(error)[:200]}); "
        "delete it to resume from the one before"
    )


ObjectiveFactory = Callable[[Any, Distributed, Precision], Objective]


def run_training(cfg: TrainConfig, make_objective: ObjectiveFactory) -> dict[str, Any]:
    """Run (or resume) training with the objective `make_objective(cfg, dist, precision)` builds;
    returns a summary (final step, checkpoint, last evaluation)."""
    cfg.validate()
    import torch.distributed as torch_dist

    owns_group = not (torch_dist.is_available() and torch_dist.is_initialized())
    dist = setup_distributed(cfg.device)
    try:
        objective = make_objective(cfg, dist, resolve_precision(cfg.precision, dist.device))
        return Trainer(cfg, objective, dist).train()
    finally:
        if owns_group:
            teardown_distributed()
