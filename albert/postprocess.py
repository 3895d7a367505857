"""Turning model outputs into answers, in plain numpy so the PyTorch and ONNX runtimes share it.

* `classify`: softmax (single-label), sigmoid (multi-label) or the raw value (regression) -> labels.
* `split_words`, `first_subword`, `group_entities`: token-classification logits -> entities with
  character offsets into the input text. A word's label is its first sub-word's prediction
  (the piece the model was trained on); consecutive words are merged into one entity with
  conlleval's chunk rules, like transformers' `aggregation_strategy="simple"` over words.
* `qa_candidates`, `best_answer`: n-best start/end span search over every window of a document,
  mapped back to character offsets, with SQuAD v2's null-score threshold.
* `top_tokens`, `pool`: fill-mask and sentence-embedding helpers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from albert.metrics import get_entities

# ----------------------------------------------------------------------------------------
# scores


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = np.asarray(x, dtype=np.float64) - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def classify(
    logits: np.ndarray, id2label: dict[int, str], problem_type: str | None, top_k: int | None = 1
) -> list[list[dict[str, Any]]]:
    """For each row of `logits`, its labels sorted by score (the best `top_k`; None for all)."""
    logits = np.asarray(logits)
    if problem_type == "regression":
        return [[{"label": id2label[0], "score": float(row[0])}] for row in logits]
    scores = sigmoid(logits) if problem_type == "multi_label_classification" else softmax(logits)
    results = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[: top_k if top_k else None]
        results.append([{"label": id2label[int(i)], "score": float(row[i])} for i in order])
    return results


# ----------------------------------------------------------------------------------------
# token classification

_WORD = re.compile(r"\S+")


def is_cjk(char: str) -> bool:
    return "CJK" in unicodedata.name(char, "") or "\u3000" <= char <= "\u303f" or "\uff00" <= char <= "\uffef"


def split_words(text: str, char_level: bool = False) -> list[tuple[str, int, int]]:
    """(word, start, end) for the whitespace-separated words of `text`; with `char_level` every
    non-space character is a word (how character-level Chinese NER data is tokenised)."""
    if char_level:
        return [(ch, i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
    return [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def first_subword(
    values: np.ndarray, word_ids: list[int | None], num_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `values` (tokens x ...) at each word's first sub-word; and which words were seen
    (words cut off by truncation have no token)."""
    return merge_windows([(values, word_ids)], num_words)


def merge_windows(
    windows: list[tuple[np.ndarray, list[int | None]]], num_words: int
) -> tuple[np.ndarray, np.ndarray]:
    """`first_subword` over overlapping windows of one text: each word's row comes from the window
    where its first sub-word sits furthest from an edge (the most context on both sides)."""
    rows: np.ndarray | None = None
    margin = np.full(num_words, -1)
    for values, word_ids in windows:
        if rows is None:
            rows = np.zeros((num_words, *values.shape[1:]), dtype=values.dtype)
        seen: set[int] = set()
        for position, word in enumerate(word_ids):
            if word is None or word >= num_words or word in seen:
                continue
            seen.add(word)
            distance = min(position, len(word_ids) - 1 - position)
            if distance > margin[word]:
                rows[word], margin[word] = values[position], distance
    if rows is None:
        return np.zeros((num_words, 1)), np.zeros(num_words, dtype=bool)
    return rows, margin >= 0


def group_entities(
    text: str,
    words: list[tuple[str, int, int]],
    probabilities: np.ndarray,
    seen: np.ndarray,
    id2label: dict[int, str],
) -> list[dict[str, Any]]:
    """Entities from per-word label probabilities: `entity_group`, `score` (mean over its words),
    `word` (the text span) and character offsets `start`/`end` into `text`."""
    label_ids = probabilities.argmax(-1)
    tags = [id2label[int(i)] if ok else "O" for i, ok in zip(label_ids, seen, strict=True)]
    entities = []
    for entity_type, first, last in get_entities(tags):
        start, end = words[first][1], words[last][2]
        scores = probabilities[np.arange(first, last + 1), label_ids[first : last + 1]]
        entities.append(
            {
                "entity_group": entity_type,
                "score": float(scores.mean()),
                "word": text[start:end],
                "start": start,
                "end": end,
            }
        )
    return entities


