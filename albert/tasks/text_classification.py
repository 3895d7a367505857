"""Sentence (pair) classification and regression: CSV/TSV/JSONL -> AlbertForSequenceClassification.

The problem type is read off the training labels unless given: a list (JSONL) or a
``|``-separated string (CSV) means multi-label; numbers that are not all integers mean
regression; anything else is single-label classification with the distinct values as labels
(sorted numerically when they are all integers, so "0"/"1" stay ids 0/1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albert import metrics
from albert.config import PROBLEM_TYPES
from albert.errors import AlbertError
from albert.postprocess import sigmoid
from albert.tasks.common import Feature, Task, read_table, require_columns

SINGLE, MULTI, REGRESSION = PROBLEM_TYPES[1], PROBLEM_TYPES[2], PROBLEM_TYPES[0]


@dataclass
class TextExample:
    text: str
    text_pair: str | None
    label: Any  # raw value from the file
    line: int


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(str(value))
        return True
    except ValueError:
        return False


_INTEGRAL_FLOAT = re.compile(r"-?\d+\.0+")


def label_name(value: Any) -> str:
    """A label as the string stored in id2label: 1, 1.0, "1" and "1.0" are all "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text.split(".")[0] if _INTEGRAL_FLOAT.fullmatch(text) else text


def label_parts(value: Any) -> list[str]:
    """The labels of a multi-label example: a JSON list or a "|"-separated string ("" = none)."""
    if isinstance(value, list):
        return [label_name(v) for v in value]
    return [part for part in (p.strip() for p in str(value).split("|")) if part]


def _sort_labels(labels: set[str]) -> list[str]:
    if all(_is_number(label) and float(label).is_integer() for label in labels):
        return sorted(labels, key=float)
    return sorted(labels)


class TextClassificationTask(Task):
    name = "text-classification"
    model_class = "AlbertForSequenceClassification"

    id2label: dict[int, str]
    problem_type: str

    def read(self, path: str | Path) -> list[TextExample]:
        o = self.options
        rows = read_table(path)
        columns = [o.text_column, o.label_column] + ([o.text_pair_column] if o.text_pair_column else [])
        require_columns(path, rows, *columns)
        examples = []
        for line, row in rows:
            pair = str(row[o.text_pair_column]) if o.text_pair_column else None
            examples.append(TextExample(str(row[o.text_column]), pair, row[o.label_column], line))
        return examples

    # -- labels -----------------------------------------------------------------------
    def detect_problem_type(self, examples: list[TextExample]) -> str:
        raw = [e.label for e in examples]
        if any(isinstance(v, list) or (isinstance(v, str) and "|" in v) for v in raw):
            return MULTI
        if all(_is_number(v) for v in raw) and not all(float(v).is_integer() for v in raw):
            return REGRESSION
        return SINGLE

    def fit_labels(self, examples: list[TextExample]) -> dict[str, Any]:
        self.problem_type = self.options.problem_type or self.detect_problem_type(examples)
        if self.problem_type not in PROBLEM_TYPES:
            raise AlbertError(f"--problem-type must be one of {', '.join(PROBLEM_TYPES)}")
        if self.problem_type == REGRESSION:
            self.id2label = {0: self.options.label_column}
        else:
            names = (
                {p for e in examples for p in label_parts(e.label)}
                if self.problem_type == MULTI
                else {label_name(e.label) for e in examples}
            )
            if len(names) < 2 and self.problem_type == SINGLE:
                raise AlbertError(
                    f"the training file has only one label ({', '.join(names)}); classification needs at least two"
                )
            self.id2label = dict(enumerate(_sort_labels(names)))
        return {"id2label": self.id2label, "problem_type": self.problem_type}

    def restore_labels(self, config: dict[str, Any]) -> None:
        self.id2label = {int(k): v for k, v in config["id2label"].items()}
        self.problem_type = config.get("problem_type") or (REGRESSION if len(self.id2label) == 1 else SINGLE)

    def check_labels(self, examples: list[TextExample], path: str | Path) -> None:
        label2id = {v: k for k, v in self.id2label.items()}
        for e in examples:
            if self.problem_type == REGRESSION:
                if not _is_number(e.label):
                    raise AlbertError(f"{path} line {e.line}: label {e.label!r} is not a number (regression)")
                continue
            for name in label_parts(e.label) if self.problem_type == MULTI else [label_name(e.label)]:
                if name not in label2id:
                    raise AlbertError(
                        f"{path} line {e.line}: label {name!r} does not occur in the training data "
                        f"(known labels: {', '.join(label2id)})"
                    )

    def encode_label(self, value: Any) -> Any:
        if self.problem_type == REGRESSION:
            return float(value)
        label2id = {v: k for k, v in self.id2label.items()}
        if self.problem_type == MULTI:
            hot = [0.0] * len(label2id)
            for name in label_parts(value):
                hot[label2id[name]] = 1.0
            return hot
        return label2id[label_name(value)]

    # -- features and metrics ---------------------------------------------------------
    def features(self, examples: list[TextExample], tokenizer: Any, training: bool) -> list[Feature]:
        pairs = [e.text_pair for e in examples] if self.options.text_pair_column else None
        encoded = tokenizer(
            [e.text for e in examples], pairs, truncation=True, max_length=self.options.max_seq_length
        )
        features = []
        for i, e in enumerate(examples):
            feature = {"input_ids": encoded["input_ids"][i], "token_type_ids": encoded["token_type_ids"][i]}
            if training:
                feature["labels"] = self.encode_label(e.label)
            features.append(feature)
        return features

    def metrics(
        self, examples: list[TextExample], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> dict[str, Any]:
        logits = np.stack([o["logits"] for o in outputs])
        if self.problem_type == REGRESSION:
            gold, pred = [float(e.label) for e in examples], logits[:, 0].tolist()
            return {
                "pearson": metrics.pearson(gold, pred),
                "spearman": metrics.spearman(gold, pred),
                "mse": float(np.mean((np.asarray(gold) - np.asarray(pred)) ** 2)),
            }
        gold_ids = [self.encode_label(e.label) for e in examples]
        if self.problem_type == MULTI:
            return metrics.multilabel_scores(np.asarray(gold_ids) > 0.5, sigmoid(logits) > 0.5)
        pred_ids = logits.argmax(-1).tolist()
        return {
            "accuracy": metrics.accuracy(gold_ids, pred_ids),
            "macro_f1": metrics.macro_f1(gold_ids, pred_ids),
            "mcc": metrics.matthews_corrcoef(gold_ids, pred_ids),
        }

    def primary_metric(self, metrics: dict[str, Any]) -> str:
        return {REGRESSION: "pearson", MULTI: "micro_f1"}.get(self.problem_type, "accuracy")

    def saved_options(self) -> dict[str, Any]:
        return {"problem_type": self.problem_type}
