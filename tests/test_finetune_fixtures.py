"""Shared fixtures for the fine-tuning, evaluation, pipeline and predict tests.

A SentencePiece tokenizer is trained once per session on a slice of the bundled corpus (plus a
few Chinese lines for the character-level NER test), and every test fine-tunes a tiny ALBERT
(hidden 32, 2 layers) described by a config.json - so nothing depends on ../shared/data.
Data files are written by small builders below: each test makes the exact file it needs.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

CHINESE = ["我爱北京天安门。", "张三住在上海市。", "李四在北京大学工作。", "王五去了广州。"] * 5
POSITIVE = ["good", "great", "wonderful", "happy", "excellent", "love", "fine", "pleasant"]
NEGATIVE = ["bad", "awful", "terrible", "sad", "poor", "hate", "boring", "dull"]
FILLER = ["the", "a", "this", "film", "story", "was", "very", "quite", "it", "and"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest single-threaded (and the shared CI cores are oversubscribed)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_TRAINED: dict[str, Path] = {}  # pytest instantiates an imported session fixture once per module


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from albert.tokenizer_train import train_tokenizer

    if "tokenizer" not in _TRAINED:
        folder = tmp_path_factory.mktemp("ft_tokenizer")
        with gzip.open(Path(str(resources.files("albert") / "resources" / "corpus_en.txt.gz")), "rt") as f:
            lines = [next(f) for _ in range(2500)]
        corpus = folder / "corpus.txt"
        corpus.write_text("".join(lines) + "\n".join(CHINESE + POSITIVE + NEGATIVE) + "\n", encoding="utf-8")
        # full character coverage: the few Chinese lines are far below the default 0.9995 cut-off
        _TRAINED["tokenizer"] = train_tokenizer(
            [corpus], 1000, folder / "tokenizer", character_coverage=1.0, num_threads=1
        )
    return _TRAINED["tokenizer"]


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> Any:
    from albert.tokenization import AlbertTokenizer

    return AlbertTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_config(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config.json of a tiny ALBERT whose vocabulary fits the session tokenizer."""
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    config = dict(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_act="gelu_new",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def finetune_tiny(
    task: str, train: Path, dev: Path, model: Path, tokenizer_dir: Path, output: Path, **kwargs: Any
) -> dict[str, Any]:
    """A few optimizer steps of `albert.finetune.finetune` with test-sized settings."""
    from albert.finetune import FinetuneConfig, finetune
    from albert.tasks import TaskOptions

    options = TaskOptions(**{"max_seq_length": 64, **kwargs.pop("options", {})})
    settings = {
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "max_steps": 6,
        "logging_steps": 2,
        **kwargs,
    }
    config = FinetuneConfig(
        task=task,
        train=str(train),
        dev=str(dev),
        model=str(model),
        output=str(output),
        tokenizer=str(tokenizer_dir),
        task_options=options,
        **settings,
    )
    return finetune(config)


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run `albert ARGV...` in-process; the JSON object on the last stdout line."""
    from albert.cli import main

    status = main(list(argv))
    out = capsys.readouterr().out
    assert status == 0, out
    return json.loads(out.strip().splitlines()[-1])


def cli_json_lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[Any]:
    from albert.cli import main

    assert main(list(argv)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------------
# data builders


def sentiment_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """(label, text): "1" texts use positive words, "0" texts negative ones; lengths vary."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = i % 2
        words = [rng.choice(POSITIVE if label else NEGATIVE) for _ in range(rng.randint(1, 3))]
        words += rng.sample(FILLER, rng.randint(1, 8))
        rng.shuffle(words)
        rows.append((str(label), " ".join(words)))
    return rows


def write_csv(path: Path, header: list[str], rows: list[tuple[Any, ...]], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


NER_SENTENCES = [
    (["Emma", "Woodhouse", "lived", "in", "Highbury", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
    (["Mr.", "Knightley", "visited", "Hartfield"], ["B-PER", "I-PER", "O", "B-LOC"]),
    (["Harriet", "walked", "to", "Donwell", "Abbey", "today"], ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
    (
        ["They", "dined", "at", "Randalls", "with", "Mrs.", "Weston"],
        ["O", "O", "O", "B-LOC", "O", "B-PER", "I-PER"],
    ),
]


def write_conll(
    path: Path, sentences: list[tuple[list[str], list[str]]], separator: str = "\t", docstart: bool = True
) -> Path:
    lines = ["-DOCSTART- O", ""] if docstart else []
    for words, tags in sentences:
        lines.extend(f"{w}{separator}{t}" for w, t in zip(words, tags, strict=True))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


CHINESE_NER = [
    (list("张三住在上海市"), ["B-PER", "I-PER", "O", "O", "B-LOC", "I-LOC", "I-LOC"]),
    (list("李四在北京工作"), ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "O"]),
]

CONTEXT = (
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, "
    "seemed to unite some of the best blessings of existence; and had lived nearly twenty-one years "
    "in the world with very little to distress or vex her. She was the youngest of the two daughters "
    "of a most affectionate, indulgent father."
)
QUESTIONS = [
    ("q1", "Who was handsome, clever, and rich?", "Emma Woodhouse"),
    ("q2", "How long had she lived in the world?", "nearly twenty-one years"),
    ("q3", "What kind of father did she have?", "a most affectionate, indulgent father"),
    ("q4", "What did she seem to unite?", "some of the best blessings of existence"),
]


def squad_file(path: Path, version_2: bool) -> Path:
    qas = [
        {"id": qid, "question": q, "answers": [{"text": a, "answer_start": CONTEXT.index(a)}]}
        for qid, q, a in QUESTIONS
    ]
    if version_2:
        for qa in qas:
            qa["is_impossible"] = False
        qas.append(
            {"id": "q5", "question": "What was the name of her horse?", "answers": [], "is_impossible": True}
        )
    data = {
        "version": "v2.0" if version_2 else "1.1",
        "data": [{"title": "Emma", "paragraphs": [{"context": CONTEXT, "qas": qas}]}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


RACE_ROWS = [
    {
        "article": "Emma lived at Hartfield with her father. Her friend Harriet often visited.",
        "question": "Where did Emma live?",
        "options": ["Hartfield", "London", "Bath", "Donwell"],
        "answer": "A",
    },
    {
        "article": "Mr. Knightley walked to Hartfield every evening to see Mr. Woodhouse.",
        "question": "Mr. Knightley walked to _ every evening.",
        "options": ["London", "Hartfield", "Randalls", "Highbury"],
        "answer": "B",
    },
    {
        "article": "In the beginning God created the heaven and the earth.",
        "question": "What did God create?",
        "options": ["a city", "a tower", "the heaven and the earth", "a garden"],
        "answer": "C",
    },
]

SWAG_ROWS = [
    {
        "sent1": "Emma sat down at the piano.",
        "sent2": "She",
        "ending0": "began to play.",
        "ending1": "ate the piano.",
        "ending2": "flew away.",
        "label": 0,
    },
    {
        "sent1": "The rain began to fall.",
        "sent2": "Harriet",
        "ending0": "swam in the sky.",
        "ending1": "opened her umbrella.",
        "ending2": "became a tree.",
        "label": 1,
    },
    {
        "context": "Mr. Woodhouse felt cold.",
        "endings": ["He melted.", "He sang loudly.", "He asked for a shawl."],
        "label": 2,
    },
]


def save_tiny(cls_name: str, tiny_config: Path, tokenizer_dir: Path, folder: Path, **overrides: Any) -> Path:
    """A randomly initialised tiny head model + the session tokenizer, saved as a model directory."""
    import torch

    from albert.checkpoint import build_model
    from albert.modeling import MODEL_CLASSES
    from albert.tokenization import AlbertTokenizer

    torch.manual_seed(0)
    build_model(MODEL_CLASSES[cls_name], tiny_config, **overrides).save_pretrained(folder)
    AlbertTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def classifier_dir(tiny_config: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("classifier")
    return save_tiny(
        "AlbertForSequenceClassification",
        tiny_config,
        tokenizer_dir,
        folder,
        id2label={0: "neg", 1: "pos", 2: "mixed"},
    )


@pytest.fixture(scope="session")
def pretraining_dir(tiny_config: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(
        "AlbertForPreTraining", tiny_config, tokenizer_dir, tmp_path_factory.mktemp("pretraining")
    )
