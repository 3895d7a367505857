"""Metric functions against hand-computed cases (and scikit-learn/scipy semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from albert import metrics


def test_accuracy_and_macro_f1():
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "a"]
    assert metrics.accuracy(gold, pred) == pytest.approx(3 / 5)
    # per class F1: a: p=1/2 r=1/2 -> 1/2; b: p=2/3 r=1 -> 4/5; c: 0
    assert metrics.macro_f1(gold, pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    with pytest.raises(ValueError, match="length mismatch"):
        metrics.accuracy([1, 2], [1])


def test_mcc_binary_matches_the_formula():
    gold = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 0, 1, 0, 0, 1, 0, 1]
    tp, tn, fp, fn = 3, 3, 1, 1
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert metrics.matthews_corrcoef(gold, pred) == pytest.approx(expected)  # = 0.5
    assert metrics.matthews_corrcoef([0, 1, 0, 1], [1, 0, 1, 0]) == pytest.approx(-1.0)
    assert metrics.matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant prediction: defined as 0


def test_mcc_multiclass():
    # confusion [[2,1,0],[0,2,0],[1,0,1]]: c=5, s=7, t=(3,2,2), p=(3,3,1)
    gold = [0, 0, 0, 1, 1, 2, 2]
    pred = [0, 0, 1, 1, 1, 0, 2]
    numerator = 5 * 7 - (3 * 3 + 3 * 2 + 1 * 2)
    denominator = math.sqrt((49 - (9 + 9 + 1)) * (49 - (9 + 4 + 4)))
    assert metrics.matthews_corrcoef(gold, pred) == pytest.approx(numerator / denominator)


def test_pearson_and_spearman_with_ties():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert metrics.pearson(x, [2 * v + 1 for v in x]) == pytest.approx(1.0)
    assert metrics.pearson(x, [1, 1, 1, 1, 1]) == 0.0
    # ties get average ranks: [1, 2.5, 2.5, 4] and [1, 2, 3, 4]
    assert metrics.average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    a, b = [10, 20, 20, 30], [1, 2, 3, 4]
    ra, rb = np.array([1, 2.5, 2.5, 4]), np.array([1, 2, 3, 4])
    expected = np.corrcoef(ra, rb)[0, 1]  # = 0.9487
    assert metrics.spearman(a, b) == pytest.approx(expected)
    assert metrics.spearman([3, 1, 2], [30, 10, 20]) == pytest.approx(1.0)  # monotone, not linear
    assert metrics.spearman([1, 2, 3, 4], [1, 4, 9, 100]) == pytest.approx(1.0)


def test_multilabel_scores():
    gold = np.array([[1, 0], [1, 1], [0, 0]])
    pred = np.array([[1, 0], [1, 0], [0, 1]])
    scores = metrics.multilabel_scores(gold, pred)
    assert scores["subset_accuracy"] == pytest.approx(1 / 3)
    # micro: tp=2 fp=1 fn=1 -> 2/3; label 0: tp=2 -> 1.0; label 1: tp=0 fp=1 fn=1 -> 0
    assert scores["micro_f1"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------
# conlleval


def test_entities_follow_conlleval_rules():
    get = metrics.get_entities
    assert get(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    # an I- without a preceding B- starts an entity
    assert get(["O", "I-PER", "I-PER", "O"]) == [("PER", 1, 2)]
    assert get(["I-LOC"]) == [("LOC", 0, 0)]
    # adjacent B- entities of the same type are separate
    assert get(["B-PER", "B-PER", "I-PER"]) == [("PER", 0, 0), ("PER", 1, 2)]
    # a type change inside I- tags ends one entity and starts another
    assert get(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    # an entity at the end of the sentence is closed
    assert get(["O", "B-ORG", "I-ORG"]) == [("ORG", 1, 2)]
    # IOBES
    assert get(["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]) == [("PER", 0, 0), ("LOC", 1, 3), ("LOC", 4, 4)]
    # IOB1: plain I- tags, B- only between adjacent same-type entities
    assert get(["I-PER", "I-PER", "B-PER", "O"]) == [("PER", 0, 1), ("PER", 2, 2)]


def test_entity_scores_micro_and_per_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-PER"], ["B-ORG", "I-ORG"]]
    scores = metrics.entity_scores(gold, pred)
    # gold: PER(0,1) LOC(3,3) ORG(0,0); pred: PER(0,1) PER(3,3) ORG(0,1) -> 1 tp, 2 fp, 2 fn
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert scores["per_type"]["PER"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert scores["per_type"]["LOC"]["recall"] == 0.0 and scores["per_type"]["LOC"]["support"] == 1
    assert scores["per_type"]["ORG"]["f1"] == 0.0
    assert scores["token_accuracy"] == pytest.approx(4 / 6)
    # entities never cross sentence boundaries
    split = metrics.entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert split["f1"] == 1.0 and split["per_type"]["PER"]["support"] == 2


# ----------------------------------------------------------------------------------------
# SQuAD


def test_squad_normalisation():
    assert metrics.normalize_answer("The  Cat, sat!") == "cat sat"
    assert metrics.normalize_answer("an Apple a day") == "apple day"
    assert metrics.normalize_answer("  Theatre ") == "theatre"  # articles only as whole words


def test_squad_exact_and_f1():
    assert metrics.squad_exact("the Eiffel Tower", "Eiffel tower.") == 1.0
    # "in paris france" vs "paris": p=1, r=1/3 -> f1=0.5
    assert metrics.squad_f1("in Paris, France", "Paris") == pytest.approx(0.5)
    assert metrics.squad_f1("", "") == 1.0 and metrics.squad_f1("", "Paris") == 0.0
    scores = metrics.squad_scores(
        {"q1": "Paris", "q2": "", "q3": "London"},
        {"q1": ["in Paris, France", "Paris"], "q2": [], "q3": []},
    )
    assert scores["exact_match"] == pytest.approx(200 / 3)  # q1 (best gold) and q2 (correct no-answer)
    assert scores["f1"] == pytest.approx(200 / 3)
    assert scores["has_answer_total"] == 1 and scores["no_answer_total"] == 2
    assert scores["no_answer_exact_match"] == 50.0
    with pytest.raises(ValueError, match="no prediction"):
        metrics.squad_scores({}, {"q1": ["x"]})
