"""Real inputs for the speed benchmarks: Rotten Tomatoes reviews, tokenized and padded the way
users' batches are (each batch padded to its longest member), next to full-length synthetic ones.

The shared data lives in `../shared/data` (see the project's data notes); benchmarks that need it
stop with one line when it is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROTTEN_TOMATOES = DATA / "classify" / "en" / "rotten_tomatoes"


def read_texts(path: Path, limit: int | None = None) -> list[str]:
    """The `text` column of a `label,text` CSV (first `limit` rows; all when falsy)."""
    if not path.is_file():
        raise SystemExit(f"shared data not found at {path}")
    with path.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    return texts[:limit] if limit else texts


def rotten_tomatoes_tokenizer(folder: Path) -> Path:
    """An 8,000-piece SentencePiece tokenizer (ALBERT recipe) trained on the Rotten Tomatoes
    training texts, written to `folder`; returns the directory."""
    from albert.tokenizer_train import train_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "train.txt"
    corpus.write_text("\n".join(read_texts(ROTTEN_TOMATOES / "train.csv")), encoding="utf-8")
    return train_tokenizer([corpus], 8000, folder / "tokenizer")


def full_length_batch(batch_size: int, seq: int, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random ids, every position real: the worst case for padding-free tricks."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, seq)
    return {
        "input_ids": rng.integers(5, vocab_size, shape, dtype=np.int64),
        "attention_mask": np.ones(shape, np.int64),
        "token_type_ids": np.zeros(shape, np.int64),
    }


def mixed_length_batch(
    tokenizer_dir: Path, batch_size: int, max_length: int = 128, seed: int = 0
) -> dict[str, np.ndarray]:
    """`batch_size` Rotten Tomatoes dev reviews drawn at random, tokenized, padded to the batch's
    longest review (truncated at `max_length`): real mixed lengths, with real padding."""
    from albert.tokenization import AlbertTokenizer

    texts = read_texts(ROTTEN_TOMATOES / "dev.csv")
    picked = np.random.default_rng(seed).choice(len(texts), batch_size, replace=False)
    tokenizer = AlbertTokenizer.from_pretrained(tokenizer_dir)
    encoded = tokenizer(
        [texts[i] for i in picked], padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    return {
        name: np.asarray(encoded[name], dtype=np.int64)
        for name in ("input_ids", "attention_mask", "token_type_ids")
    }


def describe(batch: dict[str, np.ndarray]) -> dict[str, int | float]:
    """Shape and padding of a batch, for the results file."""
    lengths = batch["attention_mask"].sum(1)
    return {
        "batch": int(batch["input_ids"].shape[0]),
        "padded_length": int(batch["input_ids"].shape[1]),
        "mean_length": round(float(lengths.mean()), 1),
        "min_length": int(lengths.min()),
        "real_token_fraction": round(float(lengths.sum() / batch["attention_mask"].size), 3),
    }
