"""Training utilities shared by pretraining, fine-tuning and distillation.

Everything a training loop needs that is not about the model or the objective:
  * seeding, and capturing/restoring every RNG (python, numpy, torch, CUDA) so a resumed run
    continues bit for bit;
  * the process group: one code path for a single process and for `torchrun` (DDP/FSDP);
  * numeric precision (fp32 / bf16 autocast / fp16 + loss scaling) chosen from the hardware;
  * atomic checkpoint directories: written under a temporary name, fsynced, marked `COMPLETE`
    last and renamed into place, so a crash (even `kill -9` mid-save) never leaves a directory
    that looks finished but is not;
  * a `metrics.jsonl` writer, a tqdm bar that honours `TQDM_DISABLE`, and a SIGINT/SIGTERM
    catcher that lets the loop finish its step and save before exiting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from albert.errors import AlbertError

logger = logging.getLogger("albert")

# ----------------------------------------------------------------------------------------
# randomness


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG as plain tensors/ints/lists, so it reloads with `weights_only=True`."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------
# processes and devices


@dataclass
class Distributed:
    """Where this process sits: rank/world size from torchrun's environment, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def all_reduce_sum(self, values: torch.Tensor | list[float]) -> list[float]:
        """Sum a few numbers over all ranks (one small collective, one device->host copy)."""
        tensor = torch.as_tensor(values, dtype=torch.float64, device=self.device)
        if self.enabled:
            dist.all_reduce(tensor)
        return tensor.tolist()

    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AlbertError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def setup_distributed(device: str = "auto") -> Distributed:
    """Join the process group when launched by `torchrun` (RANK/WORLD_SIZE set), else run alone.

    NCCL on GPUs, gloo on CPUs. CPU threads are split between the processes of one node so two
    ranks on a 2-core machine do not fight over the same cores."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device)
    if target.type == "cuda":
        target = torch.device("cuda", local_rank if world_size > 1 else (target.index or 0))
        torch.cuda.set_device(target)
    if world_size > 1:
        if not dist.is_available():
            raise AlbertError("this PyTorch build has no torch.distributed; run a single process instead")
        if not dist.is_initialized():
            backend = "nccl" if target.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        if target.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Distributed(rank, world_size, local_rank, target)


def teardown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside a DDP wrapper (FSDP2 shards in place and needs no unwrapping)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------------------
# precision

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Precision:
    """Autocast dtype (None = plain fp32) and whether fp16 loss scaling is needed."""

    name: str
    dtype: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto`: bf16 on GPUs that run it fast, fp16 (+ GradScaler) on older GPUs, fp32 on CPUs
    (CPUs without AMX/AVX512-BF16 run bf16 matmuls far slower than fp32)."""
    if name not in PRECISIONS:
        raise AlbertError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name == "fp16" and device.type != "cuda":
        raise AlbertError("fp16 mixed precision needs a CUDA GPU; use --precision bf16 or fp32 on CPUs")
    return Precision(name, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name])


# ----------------------------------------------------------------------------------------
# atomic checkpoint directories

