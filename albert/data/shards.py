"""The on-disk format of a pretraining data directory.

::

    manifest.json                    format version, tokenizer fingerprint, options, counts, shards
    word_start.npy maskable.npy random_ids.npy    vocabulary tables for (dynamic) masking
    shard-00000.input_ids.bin        all examples' tokens, flat (uint16, or uint32 for vocabularies > 65536)
    shard-00000.index.npy            int64 [examples, 6]: token start, length, len("[CLS] A [SEP]"),
                                     sentence_order_label, prediction start, prediction count
    shard-00000.positions.bin        masked positions within their example, flat (uint16)
    shard-00000.labels.bin           original ids at those positions, flat (token dtype)

Every file is memory-mapped by `PretrainingDataset`; nothing is loaded whole. The writer streams
token arrays straight to disk and keeps only a shard's small index in memory, closing a shard
once it holds `SHARD_TOKENS` tokens. Shards are cut between units, in unit order, so their
contents never depend on the number of workers. The manifest is written last, and the whole
directory is built under a temporary name and renamed into place (see `albert.data.build`), so
a directory with a manifest is always complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from albert.data.examples import UnitResult
from albert.errors import AlbertError

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "albert-pretraining-data"
FORMAT_VERSION = 1
SHARD_TOKENS = 1 << 24  # tokens per shard: 32 MiB of uint16
INDEX_COLUMNS = ("start", "length", "segment_a", "sentence_order", "prediction_start", "prediction_count")


def tokenizer_fingerprint(tokenizer_dir: str | Path) -> str:
    """SHA-256 of the tokenizer's vocabulary file (``spiece.model`` or ``vocab.txt``)."""
    from albert.tokenization import SPM_FILE, VOCAB_FILE

    root = Path(tokenizer_dir)
    for name in (SPM_FILE, VOCAB_FILE):
        if (root / name).is_file():
            return "sha256:" + hashlib.sha256((root / name).read_bytes()).hexdigest()
    raise AlbertError(
        f"{root} has neither {SPM_FILE} nor {VOCAB_FILE}; pass the tokenizer directory the data is built with"
    )


def check_same_tokenizer(tokenizer_dir: str | Path, model_dir: str | Path, flag: str = "--tokenizer") -> None:
    """Refuse a tokenizer other than the one saved with the model (compared by fingerprint).

    A different vocabulary of the same size loads without complaint and maps every text to the
    wrong ids, so every command that pairs a tokenizer with a model checks this. A model
    directory without tokenizer files cannot be checked (its vocabulary size still is)."""
    from albert.tokenization import SPM_FILE, VOCAB_FILE

    tokenizer_root, model_root = Path(tokenizer_dir), Path(model_dir)
    both = [
        any((root / n).is_file() for n in (SPM_FILE, VOCAB_FILE)) for root in (tokenizer_root, model_root)
    ]
    if not all(both) or tokenizer_root.resolve() == model_root.resolve():
        return  # nothing to compare (a missing tokenizer is reported where it is loaded)
    given, own = tokenizer_fingerprint(tokenizer_root), tokenizer_fingerprint(model_root)
    if given != own:
        raise AlbertError(
            f"{flag} {tokenizer_root} is not the tokenizer {model_root} was trained with (fingerprint "
            f"{given[:19]}…, the model's {own[:19]}…): its ids would mean other pieces; drop {flag} to "
            "use the model's own tokenizer"
        )


@dataclass
class _OpenShard:
    name: str
    files: dict[str, BinaryIO]
    index: list[np.ndarray]
    tokens: int = 0
    predictions: int = 0
    examples: int = 0


class ShardWriter:
    """Appends unit results to numbered shards in `directory`."""

    def __init__(self, directory: Path, shard_tokens: int = SHARD_TOKENS) -> None:
        self.directory = directory
        self.shard_tokens = shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._open: _OpenShard | None = None

    def add(self, result: UnitResult) -> None:
        if result.lengths.size == 0:
            return
        shard = self._open or self._start()
        starts = shard.tokens + np.concatenate([[0], np.cumsum(result.lengths)[:-1]])
        prediction_starts = shard.predictions + np.concatenate(
            [[0], np.cumsum(result.prediction_counts)[:-1]]
        )
        rows = np.stack(
            [
                starts,
                result.lengths,
                result.segment_a,
                result.sentence_order.astype(np.int64),
                prediction_starts,
                result.prediction_counts,
            ],
            axis=1,
        ).astype(np.int64)
        shard.index.append(rows)
        shard.files["input_ids"].write(result.input_ids.tobytes())
        shard.files["positions"].write(result.prediction_positions.tobytes())
        shard.files["labels"].write(result.prediction_labels.tobytes())
        shard.tokens += int(result.lengths.sum())
        shard.predictions += int(result.prediction_counts.sum())
        shard.examples += int(result.lengths.size)
        if shard.tokens >= self.shard_tokens:
            self._close()

    def close(self) -> list[dict[str, Any]]:
        """Finish the last shard; return the shard list for the manifest."""
        self._close()
        return self.shards

    def abort(self) -> None:
        if self._open is not None:
            for handle in self._open.files.values():
                handle.close()
            self._open = None

    def _start(self) -> _OpenShard:
        name = f"shard-{len(self.shards):05d}"
        files = {
            kind: open(self.directory / f"{name}.{kind}.bin", "wb")
            for kind in ("input_ids", "positions", "labels")
        }
        self._open = _OpenShard(name, files, [])
        return self._open

    def _close(self) -> None:
        shard = self._open
        if shard is None:
            return
        for handle in shard.files.values():
            handle.close()
        np.save(self.directory / f"{shard.name}.index.npy", np.concatenate(shard.index), allow_pickle=False)
        self.shards.append(
            {
                "name": shard.name,
                "examples": shard.examples,
                "tokens": shard.tokens,
                "predictions": shard.predictions,
            }
        )
        self._open = None


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (directory / MANIFEST_FILE).write_text(text, encoding="utf-8")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a data directory, checked for format and version."""
    root = Path(directory)
    path = root / MANIFEST_FILE
    if not path.is_file():
        hint = "it is incomplete or not pretraining data" if root.is_dir() else "it does not exist"
        raise AlbertError(
            f"{root} has no {MANIFEST_FILE} ({hint}); build it with `albert data --tokenizer DIR --input FILE "
            f"--output {root}`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlbertError(f"{path} is corrupted ({e}); rebuild the data with `albert data`") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise AlbertError(
            f"{path} is not an albert pretraining-data manifest; rebuild the data with `albert data`"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise AlbertError(
            f"data in {root} has format version {version}, this albert reads version {FORMAT_VERSION}; "
            "rebuild it with `albert data`"
        )
    return manifest


class ShardArrays:
    """Memory-mapped views of one shard's files (opened on first use)."""

    def __init__(self, directory: Path, name: str, token_dtype: str) -> None:
        self.index = np.load(directory / f"{name}.index.npy", mmap_mode="r", allow_pickle=False)
        self.input_ids = _memmap(directory / f"{name}.input_ids.bin", token_dtype)
        self.positions = _memmap(directory / f"{name}.positions.bin", "uint16")
        self.labels = _memmap(directory / f"{name}.labels.bin", token_dtype)


def _memmap(path: Path, dtype: str) -> np.ndarray:
    if not path.is_file():
        raise AlbertError(f"{path} is missing; the data directory is damaged - rebuild it with `albert data`")
    if path.stat().st_size == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
