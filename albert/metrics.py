"""Evaluation metrics for the fine-tuning tasks, in plain numpy (no torch: the ONNX path uses them too).

Every function takes plain Python/numpy inputs and returns floats (or a dict of floats):

* classification: `accuracy`, `macro_f1`, `matthews_corrcoef` (multi-class MCC, as scikit-learn);
* regression: `pearson`, `spearman` (ties get their average rank);
* NER: `entity_scores`, with conlleval's chunk rules (an I- tag without a preceding B- starts an
  entity, adjacent B- entities are separate, IOB1/IOB2/IOBES all understood);
* extractive QA: `squad_scores` with the official SQuAD v1.1/v2.0 normalisation (lower case,
  punctuation, articles and extra whitespace removed; an empty prediction is "no answer");
* multiple choice: `accuracy`.

Degenerate inputs give 0.0 rather than NaN (a constant prediction has no correlation to report),
so metric dicts always serialise as valid JSON and early stopping never compares NaNs.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------------------
# classification


def accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    _check_lengths(y_true, y_pred)
    if not len(y_true):
        return 0.0
    return float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)]))


def _f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def macro_f1(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Unweighted mean of per-class F1 over every class seen in either sequence."""
    _check_lengths(y_true, y_pred)
    classes = sorted(set(y_true) | set(y_pred), key=str)
    if not classes:
        return 0.0
    scores = []
    for c in classes:
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred, strict=True))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred, strict=True))
        scores.append(_f1(tp, fp, fn)[2])
    return float(np.mean(scores))


