"""Pretraining data for the loop: the datasets, their tokenizer, the held-out split and the
deterministic sampler.

Data order comes from our own sampler (one seeded permutation per epoch, consumed `global batch`
indices per step and cut into per-rank micro-batches), so a checkpoint stores the data position
as (epoch, index) and a resumed run sees exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albert.errors import AlbertError

TOKENIZER_FILES = ("spiece.model", "vocab.txt")


def load_dataset(directory: str, tokenizer_dir: str | None) -> Any:
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


@dataclass(frozen=True)
class DataSource:
    """Where an objective's data is: the training shards, their tokenizer (None: the one the
    data records) and separate held-out shards (None: hold out a fraction of `train`)."""

    train: str
    tokenizer: str | None = None
    held_out: str | None = None


@dataclass
class TrainingData:
    """The datasets of a run, their tokenizer and which sequences train and which are held out."""

    tokenizer: Any
    tokenizer_dir: Path
    max_seq_length: int | None
    train_dataset: Any
    eval_dataset: Any
    train_indices: np.ndarray
    eval_indices: np.ndarray
    collate: Any


def load_training_data(source: DataSource, eval_fraction: float, seed: int) -> TrainingData:
    """The datasets of `source`; `eval_fraction` of the training data is held out (seeded) when
    `source.held_out` is None. Masking of the held-out data stays at epoch 0."""
    from albert.data import collate_pretraining
    from albert.tokenization import AlbertTokenizer

    probe = load_dataset(source.train, source.tokenizer)
    manifest = dict(getattr(probe, "manifest", {}) or {})
    tokenizer_dir = find_tokenizer_dir(source.tokenizer, manifest, source.train)
    train_dataset = load_dataset(source.train, str(tokenizer_dir))
    if source.held_out:
        eval_dataset = load_dataset(source.held_out, str(tokenizer_dir))
        train_indices, eval_indices = np.arange(len(train_dataset)), np.arange(len(eval_dataset))
    else:
        eval_dataset = probe  # a separate instance: its masking stays at epoch 0 while training's moves on
        train_indices, eval_indices = split_held_out(len(probe), eval_fraction, seed)
    if hasattr(eval_dataset, "set_epoch"):
        eval_dataset.set_epoch(0)
    return TrainingData(
        tokenizer=AlbertTokenizer.from_pretrained(tokenizer_dir),
        tokenizer_dir=tokenizer_dir,
        max_seq_length=(manifest.get("options") or {}).get("max_seq_length"),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        train_indices=train_indices,
        eval_indices=eval_indices,
        collate=getattr(train_dataset, "collate", None) or collate_pretraining,
    )


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


def iter_groups(iterable: Any, size: int) -> Iterator[list[Any]]:
    """Consecutive groups of `size` items (the last, shorter group is dropped)."""
    group: list[Any] = []
    for item in iterable:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