# ----------------------------------------------------------------------------------------
# extractive question answering


@dataclass
class Span:
    score: float  # start logit + end logit (what the n-best list is ranked by)
    probability: float  # p(start) * p(end) within its window
    start: int  # character offsets into the context
    end: int


def qa_candidates(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    offsets: list[tuple[int, int] | None],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> tuple[list[Span], float, float]:
    """The valid spans among the top `n_best` starts x ends of one window, plus the window's null
    score (the [CLS] start + end logits) and its probability.

    `offsets[i]` is token i's character span in the context, or None if token i is not context
    (question, special tokens, padding)."""
    context = np.array([o is not None for o in offsets] + [False] * (len(start_logits) - len(offsets)))
    allowed = context.copy()
    allowed[0] = True  # [CLS] = no answer
    start_log = log_softmax(np.where(allowed, start_logits, -np.inf))
    end_log = log_softmax(np.where(allowed, end_logits, -np.inf))
    null_score = float(start_logits[0] + end_logits[0])
    null_probability = float(np.exp(start_log[0] + end_log[0]))
    starts = [i for i in np.argsort(-start_logits, kind="stable") if context[i]][:n_best]
    ends = [i for i in np.argsort(-end_logits, kind="stable") if context[i]][:n_best]
    spans = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_length:
                continue
            spans.append(
                Span(
                    float(start_logits[s] + end_logits[e]),
                    float(np.exp(start_log[s] + end_log[e])),
                    offsets[s][0],  # type: ignore[index]
                    offsets[e][1],  # type: ignore[index]
                )
            )
    return spans, null_score, null_probability


def best_answer(
    windows: list[tuple[np.ndarray, np.ndarray, list[tuple[int, int] | None]]],
    context: str,
    n_best: int = 20,
    max_answer_length: int = 30,
    allow_null: bool = False,
    null_score_diff_threshold: float = 0.0,
) -> dict[str, Any]:
    """The best answer over all windows of one question: `answer`, `score`, `start`, `end`.

    With `allow_null` (SQuAD v2), the answer is "" when the smallest null score beats the best
    span's score by more than `null_score_diff_threshold` (the original ALBERT/BERT rule)."""
    spans: list[Span] = []
    null = (float("inf"), 0.0)
    for start_logits, end_logits, offsets in windows:
        candidates, null_score, null_probability = qa_candidates(
            start_logits, end_logits, offsets, n_best, max_answer_length
        )
        spans.extend(candidates)
        null = min(null, (null_score, null_probability), key=lambda pair: pair[0])
    best = max(spans, key=lambda span: span.score, default=None)
    if best is None or (allow_null and null[0] - best.score > null_score_diff_threshold):
        return {"answer": "", "score": null[1], "start": 0, "end": 0}
    return {
        "answer": context[best.start : best.end],
        "score": best.probability,
        "start": best.start,
        "end": best.end,
    }


# ----------------------------------------------------------------------------------------
# fill-mask and embeddings


def top_tokens(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and probabilities of the `k` most likely vocabulary entries of one position."""
    probabilities = softmax(logits)
    order = np.argsort(-probabilities, kind="stable")[:k]
    return order, probabilities[order]


def pool(hidden: np.ndarray, attention_mask: np.ndarray, mode: str = "mean") -> np.ndarray:
    """A sentence embedding from (tokens x hidden) states: the [CLS] vector or the masked mean."""
    if mode == "cls":
        return np.asarray(hidden[0], dtype=np.float32)
    if mode != "mean":
        raise ValueError(f"pooling must be 'mean' or 'cls', not {mode!r}")
    mask = np.asarray(attention_mask, dtype=np.float64)[:, None]
    pooled = (np.asarray(hidden, dtype=np.float64) * mask).sum(0) / max(mask.sum(), 1.0)
    return pooled.astype(np.float32)
