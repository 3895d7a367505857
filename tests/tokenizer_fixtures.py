"""Session fixtures for the tokenizer tests: vocabularies trained once on real shared text.

Both vocabularies are trained in the test session (no pretrained ALBERT vocabulary exists
offline): a SentencePiece unigram model the ALBERT way via `train_tokenizer`, and a WordPiece
``vocab.txt`` via the `tokenizers` library's BERT trainer, each on ~2 MB of English and
Chinese text. transformers' tokenizers loaded from the same directories are the oracle.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from albert.tokenization import AlbertTokenizer

TRAIN_BYTES = {  # file -> bytes taken from its start for training
    "pretrain/en/austen.txt": 700_000,
    "pretrain/en/fortunes.txt": 300_000,
    "pretrain/zh/peoples_daily_199801.txt": 600_000,
}
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Each test module that imports these fixtures gets its own copy of them, so a session-scoped
# fixture alone would train once per module; this cache makes it once per session.
_BUILT: dict[str, Any] = {}


def _once(key: str, build: Callable[[], Any]) -> Any:
    if key not in _BUILT:
        _BUILT[key] = build()
    return _BUILT[key]


def read_lines(path: Path, limit: int | None = None, skip: int = 0) -> list[str]:
    """Non-empty lines of a UTF-8 text file (undecodable bytes dropped)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="ignore").splitlines()]
    lines = [line for line in lines if line][skip:]
    return lines[:limit] if limit is not None else lines


def read_csv_texts(path: Path, limit: int | None = None) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)]
    return texts[:limit] if limit is not None else texts


@pytest.fixture(scope="session")
def training_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Slices of real text (the last line may be cut mid-character: the trainer must cope)."""
    return _once("corpus", lambda: _write_training_files(shared_data, tmp_path_factory.mktemp("corpus")))


def _write_training_files(shared_data: Path, folder: Path) -> list[Path]:
    files = []
    for name, size in TRAIN_BYTES.items():
        target = folder / Path(name).name
        with (shared_data / name).open("rb") as source:
            target.write_bytes(source.read(size))
        files.append(target)
    reviews = folder / "rotten_tomatoes_train.txt"
    reviews.write_text(
        "\n".join(read_csv_texts(shared_data / "classify/en/rotten_tomatoes/train.csv")), "utf-8"
    )
    return [*files, reviews]


@pytest.fixture(scope="session")
def spm_dir(training_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from albert.tokenizer_train import train_tokenizer

    return _once(
        "spm",
        lambda: train_tokenizer(
            training_files, 4000, tmp_path_factory.mktemp("spm"), input_sentence_size=100_000
        ),
    )


@pytest.fixture(scope="session")
def wordpiece_dir(training_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BERT vocab.txt trained with the tokenizers library, specials first as in BERT/albert_zh."""
    return _once("wordpiece", lambda: _train_wordpiece(training_files, tmp_path_factory.mktemp("wordpiece")))


def _train_wordpiece(training_files: list[Path], folder: Path) -> Path:
    from tokenizers import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True)
    lines = [line for path in training_files for line in read_lines(path)]
    trainer.train_from_iterator(
        lines, vocab_size=4000, special_tokens=WORDPIECE_SPECIALS, show_progress=False
    )
    vocab = sorted(trainer.get_vocab().items(), key=lambda item: item[1])
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in vocab), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def ours(spm_dir: Path) -> AlbertTokenizer:
    return AlbertTokenizer.from_pretrained(spm_dir)


@pytest.fixture(scope="session")
def theirs(spm_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AlbertTokenizer.from_pretrained(spm_dir)


@pytest.fixture(scope="session")
def ours_wp(wordpiece_dir: Path) -> AlbertTokenizer:
    return AlbertTokenizer.from_pretrained(wordpiece_dir)


@pytest.fixture(scope="session")
def theirs_wp(wordpiece_dir: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizer.from_pretrained(wordpiece_dir)


@pytest.fixture(scope="session")
def english(shared_data: Path) -> list[str]:
    """Real English: review snippets, Austen paragraphs (accents, ``quotes''), digit groups."""
    reviews = read_csv_texts(shared_data / "classify/en/rotten_tomatoes/dev.csv", 400)
    austen = read_lines(shared_data / "pretrain/en/austen.txt", 300, skip=6000)
    fortunes = read_lines(shared_data / "pretrain/en/fortunes.txt")
    digits = [line for line in fortunes if any(c.isdigit() for c in line) and "," in line][:200]
    tricky = [
        "Café naïve façade — “smart quotes” ``latex'' 1,000,000 and 3.14",
        "Hello, world!",
        "A\tB\u00a0C\u2003D",
    ]
    return reviews + austen + digits + tricky


@pytest.fixture(scope="session")
def chinese(shared_data: Path) -> list[str]:
    news = read_lines(shared_data / "pretrain/zh/peoples_daily_199801.txt", 200, skip=15000)
    reviews = read_csv_texts(shared_data / "classify/zh/reviews_sentiment/dev.csv", 300)
    return news + reviews
