"""What every fine-tuning task shares: reading tables, the `Task` interface, length-bucketed
batching, dynamic padding and running a model over features in batches.

All numpy, no torch: evaluation and prediction also run on the ONNX runtime. A *feature* is a
dict of plain lists (``input_ids``, ``token_type_ids``, labels, bookkeeping such as the index of
its example); `pad_batch` turns a batch of them into int64/float arrays padded to the longest
member only, so no compute is wasted on padding.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from albert.errors import AlbertError

Feature = dict[str, Any]
# A runner maps padded int64 arrays (input_ids, attention_mask, token_type_ids) to named numpy
# outputs; see albert.pipelines.TorchRunner and albert.onnx_runtime.OnnxModel.
Runner = Callable[..., dict[str, np.ndarray]]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_KEYS = ("labels", "start_positions", "end_positions")
IGNORE_INDEX = -100


@dataclass
class TaskOptions:
    """Data options of all tasks (each task reads the ones it needs); saved in finetune_args.json."""

    max_seq_length: int = 128
    # text-classification
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    problem_type: str | None = None  # None: detected from the training labels
    # token-classification
    token_column: int = 0
    tag_column: int = -1
    char_level: bool | None = None  # None: detected (one character per token, e.g. Chinese NER)
    # question-answering
    doc_stride: int = 128
    max_query_length: int = 64
    n_best: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool | None = None  # None: detected (unanswerable questions present)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def check(self) -> None:
        """Raise one AlbertError naming every option out of range (before any data is read)."""
        at_least = {
            "max_seq_length": 8,
            "doc_stride": 1,
            "max_query_length": 1,
            "n_best": 1,
            "max_answer_length": 1,
        }
        problems = [
            f"--{name.replace('_', '-')} must be at least {low}, not {getattr(self, name)}"
            for name, low in at_least.items()
            if getattr(self, name) < low
        ]
        if not math.isfinite(self.null_score_diff_threshold):
            problems.append(
                f"--null-score-diff-threshold must be a finite number, not {self.null_score_diff_threshold}"
            )
        if problems:
            raise AlbertError("; ".join(problems))


class Task:
    """One fine-tuning task: file reader, label space, feature builder and metrics.

    Life cycle: `read` the files -> `fit_labels` on the training examples (or `restore_labels`
    from a saved model's config) -> `features` -> run a model -> `metrics`.
    """

    name: str = ""
    model_class: str = ""  # the albert.modeling head class
    sequence_outputs: tuple[str, ...] = ()  # outputs with one row per token (sliced to its length)

    def __init__(self, options: TaskOptions | None = None) -> None:
        self.options = options or TaskOptions()

    # -- data -------------------------------------------------------------------------
    def read(self, path: str | Path) -> list[Any]:
        raise NotImplementedError

    def fit_labels(self, examples: list[Any]) -> dict[str, Any]:
        """Learn the label space from training examples; returns model config overrides."""
        return {}

    def restore_labels(self, config: dict[str, Any]) -> None:
        """Take the label space back from a fine-tuned model's config (id2label, problem_type)."""

    def check_labels(self, examples: list[Any], path: str | Path) -> None:
        """Raise if `examples` (dev/test) carry labels the model was not trained on."""

    def features(self, examples: list[Any], tokenizer: Any, training: bool) -> list[Feature]:
        raise NotImplementedError

    # -- evaluation -------------------------------------------------------------------
    def metrics(
        self, examples: list[Any], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def primary_metric(self, metrics: dict[str, Any]) -> str:
        """The metric early stopping and best-checkpoint selection maximise."""
        raise NotImplementedError

    def saved_options(self) -> dict[str, Any]:
        """Options resolved while reading the data, to save with the model."""
        return {}


# ----------------------------------------------------------------------------------------
# reading files


def check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise AlbertError(f"data file not found: {path}")
    return path


def read_text(path: str | Path) -> str:
    path = check_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise AlbertError(f"{path} is not valid UTF-8 (byte {e.start}); re-save it as UTF-8") from None
    if not text.strip():
        raise AlbertError(f"{path} is empty; it must hold at least one example")
    return text


def is_jsonl(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".json", ".ndjson")


def read_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AlbertError(
                f"{path} line {number}: not valid JSON ({e.msg}); one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise AlbertError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def read_table(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) from a CSV (.csv), TSV (.tsv/.tab) or JSON-lines (.jsonl/.json) file."""
    path = check_file(path)
    if is_jsonl(path):
        rows = read_jsonl(path)
    else:
        text = read_text(path)
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        # a stream, not splitlines(): a quoted field may hold a line break, which must stay in it
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if not reader.fieldnames:
            raise AlbertError(f"{path} has no header line; the first line must name the columns")
        rows = [(reader.line_num, row) for row in reader]
        for number, row in rows:
            _check_row_width(path, number, row, len(reader.fieldnames))
    if not rows:
        raise AlbertError(f"{path} has a header but no examples")
    return rows


def _check_row_width(path: Path, number: int, row: dict[Any, Any], width: int) -> None:
    """A CSV/TSV row with fewer or more fields than the header is malformed, not a missing column."""
    extra = row.get(None)  # csv.DictReader puts surplus fields under the key None
    short = [k for k, v in row.items() if k is not None and v is None]
    if extra or short:
        count = width + len(extra) if extra else width - len(short)
        raise AlbertError(
            f"{path} line {number}: the row has {count} field(s) but the header has {width}; fix that row "
            "(quote a field that contains the delimiter or a line break)"
        )


def require_columns(path: str | Path, rows: list[tuple[int, dict[str, Any]]], *columns: str) -> None:
    """Raise naming the missing column(s) and the columns the file does have."""
    found = list(rows[0][1].keys())
    for number, row in rows:
        missing = [c for c in columns if c not in row or row[c] is None]
        if missing:
            where = "" if number == rows[0][0] else f" (line {number})"
            raise AlbertError(
                f"{path}{where} has no column {', '.join(repr(c) for c in missing)}; columns found: "
                f"{', '.join(found)}; pass the right name with --text-column/--label-column etc."
            )


# ----------------------------------------------------------------------------------------
# batching


def length_bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    chunk_batches: int = 50,
    max_padding: float = 0.0,
) -> list[list[int]]:
    """Batches of indices whose members have similar lengths, so little compute goes to padding.

    Training (`shuffle`): shuffle, sort within chunks of `chunk_batches` batches, cut into batches
    of `batch_size` and shuffle the batches - random but not wasteful, deterministic in `seed`.

    Inference: sort by length (longest first, so a memory problem shows up at once) and close a
    batch when it is full or when the next input would make more than `max_padding` of its
    tokens padding. The default 0 gives batches of equal-length inputs: no padding and no
    attention mask at all (a transformer's cost is per token, so a few more, smaller batches
    cost far less than padding - on mixed-length text that is about half the work)."""
    if batch_size < 1:
        raise AlbertError(f"batch size must be at least 1, not {batch_size}")
    order = list(range(len(lengths)))
    if not shuffle:
        order.sort(key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        real = 0
        for i in order:
            batch = batches[-1] if batches else []
            slots = lengths[batch[0]] * (len(batch) + 1) if batch else 0
            if not batch or len(batch) == batch_size or slots - real - lengths[i] > max_padding * slots:
                batches.append([i])
                real = lengths[i]
            else:
                batch.append(i)
                real += lengths[i]
        return batches
    rng = random.Random(seed)
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        members = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    rng.shuffle(batches)
    return batches


def feature_length(feature: Feature) -> int:
    ids = feature["input_ids"]
    return max(len(row) for row in ids) if ids and isinstance(ids[0], list) else len(ids)


def _pad_rows(rows: list[list[Any]], width: int, value: Any, dtype: Any) -> np.ndarray:
    out = np.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def pad_batch(features: list[Feature], pad_id: int, pad_to: int = 0) -> dict[str, np.ndarray]:
    """Model inputs (and labels, if present) of a batch, padded to its longest member (or to
    `pad_to` tokens, if that is longer).

    Multiple-choice features hold one row per choice and give (batch, choices, length) arrays."""
    first = features[0]
    nested = bool(first["input_ids"]) and isinstance(first["input_ids"][0], list)
    width = max(pad_to, *(feature_length(f) for f in features))
    flat = (lambda f, key: f[key]) if nested else (lambda f, key: [f[key]])
    ids = [row for f in features for row in flat(f, "input_ids")]
    types = [row for f in features for row in flat(f, "token_type_ids")]
    batch = {
        "input_ids": _pad_rows(ids, width, pad_id, np.int64),
        "attention_mask": _pad_rows([[1] * len(r) for r in ids], width, 0, np.int64),
        "token_type_ids": _pad_rows(types, width, 0, np.int64),
    }
    if nested:
        batch = {k: v.reshape(len(features), -1, width) for k, v in batch.items()}
    for key in LABEL_KEYS:
        if key not in first:
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list) and not _is_float(values):  # one label per token
            batch[key] = _pad_rows(values, width, IGNORE_INDEX, np.int64)
        else:
            batch[key] = np.asarray(values, dtype=np.float32 if _is_float(values) else np.int64)
    return batch


def _is_float(values: list[Any]) -> bool:
    probe = values[0][0] if isinstance(values[0], list) and values[0] else values[0]
    return isinstance(probe, float)


def run_batch(
    runner: Runner,
    features: list[Feature],
    pad_id: int,
    sequence_outputs: tuple[str, ...] = (),
    wanted: tuple[str, ...] | None = None,
    pad_to: int = 0,
) -> list[dict[str, np.ndarray]]:
    """The outputs for each feature of ONE padded batch (however its members were grouped).

    Outputs named in `sequence_outputs` have one row per token and are cut back to the
    feature's own length; `wanted` keeps only those outputs (e.g. `logits`); `pad_to` pads the
    batch to at least that many tokens."""
    batch = pad_batch(features, pad_id, pad_to)
    outputs = runner(**{k: batch[k] for k in MODEL_INPUTS})
    if wanted is not None:
        outputs = {k: v for k, v in outputs.items() if k in wanted}
    return [
        {
            name: (value[row, : feature_length(feature)] if name in sequence_outputs else value[row])
            for name, value in outputs.items()
        }
        for row, feature in enumerate(features)
    ]


def run_model(
    runner: Runner,
    features: list[Feature],
    batch_size: int,
    pad_id: int,
    sequence_outputs: tuple[str, ...] = (),
    wanted: tuple[str, ...] | None = None,
    progress: Any = None,
) -> list[dict[str, np.ndarray]]:
    """The outputs for each feature, in feature order, from length-sorted padded batches
    (see `run_batch` for `sequence_outputs` and `wanted`)."""
    results: list[dict[str, np.ndarray] | None] = [None] * len(features)
    lengths = [feature_length(f) for f in features]
    for indices in length_bucketed_batches(lengths, batch_size, shuffle=False):
        outputs = run_batch(runner, [features[i] for i in indices], pad_id, sequence_outputs, wanted)
        for index, output in zip(indices, outputs, strict=True):
            results[index] = output
        if progress is not None:
            progress.update(len(indices))
    return results  # type: ignore[return-value]
