"""Extractive question answering: SQuAD v1.1 / v2.0 JSON -> AlbertForQuestionAnswering.

A context longer than one window is cut into overlapping windows, each ``[CLS] question [SEP]
context-window [SEP]``; consecutive windows start `doc_stride` tokens apart (the original BERT /
ALBERT meaning of doc_stride, capped at the window length so no token is skipped). The question
keeps at most `max_query_length` tokens. A training window that does not contain the whole
answer (and every window of an unanswerable question) points at [CLS]. At prediction time
the n-best spans of all windows compete and map back to character offsets in the context; for
SQuAD v2 the null ([CLS]) score wins if it beats the best span by `null_score_diff_threshold`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albert import metrics
from albert.errors import AlbertError
from albert.postprocess import best_answer
from albert.tasks.common import Feature, Task, read_text

logger = logging.getLogger("albert")
Offsets = list[tuple[int, int] | None]


@dataclass
class QAExample:
    qid: str
    question: str
    context: str
    answers: list[tuple[str, int]]  # (text, character start); empty if unanswerable
    impossible: bool


def _answer_aligned(context: str, text: str, start: int) -> bool:
    return context[start : start + len(text)] == text


class QuestionAnsweringTask(Task):
    name = "question-answering"
    model_class = "AlbertForQuestionAnswering"
    sequence_outputs = ("start_logits", "end_logits")

    def read(self, path: str | Path) -> list[QAExample]:
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise AlbertError(f"{path} is not valid JSON ({e}); expected a SQuAD-format file") from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise AlbertError(f"{path} is not a SQuAD file: expected {{'data': [{{'paragraphs': [...]}}]}}")
        examples = []
        for article in data["data"]:
            for paragraph in article.get("paragraphs", []):
                context = paragraph.get("context")
                if not isinstance(context, str):
                    raise AlbertError(f"{path}: a paragraph has no 'context' string")
                for qa in paragraph.get("qas", []):
                    examples.append(self._example(path, context, qa))
        if not examples:
            raise AlbertError(f"{path} holds no questions")
        return examples

    @staticmethod
    def _example(path: str | Path, context: str, qa: dict[str, Any]) -> QAExample:
        if "question" not in qa or "id" not in qa:
            raise AlbertError(
                f"{path}: every question needs 'id' and 'question' (found keys: {', '.join(qa)})"
            )
        answers = [(a["text"], int(a["answer_start"])) for a in qa.get("answers", [])]
        impossible = bool(qa.get("is_impossible", False)) or not answers
        return QAExample(str(qa["id"]), qa["question"], context, [] if impossible else answers, impossible)

    def fit_labels(self, examples: list[QAExample]) -> dict[str, Any]:
        if self.options.version_2_with_negative is None:
            self.options.version_2_with_negative = any(e.impossible for e in examples)
        return {}

    def restore_labels(self, config: dict[str, Any]) -> None:
        if self.options.version_2_with_negative is None:
            self.options.version_2_with_negative = False

    # -- features ---------------------------------------------------------------------
    def windows(self, question_ids: list[int], context_length: int) -> tuple[int, list[tuple[int, int]]]:
        """The question length kept and the (start, end) context-token ranges of the windows."""
        o = self.options
        question_ids = question_ids[: o.max_query_length]
        room = o.max_seq_length - len(question_ids) - 3
        if room < 1:
            raise AlbertError(
                f"--max-seq-length {o.max_seq_length} leaves no room for the context after a "
                f"{len(question_ids)}-token question; raise it or lower --max-query-length"
            )
        step = max(1, min(o.doc_stride, room))
        spans, start = [], 0
        while True:
            spans.append((start, min(start + room, context_length)))
            if start + room >= context_length:
                return len(question_ids), spans
            start += step

    def features(self, examples: list[QAExample], tokenizer: Any, training: bool) -> list[Feature]:
        contexts = sorted({e.context for e in examples})
        encoded_contexts = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True)
        by_context = {
            c: (ids, offsets)
            for c, ids, offsets in zip(
                contexts, encoded_contexts["input_ids"], encoded_contexts["offset_mapping"], strict=True
            )
        }
        questions = tokenizer([e.question for e in examples], add_special_tokens=False)["input_ids"]
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        features, misaligned = [], 0
        for index, (example, question) in enumerate(zip(examples, questions, strict=True)):
            if training and example.answers and not _answer_aligned(example.context, *example.answers[0]):
                misaligned += 1
                continue
            context_ids, context_offsets = by_context[example.context]
            kept, spans = self.windows(question, len(context_ids))
            prefix = [cls, *question[:kept], sep]
            for start, end in spans:
                offsets: Offsets = (
                    [None] * len(prefix) + [tuple(o) for o in context_offsets[start:end]] + [None]
                )
                feature = {
                    "input_ids": prefix + context_ids[start:end] + [sep],
                    "token_type_ids": [0] * len(prefix) + [1] * (end - start + 1),
                    "example": index,
                    "offsets": offsets,
                }
                if training:
                    feature["start_positions"], feature["end_positions"] = self._positions(example, offsets)
                features.append(feature)
        if misaligned:
            logger.warning(
                "skipped %d training question(s) whose answer_start does not match the context", misaligned
            )
        return features

    @staticmethod
    def _positions(example: QAExample, offsets: Offsets) -> tuple[int, int]:
        """Token start/end of the first gold answer in this window, or (0, 0) = [CLS]."""
        if not example.answers:
            return 0, 0
        text, start_char = example.answers[0]
        end_char = start_char + len(text)
        inside = [i for i, o in enumerate(offsets) if o is not None and o[1] > start_char and o[0] < end_char]
        context = [o for o in offsets if o is not None]
        if not inside or not context or context[0][0] > start_char or context[-1][1] < end_char:
            return 0, 0
        return inside[0], inside[-1]

    # -- decoding and metrics ---------------------------------------------------------
    def answers(
        self, examples: list[QAExample], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> list[dict[str, Any]]:
        """The predicted answer of each example (see `albert.postprocess.best_answer`)."""
        windows: list[list[Any]] = [[] for _ in examples]
        for feature, output in zip(features, outputs, strict=True):
            windows[feature["example"]].append(
                (output["start_logits"], output["end_logits"], feature["offsets"])
            )
        o = self.options
        return [
            best_answer(
                w,
                e.context,
                o.n_best,
                o.max_answer_length,
                bool(o.version_2_with_negative),
                o.null_score_diff_threshold,
            )
            for e, w in zip(examples, windows, strict=True)
        ]

    def metrics(
        self, examples: list[QAExample], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> dict[str, Any]:
        predicted = self.answers(examples, features, outputs)
        return metrics.squad_scores(
            {e.qid: p["answer"] for e, p in zip(examples, predicted, strict=True)},
            {e.qid: [text for text, _ in e.answers] for e in examples},
        )

    def primary_metric(self, metrics: dict[str, Any]) -> str:
        return "f1"

    def saved_options(self) -> dict[str, Any]:
        return {"version_2_with_negative": self.options.version_2_with_negative}
