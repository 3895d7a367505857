"""`albert.pipeline` for every task, against direct model calls and transformers' pipeline; the
numpy post-processing on hand-made inputs; the ONNX runtime path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    classifier_dir,
    one_thread,
    pretraining_dir,
    tiny_config,
    tokenizer,
    tokenizer_dir,
)

import albert
from albert import postprocess
from albert.errors import AlbertError

TEXTS = [
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition.",
    "Hello!",
    "In the beginning God created the heaven and the earth.",
    "",
    "She was the youngest of the two daughters of a most affectionate, indulgent father; and had, in "
    "consequence of her sister's marriage, been mistress of his house from a very early period.",
]


def test_inference_modules_do_not_import_torch():
    code = (
        "import sys, albert, albert.predict, albert.pipelines, albert.postprocess, albert.metrics, albert.evaluate, "
        "albert.tasks; albert.pipeline; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pipeline_is_callable_from_the_package():
    assert callable(albert.pipeline)
    with pytest.raises(AlbertError, match="unknown pipeline task"):
        albert.pipeline("summarization", model="x")


# ----------------------------------------------------------------------------------------
# text classification


def test_text_classification_batched_equals_one_by_one(classifier_dir):
    classify = albert.pipeline("text-classification", model=classifier_dir, batch_size=2)
    batched = classify(TEXTS)
    assert [r["label"] for r in batched] == [classify(t)["label"] for t in TEXTS]
    np.testing.assert_allclose(
        [r["score"] for r in batched], [classify(t)["score"] for t in TEXTS], rtol=1e-5
    )
    ranked = classify(TEXTS[0], top_k=None)
    assert [r["label"] for r in ranked] != [] and sorted(r["label"] for r in ranked) == [
        "mixed",
        "neg",
        "pos",
    ]
    assert sum(r["score"] for r in ranked) == pytest.approx(1.0)
    assert ranked[0] == pytest.approx(batched[0]) and len(classify(TEXTS[0], top_k=2)) == 2
    assert classify([]) == []


def test_text_classification_matches_transformers_pipeline(classifier_dir):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.pipeline("text-classification", model=str(classifier_dir), device="cpu")
    expected = theirs(TEXTS, batch_size=2)
    ours = albert.pipeline("text-classification", model=classifier_dir)(TEXTS)
    assert [r["label"] for r in ours] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in expected], rtol=1e-4)


# ----------------------------------------------------------------------------------------
# fill-mask and feature extraction


def test_fill_mask_from_a_pretraining_checkpoint(pretraining_dir, tokenizer):
    import torch

    from albert.modeling import AlbertForMaskedLM

    fill = albert.pipeline("fill-mask", model=pretraining_dir)
    one, two = fill(["Emma was [MASK] happy.", "In the [MASK] God [MASK] the heaven."], top_k=3)
    assert len(one) == 3 and len(two) == 2 and all(len(c) == 3 for c in two)
    scores = [c["score"] for c in one]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    model = AlbertForMaskedLM.from_pretrained(pretraining_dir).eval()
    encoded = tokenizer("Emma was [MASK] happy.", return_tensors="pt")
    position = encoded["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    with torch.no_grad():
        probabilities = model(**encoded).logits[0, position].softmax(-1)
    assert one[0]["token"] == int(probabilities.argmax())
    assert one[0]["score"] == pytest.approx(float(probabilities.max()), rel=1e-4)
    assert one[0]["token_str"] == tokenizer.decode([one[0]["token"]])
    with pytest.raises(AlbertError, match=r"input 0 has no \[MASK\]"):
        fill("no mask here")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_feature_extraction_pools_only_real_tokens(pretraining_dir, tokenizer, pooling):
    import torch

    from albert.modeling import AlbertModel

    embed = albert.pipeline("feature-extraction", model=pretraining_dir, batch_size=3)
    vectors = embed(TEXTS, pooling=pooling)
    model = AlbertModel.from_pretrained(pretraining_dir).eval()
    for text, vector in zip(TEXTS, vectors, strict=True):
        with torch.no_grad():
            hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0]  # no padding at all
        expected = hidden.mean(0) if pooling == "mean" else hidden[0]
        assert vector.dtype == np.float32 and vector.shape == (32,)
        np.testing.assert_allclose(vector, expected.numpy(), atol=1e-5)


# ----------------------------------------------------------------------------------------
# post-processing on hand-made inputs


def test_classify_decodes_each_problem_type():
    id2label = {0: "a", 1: "b"}
    single = postprocess.classify(np.array([[0.0, np.log(3.0)]]), id2label, None, top_k=None)[0]
    assert single == [
        {"label": "b", "score": pytest.approx(0.75)},
        {"label": "a", "score": pytest.approx(0.25)},
    ]
    multi = postprocess.classify(np.array([[0.0, 2.0]]), id2label, "multi_label_classification", top_k=None)[
        0
    ]
    assert (
        multi[0] == {"label": "b", "score": pytest.approx(1 / (1 + np.exp(-2)))} and multi[1]["score"] == 0.5
    )
    assert postprocess.classify(np.array([[3.5]]), {0: "score"}, "regression") == [
        [{"label": "score", "score": 3.5}]
    ]


def test_group_entities_with_character_offsets():
    text = "Emma  Woodhouse visited Donwell Abbey"
    words = postprocess.split_words(text)
    assert words[1] == ("Woodhouse", 6, 15)
    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
    chosen = [1, 2, 0, 4, 4]  # an I- without B- starts an entity (conlleval)
    probabilities = np.full((5, 5), 0.05)
    probabilities[np.arange(5), chosen] = [0.9, 0.7, 0.8, 0.6, 0.4]
    seen = np.array([True] * 5)
    entities = postprocess.group_entities(text, words, probabilities, seen, id2label)
    assert entities == [
        {
            "entity_group": "PER",
            "score": pytest.approx(0.8),
            "word": "Emma  Woodhouse",
            "start": 0,
            "end": 15,
        },
        {"entity_group": "LOC", "score": pytest.approx(0.5), "word": "Donwell Abbey", "start": 24, "end": 37},
    ]
    seen[4] = False  # a word cut off by truncation is "O"
    assert postprocess.group_entities(text, words, probabilities, seen, id2label)[1]["word"] == "Donwell"
    assert postprocess.split_words("张三 住", char_level=True) == [("张", 0, 1), ("三", 1, 2), ("住", 3, 4)]


def test_first_subword_takes_each_words_first_piece():
    values = np.arange(6)[:, None].astype(float)
    rows, seen = postprocess.first_subword(values, [None, 0, 0, 1, 2, None], 4)
    assert rows[:, 0].tolist() == [1, 3, 4, 0] and seen.tolist() == [True, True, True, False]


def test_best_answer_spans_windows_and_null_threshold():
    context = "abc def ghi"
    offsets = [None, None, (0, 3), (4, 7), (8, 11), None]  # [CLS] q ... [SEP]
    start = np.array([1.0, 0, 5.0, 1.0, 0.0, 0])
    end = np.array([1.0, 0, 0.0, 6.0, 1.0, 0])
    answer = postprocess.best_answer([(start, end, offsets)], context)
    assert answer["answer"] == "abc def" and (answer["start"], answer["end"]) == (0, 7)
    assert 0 < answer["score"] < 1
    # a second window with a better span wins
    start2, end2 = np.array([0.0, 0, 0, 0, 9.0, 0]), np.array([0.0, 0, 0, 0, 9.0, 0])
    assert (
        postprocess.best_answer([(start, end, offsets), (start2, end2, offsets)], context)["answer"] == "ghi"
    )
    # max_answer_length bounds the span; ends before starts are never chosen
    assert postprocess.best_answer([(start, end, offsets)], context, max_answer_length=1)["answer"] in (
        "abc",
        "def",
    )
    # SQuAD v2: the null score (12) beats the best span (11) -> no answer, unless the threshold says otherwise
    null_start, null_end = start.copy(), end.copy()
    null_start[0] = null_end[0] = 6.0
    windows = [(null_start, null_end, offsets)]
    assert postprocess.best_answer(windows, context, allow_null=False)["answer"] == "abc def"
    assert postprocess.best_answer(windows, context, allow_null=True)["answer"] == ""
    assert (
        postprocess.best_answer(windows, context, allow_null=True, null_score_diff_threshold=2.0)["answer"]
        == "abc def"
    )


def test_pool_mean_ignores_padding():
    hidden = np.array([[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]])
    assert postprocess.pool(hidden, np.array([1, 1, 0])).tolist() == [2.0, 2.0]
    assert postprocess.pool(hidden, np.array([1, 1, 0]), "cls").tolist() == [1.0, 1.0]


# ----------------------------------------------------------------------------------------
# ONNX runtime


def test_onnx_runtime_gives_the_torch_results(classifier_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from albert.export import export_model_dir

    onnx_file = export_model_dir(classifier_dir, tmp_path / "exported")
    torch_results = albert.pipeline("text-classification", model=classifier_dir)(TEXTS)
    onnx_results = albert.pipeline("text-classification", model=onnx_file.parent, runtime="onnx")(TEXTS)
    assert [r["label"] for r in onnx_results] == [r["label"] for r in torch_results]
    np.testing.assert_allclose(
        [r["score"] for r in onnx_results], [r["score"] for r in torch_results], rtol=1e-4
    )
    from albert.cli import main

    assert (
        main(
            [
                "predict",
                "--task",
                "text-classification",
                "--runtime",
                "onnx",
                "--model",
                str(onnx_file),
                TEXTS[0],
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["label"] == torch_results[0]["label"]
    code = (
        "import sys, albert; "
        f"r = albert.pipeline('text-classification', model={str(onnx_file)!r}, runtime='onnx')(['hello']); "
        "assert 'torch' not in sys.modules and r[0]['label']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