COMPLETE_MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry list) to disk; best effort on filesystems that refuse."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    """Rename away first, then delete: a half-deleted directory never keeps its real name."""
    doomed = path.with_name(f".tmp-delete-{path.name}-{uuid.uuid4().hex[:8]}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


@dataclass
class CheckpointInfo:
    step: int
    path: Path


class CheckpointDirectory:
    """`ROOT/step-N/` directories, each complete or absent.

    `save(step, write)` calls `write(tmp_dir)`, fsyncs what it wrote, records every file and its
    size in `COMPLETE` (written last), then renames `.tmp-step-N-<random>` to `step-N`.
    A directory counts as a checkpoint only when `COMPLETE` exists and the files it lists have
    the recorded sizes; anything else is reported and ignored."""

    def __init__(self, root: str | os.PathLike, keep: int | None = None) -> None:
        self.root = Path(root)
        if keep is not None and keep < 1:
            raise AlbertError(f"--keep must be at least 1 (got {keep})")
        self.keep = keep

    def save(self, step: int, write: Callable[[Path], None], extra: dict[str, Any] | None = None) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-step-{step}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write(tmp)
            files = {}
            for file in sorted(p for p in tmp.rglob("*") if p.is_file()):
                _fsync_path(file)
                files[file.relative_to(tmp).as_posix()] = file.stat().st_size
            marker = {"step": step, "time": time.time(), "files": files, **(extra or {})}
            (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            _fsync_path(tmp / COMPLETE_MARKER)
            _fsync_path(tmp)
            final = self.root / f"step-{step}"
            if final.exists():
                _remove_tree(final)  # an older save of the same step (e.g. an incomplete one)
            os.rename(tmp, final)
            _fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.prune()
        return final

    @staticmethod
    def problem(path: Path) -> str | None:
        """Why `path` is not a complete checkpoint, or None if it is."""
        marker = path / COMPLETE_MARKER
        if not marker.is_file():
            return f"no {COMPLETE_MARKER} marker (interrupted while saving?)"
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError, TypeError):
            return f"unreadable {COMPLETE_MARKER} marker"
        for name, size in files.items():
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            if file.stat().st_size != size:
                return f"{name} has {file.stat().st_size} bytes, expected {size} (truncated?)"
        return None

    def scan(self) -> tuple[list[CheckpointInfo], list[tuple[Path, str]]]:
        """(complete checkpoints oldest first, [(incomplete path, why)])."""
        complete, incomplete = [], []
        if not self.root.is_dir():
            return [], []
        for path in self.root.iterdir():
            if path.name.startswith(".tmp-"):
                incomplete.append((path, "temporary directory left by an interrupted save"))
                continue
            match = _STEP_DIR.match(path.name)
            if not match or not path.is_dir():
                continue
            why = self.problem(path)
            if why is None:
                complete.append(CheckpointInfo(int(match.group(1)), path))
            else:
                incomplete.append((path, why))
        return sorted(complete, key=lambda c: c.step), sorted(incomplete)

    def latest(self, report: Callable[[str], None] | None = None) -> CheckpointInfo | None:
        complete, incomplete = self.scan()
        for path, why in incomplete:
            (report or logger.warning)(f"ignoring incomplete checkpoint {path}: {why}")
        return complete[-1] if complete else None

    def prune(self) -> None:
        if self.keep is None:
            return
        complete, _ = self.scan()
        for old in complete[: -self.keep]:
            _remove_tree(old.path)

    def remove_leftovers(self) -> list[Path]:
        """Delete temporary directories of interrupted saves (call when no save is running)."""
        removed = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith(".tmp-") and path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed


# ----------------------------------------------------------------------------------------
# metrics and progress


class MetricsLog:
    """`metrics.jsonl`: one JSON object per line, flushed as written.

    On resume, lines for steps after the checkpoint are dropped (atomically), so the file
    describes one continuous run with no duplicated steps."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.exists():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _truncate_after(self, step: int) -> None:
        kept = [record for record in read_metrics(self.path) if record.get("step", 0) <= step]
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._file.write(json.dumps(clean) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a `metrics.jsonl` (a torn last line from a crash is skipped)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def progress_bar(total: int, initial: int = 0, desc: str = "", enabled: bool = True) -> Any:
    """A tqdm bar (ETA included); silent when disabled, off the main rank, or TQDM_DISABLE=1."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(total=total, initial=initial, desc=desc, disable=disable, dynamic_ncols=True, unit="step")


class StopSignal:
    """Catch SIGINT/SIGTERM while training: the loop checks `.received`, finishes its step,
    saves and exits. A second signal restores the default handler's behaviour (abort now)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # second signal: stop waiting for a clean save
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signal.Signals(signum).name
        logger.warning(
            "%s received: finishing the current step, saving a checkpoint, then exiting", self.received
        )

    def __enter__(self) -> StopSignal:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self.restore()


class TensorBoard:
    """Optional TensorBoard scalars (needs the `tensorboard` package)."""

    def __init__(self, log_dir: Path) -> None:
        self.check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    @staticmethod
    def check_available() -> None:
        """Call on every rank before training, so all fail together instead of rank 0 alone."""
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise AlbertError(
                "--tensorboard needs the tensorboard package: `pip install tensorboard` (or drop --tensorboard; "
                "metrics.jsonl and `albert plot` work without it)"
            ) from None

    def write(self, record: dict[str, Any], prefix: str = "train") -> None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def iter_groups(iterable: Any, size: int) -> Iterator[list[Any]]:
    """Consecutive groups of `size` items (the last, shorter group is dropped)."""
    group: list[Any] = []
    for item in iterable:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
