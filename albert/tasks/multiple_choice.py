"""Multiple choice: RACE- or SWAG-style JSON lines -> AlbertForMultipleChoice.

Accepted fields (per line):
  RACE: ``article``, ``question``, ``options`` (list), ``answer`` (a letter "A".. or an index);
  SWAG: ``context`` or ``sent1``, optional ``sent2`` / ``question``, ``endings`` or ``options`` (list)
        or ``ending0``..``endingN``, ``label`` (index).
Each option becomes the pair (context, question + option) - for a cloze question (RACE's "_")
the option fills the blank, as ALBERT's RACE recipe does. The model scores every pair's pooled
[CLS] and a softmax over the options picks the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albert import metrics
from albert.errors import AlbertError
from albert.tasks.common import Feature, Task, read_jsonl

_ENDING = re.compile(r"ending(\d+)$")


@dataclass
class ChoiceExample:
    context: str
    question: str
    options: list[str]
    label: int | None
    line: int


def _options(row: dict[str, Any]) -> list[str] | None:
    for key in ("options", "endings"):
        if isinstance(row.get(key), list):
            return [str(o) for o in row[key]]
    numbered = sorted((int(m.group(1)), key) for key in row if (m := _ENDING.match(key)))
    return [str(row[key]) for _, key in numbered] or None


def _label(row: dict[str, Any], count: int, path: str | Path, line: int) -> int | None:
    value = row.get("answer", row.get("label"))
    if value is None:
        return None
    if isinstance(value, str) and len(value) == 1 and value.isalpha():
        index = ord(value.upper()) - ord("A")
    else:
        try:
            index = int(value)
        except (TypeError, ValueError):
            raise AlbertError(
                f"{path} line {line}: answer {value!r} is neither a letter nor an index"
            ) from None
    if not 0 <= index < count:
        raise AlbertError(f"{path} line {line}: answer {value!r} is out of range for {count} options")
    return index


def pair_text(question: str, option: str) -> str:
    """The second segment for one option: the cloze blank filled in, or question + option."""
    if "_" in question:
        return question.replace("_", option, 1)
    return f"{question} {option}".strip()


class MultipleChoiceTask(Task):
    name = "multiple-choice"
    model_class = "AlbertForMultipleChoice"

    def read(self, path: str | Path) -> list[ChoiceExample]:
        examples = []
        for line, row in read_jsonl(path):
            context = row.get("article", row.get("context", row.get("sent1")))
            options = _options(row)
            if context is None or options is None:
                raise AlbertError(
                    f"{path} line {line}: need a context ('article', 'context' or 'sent1') and options "
                    f"('options', 'endings' or 'ending0'..); fields found: {', '.join(row)}"
                )
            question = str(row.get("question", row.get("sent2", "")) or "")
            label = _label(row, len(options), path, line)
            examples.append(ChoiceExample(str(context), question, options, label, line))
        counts = {len(e.options) for e in examples}
        if len(counts) > 1:
            raise AlbertError(
                f"{path}: every example needs the same number of options (found {sorted(counts)}); pad or split the file"
            )
        return examples

    def check_labels(self, examples: list[ChoiceExample], path: str | Path) -> None:
        unlabelled = next((e for e in examples if e.label is None), None)
        if unlabelled is not None:
            raise AlbertError(f"{path} line {unlabelled.line}: no 'answer' or 'label' field")

    def fit_labels(self, examples: list[ChoiceExample]) -> dict[str, Any]:
        return {}

    def features(self, examples: list[ChoiceExample], tokenizer: Any, training: bool) -> list[Feature]:
        firsts = [e.context for e in examples for _ in e.options]
        seconds = [pair_text(e.question, option) for e in examples for option in e.options]
        encoded = tokenizer(
            firsts, seconds, truncation="longest_first", max_length=self.options.max_seq_length
        )
        features, row = [], 0
        for e in examples:
            count = len(e.options)
            feature = {
                "input_ids": encoded["input_ids"][row : row + count],
                "token_type_ids": encoded["token_type_ids"][row : row + count],
            }
            if training:
                feature["labels"] = e.label
            features.append(feature)
            row += count
        return features

    def metrics(
        self, examples: list[ChoiceExample], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> dict[str, Any]:
        predicted = [int(o["logits"].argmax()) for o in outputs]
        return {"accuracy": metrics.accuracy([e.label for e in examples], predicted)}

    def primary_metric(self, metrics: dict[str, Any]) -> str:
        return "accuracy"