def matthews_corrcoef(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Multi-class MCC (Gorodkin's R_K), identical to the binary formula for two classes."""
    _check_lengths(y_true, y_pred)
    classes = sorted(set(y_true) | set(y_pred), key=str)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[index[t], index[p]] += 1
    true_counts, pred_counts = confusion.sum(1), confusion.sum(0)
    correct, total = np.trace(confusion), confusion.sum()
    numerator = correct * total - pred_counts @ true_counts
    denominator = np.sqrt((total**2 - pred_counts @ pred_counts) * (total**2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


def multilabel_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Subset accuracy plus micro/macro F1 over (examples x labels) 0/1 matrices."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(0)
    fp = (~y_true & y_pred).sum(0)
    fn = (y_true & ~y_pred).sum(0)
    per_label = [_f1(*counts)[2] for counts in zip(tp, fp, fn, strict=True)]
    return {
        "subset_accuracy": float(np.mean(np.all(y_true == y_pred, axis=1))) if len(y_true) else 0.0,
        "micro_f1": _f1(tp.sum(), fp.sum(), fn.sum())[2],
        "macro_f1": float(np.mean(per_label)) if per_label else 0.0,
    }


# ----------------------------------------------------------------------------------------
# regression


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    _check_lengths(x, y)
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / denominator) if denominator else 0.0


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span (as scipy.stats.rankdata)."""
    array = np.asarray(values, dtype=np.float64)
    order = np.argsort(array, kind="mergesort")
    ranks = np.empty(len(array), dtype=np.float64)
    sorted_values = array[order]
    start = 0
    while start < len(array):
        stop = start
        while stop + 1 < len(array) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        ranks[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks."""
    _check_lengths(x, y)
    return pearson(average_ranks(x), average_ranks(y))


# ----------------------------------------------------------------------------------------
# NER: conlleval chunks


def _split_tag(tag: str) -> tuple[str, str]:
    """('B', 'PER') from 'B-PER'; ('O', '') for 'O'; a bare type ('PER') counts as I-PER (IOB1 files)."""
    if tag in ("O", ""):
        return "O", ""
    if len(tag) >= 2 and tag[1] in "-_" and tag[0] in "BIESLU":
        prefix = {"L": "E", "U": "S"}.get(tag[0], tag[0])  # BILOU spelled as IOBES
        return prefix, tag[2:]
    return "I", tag


def _chunk_ends(prev: str, prev_type: str, tag: str, tag_type: str) -> bool:
    """conlleval's endOfChunk: does a chunk end between the previous token and this one?"""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev != "O" and prev_type != tag_type


def _chunk_starts(prev: str, prev_type: str, tag: str, tag_type: str) -> bool:
    """conlleval's startOfChunk: does a chunk start at this token?"""
    if tag in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag != "O" and prev_type != tag_type


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) token spans of the chunks in one sentence, conlleval's way."""
    entities = []
    prev, prev_type, start = "O", "", -1
    for i, tag in enumerate([*tags, "O"]):  # the sentinel closes an entity at sentence end
        prefix, tag_type = _split_tag(tag)
        if start >= 0 and _chunk_ends(prev, prev_type, prefix, tag_type):
            entities.append((prev_type, start, i - 1))
            start = -1
        if _chunk_starts(prev, prev_type, prefix, tag_type):
            start = i
        prev, prev_type = prefix, tag_type
    return entities


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro precision/recall/F1 over exact entity matches, per type too, plus token accuracy."""
    _check_lengths(true_tags, pred_tags)
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # tp, fp, fn
    correct_tokens = total_tokens = 0
    for sentence, (gold, guess) in enumerate(zip(true_tags, pred_tags, strict=True)):
        if len(gold) != len(guess):
            raise ValueError(f"sentence {sentence}: {len(gold)} gold tags but {len(guess)} predicted")
        correct_tokens += sum(g == p for g, p in zip(gold, guess, strict=True))
        total_tokens += len(gold)
        gold_set, guess_set = set(get_entities(gold)), set(get_entities(guess))
        for slot, entities in enumerate((gold_set & guess_set, guess_set - gold_set, gold_set - guess_set)):
            for entity in entities:
                counts[entity[0]][slot] += 1
    per_type = {}
    for entity_type in sorted(counts):
        precision, recall, f1 = _f1(*counts[entity_type])
        support = counts[entity_type][0] + counts[entity_type][2]
        per_type[entity_type] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    tp, fp, fn = (sum(c[i] for c in counts.values()) for i in range(3))
    precision, recall, f1 = _f1(tp, fp, fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "token_accuracy": correct_tokens / total_tokens if total_tokens else 0.0,
        "per_type": per_type,
    }


# ----------------------------------------------------------------------------------------
# SQuAD


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_exact(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def squad_f1(gold: str, prediction: str) -> float:
    """Bag-of-tokens F1; when either side is empty ("no answer") it is 1 only if both are."""
    gold_tokens, pred_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: dict[str, Iterable[str]]) -> dict[str, float]:
    """Exact match and F1 in percent (as the official script), best over each question's gold answers.

    A question with no gold answers (SQuAD v2 "impossible") is scored against "": only an empty
    prediction gets credit. With both kinds present, `has_answer_*` / `no_answer_*` break it down.
    """
    missing = [qid for qid in references if qid not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[0]!r}")
    exact, f1, has_answer = [], [], []
    for qid, answers in references.items():
        golds = [a for a in answers if normalize_answer(a)] or [""]
        exact.append(max(squad_exact(g, predictions[qid]) for g in golds))
        f1.append(max(squad_f1(g, predictions[qid]) for g in golds))
        has_answer.append(golds != [""])
    result = {
        "exact_match": 100.0 * float(np.mean(exact)) if exact else 0.0,
        "f1": 100.0 * float(np.mean(f1)) if f1 else 0.0,
        "total": len(exact),
    }
    mask = np.asarray(has_answer, dtype=bool)
    if mask.any() and (~mask).any():
        for name, selected in (("has_answer", mask), ("no_answer", ~mask)):
            result[f"{name}_exact_match"] = 100.0 * float(np.mean(np.asarray(exact)[selected]))
            result[f"{name}_f1"] = 100.0 * float(np.mean(np.asarray(f1)[selected]))
            result[f"{name}_total"] = int(selected.sum())
    return result


def _check_lengths(a: Sequence[Any], b: Sequence[Any]) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} references vs {len(b)} predictions")
