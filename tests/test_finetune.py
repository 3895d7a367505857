"""End to end, per task: fine-tune a tiny model -> the output directory loads in transformers ->
`albert evaluate` prints JSON metrics -> `albert predict` / the pipeline answer in input order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    CHINESE_NER,
    CONTEXT,
    NER_SENTENCES,
    RACE_ROWS,
    SWAG_ROWS,
    classifier_dir,
    cli_json,
    cli_json_lines,
    finetune_tiny,
    one_thread,
    sentiment_rows,
    squad_file,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_conll,
    write_csv,
    write_jsonl,
)

from albert.errors import AlbertError


def assert_transformers_loads(
    directory: Path, class_name: str, batch: dict[str, Any], output: str = "logits"
) -> None:
    """transformers loads the directory and computes what we compute."""
    transformers = pytest.importorskip("transformers")
    import torch

    from albert.modeling import MODEL_CLASSES

    theirs = getattr(transformers, class_name).from_pretrained(directory).eval()
    ours = MODEL_CLASSES[class_name].from_pretrained(directory).eval()
    tensors = {k: torch.as_tensor(v) for k, v in batch.items()}
    with torch.no_grad():
        expected, got = theirs(**tensors)[output], ours(**tensors)[output]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert theirs.config.id2label == {int(k): v for k, v in ours.config.id2label.items()}


def read_metrics(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------
# text classification


def test_text_classification_end_to_end(tmp_path, tokenizer_dir, tokenizer, tiny_config, capsys):
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(48, 0))
    dev = write_csv(tmp_path / "dev.csv", ["label", "text"], sentiment_rows(16, 1))
    out = tmp_path / "out"
    result = finetune_tiny("text-classification", train, dev, tiny_config, tokenizer_dir, out, max_steps=10)
    assert result["metric"] == "accuracy" and result["steps"] == 10  # 6 steps per epoch, capped at 10
    files = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "spiece.model",
        "finetune_args.json",
        "metrics.jsonl",
    } <= files
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}
    args = json.loads((out / "finetune_args.json").read_text())
    assert args["task"] == "text-classification" and args["best"]["epoch"] == result["epoch"]
    records = read_metrics(out)
    assert [r["step"] for r in records if "loss" in r] == [2, 4, 6, 8, 10]
    assert [r["epoch"] for r in records if r.get("eval")] == [1, 2]

    batch = tokenizer(["good film", "a dull and boring story"], padding=True, return_tensors="np")
    assert_transformers_loads(out, "AlbertForSequenceClassification", dict(batch))

    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(dev))
    assert metrics["task"] == "text-classification" and metrics["examples"] == 16
    assert metrics["accuracy"] == pytest.approx(result["dev"]["accuracy"])
    assert set(metrics) >= {"accuracy", "macro_f1", "mcc"}

    texts = ["good", "a very very long boring dull story it was and the film", "happy film"]
    lines = cli_json_lines(
        capsys, "predict", "--task", "text-classification", "--model", str(out), "--precision", "fp32", *texts
    )
    import albert

    classify = albert.pipeline("text-classification", model=out, batch_size=2)
    one_by_one = [classify(t) for t in texts]
    assert [line["label"] for line in lines] == [r["label"] for r in one_by_one]
    np.testing.assert_allclose([line["score"] for line in lines], [r["score"] for r in one_by_one], rtol=1e-5)
    assert albert.pipeline is not None and callable(albert.pipeline)  # also after the submodule import


def test_regression_with_text_pairs_from_tsv(tmp_path, tokenizer_dir, tiny_config, capsys):
    rows = [(f"{0.25 * (i % 5):.2f}", "good " * (i % 5) + "film", "the story") for i in range(30)]
    train = write_csv(tmp_path / "train.tsv", ["score", "first", "second"], rows, delimiter="\t")
    out = tmp_path / "out"
    options = {"text_column": "first", "text_pair_column": "second", "label_column": "score"}
    result = finetune_tiny(
        "text-classification", train, train, tiny_config, tokenizer_dir, out, options=options
    )
    assert result["metric"] == "pearson"
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(train))
    assert set(metrics) >= {"pearson", "spearman", "mse"}
    import albert

    scored = albert.pipeline("text-classification", model=out)(
        {"text": "good good film", "text_pair": "the story"}
    )
    assert scored["label"] == "score" and isinstance(scored["score"], float)


def test_multi_label_from_jsonl(tmp_path, tokenizer_dir, tiny_config, capsys):
    rows = [
        {"text": f"{w} film", "label": labels}
        for w, labels in [("good", ["pos"]), ("bad", ["neg"]), ("good bad", ["pos", "neg"]), ("film", [])]
    ] * 6
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "out"
    result = finetune_tiny("text-classification", train, train, tiny_config, tokenizer_dir, out)
    assert result["metric"] == "micro_f1"
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(train))
    assert set(metrics) >= {"subset_accuracy", "micro_f1", "macro_f1"}
    lines = cli_json_lines(
        capsys, "predict", "--task", "text-classification", "--model", str(out), "--top-k", "0", "good film"
    )
    assert sorted(r["label"] for r in lines[0]) == ["neg", "pos"]  # all labels, sigmoid scores
    assert all(0 < r["score"] < 1 for r in lines[0])


# ----------------------------------------------------------------------------------------
# token classification


def test_token_classification_end_to_end(tmp_path, tokenizer_dir, tokenizer, tiny_config, capsys):
    train = write_conll(tmp_path / "train.conll", NER_SENTENCES * 4)
    dev = write_conll(tmp_path / "dev.conll", NER_SENTENCES, separator=" ", docstart=False)
    out = tmp_path / "out"
    result = finetune_tiny(
        "token-classification", train, dev, tiny_config, tokenizer_dir, out, max_steps=30, epochs=20
    )
    assert result["metric"] == "f1"
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and set(config["label2id"]) == {
        "O",
        "B-PER",
        "I-PER",
        "B-LOC",
        "I-LOC",
    }
    assert json.loads((out / "finetune_args.json").read_text())["resolved"] == {"char_level": False}

    batch = tokenizer([NER_SENTENCES[0][0]], is_split_into_words=True, return_tensors="np")
    assert_transformers_loads(out, "AlbertForTokenClassification", dict(batch))

    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(dev))
    assert set(metrics) >= {"precision", "recall", "f1", "per_type", "token_accuracy"}
    assert metrics["f1"] > 0.5, metrics  # 30 steps memorise four sentences
    assert set(metrics["per_type"]) <= {"PER", "LOC"}

    texts = [" ".join(words) for words, _ in NER_SENTENCES]
    lines = cli_json_lines(
        capsys,
        "predict",
        "--task",
        "token-classification",
        "--model",
        str(out),
        "--precision",
        "fp32",
        *texts,
    )
    import albert

    tagger = albert.pipeline("token-classification", model=out, batch_size=3)
    assert lines == json.loads(json.dumps([tagger(t) for t in texts]))
    found = [e for entities in lines for e in entities]
    assert found, "the memorised sentences should yield entities"
    for text, entities in zip(texts, lines, strict=True):
        for entity in entities:
            assert text[entity["start"] : entity["end"]] == entity["word"]
            assert entity["entity_group"] in {"PER", "LOC"} and 0 < entity["score"] <= 1
    assert {"entity_group": "PER", "word": "Emma Woodhouse", "start": 0, "end": 14} in [
        {k: v for k, v in e.items() if k != "score"} for e in lines[0]
    ]


def test_character_level_chinese_ner(tmp_path, tokenizer_dir, tiny_config):
    train = write_conll(tmp_path / "train.conll", CHINESE_NER * 8)
    out = tmp_path / "out"
    finetune_tiny(
        "token-classification", train, train, tiny_config, tokenizer_dir, out, max_steps=40, epochs=40
    )
    assert json.loads((out / "finetune_args.json").read_text())["resolved"] == {"char_level": True}
    import albert

    text = "张三住在上海市"
    entities = albert.pipeline("token-classification", model=out)(text)
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["word"]
    assert [(e["entity_group"], e["word"]) for e in entities] == [("PER", "张三"), ("LOC", "上海市")]


def test_characters_are_encoded_as_inside_a_word(tokenizer):
    """Character-level sentences get each character's in-word piece: no "▁" word-start pieces
    (which `is_split_into_words` would insert before every character), same length as the text
    where the vocabulary has the characters, word ids one per character, truncation by character."""
    from albert.tasks.token_classification import WORD_START, encode_words

    chars = list("张三住在上海市")
    split = tokenizer([chars], is_split_into_words=True)["input_ids"][0]
    [feature] = encode_words(tokenizer, [chars], True, 64)
    pieces = tokenizer.convert_ids_to_tokens(feature["input_ids"])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    assert not any(p.startswith(WORD_START) for p in pieces)
    known = tokenizer.get_vocab()
    assert len(pieces) == len(chars) + 2  # one piece per character: its own, or [UNK] if unknown
    assert [p for p, c in zip(pieces[1:-1], chars, strict=True) if c in known] == [
        c for c in chars if c in known
    ]
    assert sum(c in known for c in chars) >= 4
    assert len(split) > len(feature["input_ids"])  # what the word-split encoding would have cost
    assert feature["word_ids"] == [None, *range(len(chars)), None]
    assert feature["token_type_ids"] == [0] * len(pieces)
    [short] = encode_words(tokenizer, [chars], True, 5)
    assert short["word_ids"] == [None, 0, 1, 2, None]
    [words] = encode_words(tokenizer, [["Emma", "lived"]], False, 64)  # word level: unchanged
    assert words["input_ids"] == tokenizer([["Emma", "lived"]], is_split_into_words=True)["input_ids"][0]


# ----------------------------------------------------------------------------------------
# question answering


@pytest.mark.parametrize("version_2", [False, True], ids=["squad-v1", "squad-v2"])
def test_question_answering_end_to_end(tmp_path, tokenizer_dir, tokenizer, tiny_config, capsys, version_2):
    data = squad_file(tmp_path / "squad.json", version_2)
    out = tmp_path / "out"
    options = {"max_seq_length": 48, "doc_stride": 16, "max_query_length": 16}
    result = finetune_tiny("question-answering", data, data, tiny_config, tokenizer_dir, out, options=options)
    assert result["metric"] == "f1"
    args = json.loads((out / "finetune_args.json").read_text())
    assert args["resolved"] == {"version_2_with_negative": version_2}

    batch = tokenizer(["Who?"], [CONTEXT], truncation=True, max_length=48, return_tensors="np")
    assert_transformers_loads(out, "AlbertForQuestionAnswering", dict(batch), output="start_logits")

    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(data))
    assert metrics["total"] == (5 if version_2 else 4) and 0 <= metrics["f1"] <= 100
    assert ("no_answer_f1" in metrics) == version_2

    questions = ["Who was rich?", "What did she seem to unite?"]
    lines = cli_json_lines(
        capsys,
        "predict",
        "--task",
        "question-answering",
        "--model",
        str(out),
        "--precision",
        "fp32",
        "--question",
        questions[0],
        "--context",
        CONTEXT,
    )
    import albert

    qa = albert.pipeline("question-answering", model=out)
    batch_answers = qa([{"question": q, "context": CONTEXT} for q in questions])
    assert lines[0] == json.loads(json.dumps(batch_answers[0]))
    assert batch_answers[1] == qa(question=questions[1], context=CONTEXT)
    for answer in batch_answers:
        assert set(answer) == {"answer", "score", "start", "end"}
        assert CONTEXT[answer["start"] : answer["end"]] == answer["answer"]


def test_question_windows_cover_the_context_with_doc_stride(tokenizer):
    from albert.tasks import TaskOptions, get_task
    from albert.tasks.question_answering import QAExample

    task = get_task("question-answering", TaskOptions(max_seq_length=32, doc_stride=8, max_query_length=6))
    answer = "indulgent father"
    example = QAExample(
        "x", "Who was the father of Emma Woodhouse really?", CONTEXT, [(answer, CONTEXT.index(answer))], False
    )
    features = task.features([example], tokenizer, training=True)
    assert len(features) > 3 and all(len(f["input_ids"]) <= 32 for f in features)
    # the question is cut to 6 tokens; consecutive windows start 8 context tokens apart
    assert all(f["input_ids"][: 6 + 2] == features[0]["input_ids"][:8] for f in features)
    starts = [next(o for o in f["offsets"] if o is not None)[0] for f in features]
    assert starts == sorted(starts) and starts[0] == 0
    last = [o for o in features[-1]["offsets"] if o is not None][-1]
    assert last[1] == len(CONTEXT)  # the last window reaches the end of the context
    labelled = [f for f in features if f["start_positions"] != 0]
    assert labelled, "some window contains the answer"
    for f in labelled:
        start, end = f["offsets"][f["start_positions"]][0], f["offsets"][f["end_positions"]][1]
        assert CONTEXT[start:end] == answer


# ----------------------------------------------------------------------------------------
# multiple choice


@pytest.mark.parametrize("rows", [RACE_ROWS, SWAG_ROWS], ids=["race", "swag"])
def test_multiple_choice_end_to_end(tmp_path, tokenizer_dir, tokenizer, tiny_config, capsys, rows):
    data = write_jsonl(tmp_path / "mc.jsonl", rows * 4)
    out = tmp_path / "out"
    result = finetune_tiny("multiple-choice", data, data, tiny_config, tokenizer_dir, out)
    assert result["metric"] == "accuracy"
    choices = tokenizer(
        ["Emma sat.", "Emma sat."], ["She played.", "She flew."], padding=True, return_tensors="np"
    )
    assert_transformers_loads(out, "AlbertForMultipleChoice", {k: v[None] for k, v in choices.items()})
    metrics = cli_json(capsys, "evaluate", "--model", str(out), "--data", str(data), "--precision", "fp32")
    assert metrics["task"] == "multiple-choice" and metrics["examples"] == 12
    assert metrics["accuracy"] == pytest.approx(result["dev"]["accuracy"])  # the saved model is the best epoch's


def test_race_cloze_question_fills_the_blank():
    from albert.tasks.multiple_choice import pair_text

    assert (
        pair_text("Mr. Knightley walked to _ every evening.", "Hartfield")
        == "Mr. Knightley walked to Hartfield every evening."
    )
    assert pair_text("Where did Emma live?", "Hartfield") == "Where did Emma live? Hartfield"


# ----------------------------------------------------------------------------------------
# the training loop's options


def test_bucketed_batches_are_deterministic_and_tight():
    from albert.tasks.common import length_bucketed_batches

    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    first = length_bucketed_batches(lengths, 10, shuffle=True, seed=3)
    assert first == length_bucketed_batches(lengths, 10, shuffle=True, seed=3)
    assert first != length_bucketed_batches(lengths, 10, shuffle=True, seed=4)
    assert sorted(i for b in first for i in b) == list(range(1000))
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first])
    assert spread < 5  # vs ~80 for random batches
    ordered = length_bucketed_batches(lengths, 10, shuffle=False)  # inference: no padding at all
    assert [lengths[i] for b in ordered for i in b] == sorted(lengths, reverse=True)
    assert all(len(b) <= 10 and len({lengths[i] for i in b}) == 1 for b in ordered)
    loose = length_bucketed_batches(lengths, 10, shuffle=False, max_padding=0.1)
    assert len(loose) < len(ordered) and all(len(b) <= 10 for b in loose)
    for batch in loose:
        width = lengths[batch[0]] * len(batch)
        assert width - sum(lengths[i] for i in batch) <= 0.1 * width


def test_layerwise_lr_decay_under_sharing(tiny_config):
    from albert.checkpoint import build_model
    from albert.finetune import apply_layerwise_lr_decay, layer_depth
    from albert.modeling import AlbertForSequenceClassification
    from albert.optim import build_optimizer

    model = build_model(AlbertForSequenceClassification, tiny_config)
    optimizer = build_optimizer(model, "adamw", 1.0, 0.01)
    apply_layerwise_lr_decay(optimizer, model, 0.5)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == 1.0
    assert lr_of[id(named["albert.pooler.weight"])] == 1.0
    assert lr_of[id(named["albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.weight"])] == 0.5
    assert lr_of[id(named["albert.encoder.embedding_hidden_mapping_in.weight"])] == 0.25
    assert lr_of[id(named["albert.embeddings.word_embeddings.weight"])] == 0.25
    assert len(lr_of) == len(named)  # every parameter kept, once
    decay = {
        g["weight_decay"]
        for g in optimizer.param_groups
        if any(p is named["albert.embeddings.LayerNorm.weight"] for p in g["params"])
    }
    assert decay == {0.0}  # the no-decay split survives
    # without sharing every layer is a depth (BERT's layer-wise decay)
    config = model.config
    unshared = type(config)(**{**config.to_dict(), "share": "none"})
    assert [layer_depth(f"albert.encoder.albert_layer_groups.{i}.x", unshared) for i in range(2)] == [1, 2]
    assert layer_depth("classifier.weight", unshared) == 3


def test_patience_stops_early_and_keeps_the_best(tmp_path, tokenizer_dir, tiny_config):
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(16, 0))
    out = tmp_path / "out"
    result = finetune_tiny(
        "text-classification",
        train,
        train,
        tiny_config,
        tokenizer_dir,
        out,
        epochs=50,
        max_steps=None,
        learning_rate=1e-9,
        patience=2,
    )
    evals = [r for r in read_metrics(out) if r.get("eval")]
    assert len(evals) == 3  # no change at lr 1e-9: the first epoch stays best, two more and stop
    assert result["epoch"] == 1
    assert json.loads((out / "finetune_args.json").read_text())["best"]["epoch"] == 1


def test_finetune_from_a_pretraining_checkpoint(tmp_path, tokenizer_dir, tiny_config):
    """A pretraining directory (AlbertForPreTraining weights + tokenizer) is the usual start:
    the encoder loads, the head is new, the tokenizer comes from the directory."""
    import torch

    from albert.checkpoint import build_model
    from albert.modeling import AlbertForPreTraining, AlbertForSequenceClassification
    from albert.tokenization import AlbertTokenizer

    pretrained = tmp_path / "pretrained"
    model = build_model(AlbertForPreTraining, tiny_config)
    model.save_pretrained(pretrained)
    AlbertTokenizer.from_pretrained(tokenizer_dir).save_pretrained(pretrained)
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(16, 0))
    from albert.finetune import FinetuneConfig, finetune

    out = tmp_path / "out"
    finetune(
        FinetuneConfig(
            "text-classification", str(train), str(train), str(pretrained), str(out), max_steps=1, epochs=1
        )
    )
    tuned = AlbertForSequenceClassification.from_pretrained(out)
    word = "albert.embeddings.word_embeddings.weight"
    assert not torch.equal(tuned.state_dict()[word], model.state_dict()[word])  # trained one step...
    assert torch.allclose(
        tuned.state_dict()[word], model.state_dict()[word], atol=1e-3
    )  # ...from the checkpoint


# ----------------------------------------------------------------------------------------
# errors a user can cause


def test_clear_errors(tmp_path, tokenizer_dir, tiny_config):
    good = write_csv(tmp_path / "good.csv", ["label", "text"], sentiment_rows(8, 0))
    ft = lambda train, dev=good, task="text-classification", **kw: finetune_tiny(  # noqa: E731
        task, train, dev, tiny_config, tokenizer_dir, tmp_path / "out", **kw
    )
    wrong = write_csv(tmp_path / "wrong.csv", ["label", "sentence"], [("1", "good")])
    with pytest.raises(AlbertError, match=r"no column 'text'.*columns found: label, sentence"):
        ft(wrong)
    unknown = write_csv(tmp_path / "unknown.csv", ["label", "text"], [("1", "a"), ("maybe", "b")])
    with pytest.raises(
        AlbertError, match=r"unknown.csv line 3: label 'maybe' does not occur in the training data"
    ):
        ft(good, unknown)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(AlbertError, match="empty"):
        ft(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("label,text\n")
    with pytest.raises(AlbertError, match="no examples"):
        ft(tmp_path / "header.csv")
    (tmp_path / "bad.conll").write_text("Emma\tB-PER\nlived\tO\n\nHighbury\n", encoding="utf-8")
    with pytest.raises(AlbertError, match=r"bad.conll line 4: expected a token and a tag"):
        ft(tmp_path / "bad.conll", tmp_path / "bad.conll", task="token-classification")
    (tmp_path / "latin1.csv").write_bytes("label,text\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(AlbertError, match="not valid UTF-8"):
        ft(tmp_path / "latin1.csv")
    with pytest.raises(AlbertError, match="no file|not found"):
        ft(tmp_path / "missing.csv")
    with pytest.raises(AlbertError, match="--learning-rate"):
        ft(good, learning_rate=0)
    single = write_csv(tmp_path / "single.csv", ["label", "text"], [("1", "a"), ("1", "b")])
    with pytest.raises(AlbertError, match="only one label"):
        ft(single)
    from albert.finetune import FinetuneConfig, finetune

    with pytest.raises(AlbertError, match="--tokenizer"):
        finetune(
            FinetuneConfig("text-classification", str(good), str(good), "albert-tiny", str(tmp_path / "o"))
        )
    with pytest.raises(AlbertError, match="max_position_embeddings"):
        ft(good, options={"max_seq_length": 256})
    mc = write_jsonl(
        tmp_path / "mc.jsonl", [{"article": "a", "question": "q", "options": ["x", "y"], "answer": "C"}]
    )
    with pytest.raises(AlbertError, match="line 1: answer 'C' is out of range"):
        ft(mc, mc, task="multiple-choice")


def test_problem_type_detection_and_multi_label_csv(tmp_path):
    from albert.tasks import get_task

    task = get_task("text-classification")
    rows = [("sports|news", "a"), ("news", "b"), ("", "c")]
    examples = task.read(write_csv(tmp_path / "multi.csv", ["label", "text"], rows))
    assert task.fit_labels(examples) == {
        "id2label": {0: "news", 1: "sports"},
        "problem_type": "multi_label_classification",
    }
    assert [task.encode_label(e.label) for e in examples] == [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    numbers = task.read(
        write_csv(tmp_path / "ints.csv", ["label", "text"], [("10", "a"), ("2", "b"), ("2.0", "c")])
    )
    assert task.fit_labels(numbers)["id2label"] == {0: "2", 1: "10"}  # integers: numeric order, 2.0 == 2
    floats = task.read(write_csv(tmp_path / "floats.csv", ["label", "text"], [("0.5", "a"), ("2", "b")]))
    assert task.fit_labels(floats)["problem_type"] == "regression"


def test_quoted_line_breaks_stay_inside_csv_fields(tmp_path):
    from albert.tasks import get_task

    path = tmp_path / "reviews.csv"
    path.write_text('label,text\n1,"great\nfilm, truly"\n0,"dull\r\nand long"\n0,plain\n', encoding="utf-8")
    examples = get_task("text-classification").read(path)
    assert [e.text for e in examples] == [
        "great\nfilm, truly",
        "dull\nand long",
        "plain",
    ]  # read_text: universal newlines
    assert [e.label for e in examples] == ["1", "0", "0"]
    assert [e.line for e in examples] == [3, 5, 6]  # where each row ends, for error messages


def test_a_diverging_run_stops_with_a_clear_error(tmp_path, tokenizer_dir, tiny_config):
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(32, 0))
    with pytest.raises(AlbertError, match=r"the loss became (nan|inf) at step \d+; lower --learning-rate"):
        finetune_tiny(
            "text-classification",
            train,
            train,
            tiny_config,
            tokenizer_dir,
            tmp_path / "out",
            learning_rate=1e12,
            warmup_ratio=0.0,
            max_grad_norm=1e30,
            epochs=20,
            max_steps=40,
        )


def test_evaluate_reads_the_task_from_the_architecture(classifier_dir, tmp_path, capsys):
    """A model directory without finetune_args.json (e.g. from transformers) is still evaluated."""
    data = write_csv(
        tmp_path / "dev.csv", ["label", "text"], [("pos", "good"), ("neg", "bad"), ("mixed", "ok")]
    )
    metrics = cli_json(
        capsys, "evaluate", "--model", str(classifier_dir), "--data", str(data), "--max-seq-length", "32"
    )
    assert metrics["task"] == "text-classification" and metrics["examples"] == 3
    unknown = write_csv(tmp_path / "unknown.csv", ["label", "text"], [("great", "good")])
    with pytest.raises(AlbertError, match="label 'great' does not occur"):
        from albert.evaluate import evaluate

        evaluate(classifier_dir, unknown)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    from albert.cli import main

    status = main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("albert evaluate: error:") and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------------------------
# learning


@pytest.mark.slow
def test_learns_the_bundled_task_beyond_the_majority_baseline(tmp_path, tokenizer_dir, tokenizer):
    """Which book is this passage from? A small model trained from scratch (no pretraining) for two
    epochs (~10 s) beats the majority class (1/3) on the bundled dev split clearly (it reaches
    ~0.6: the King James Bible is easy, Austen vs Botchan needs pretraining)."""
    from albert.finetune import FinetuneConfig, finetune
    from albert.tasks import TaskOptions, default_task_files

    train, dev = default_task_files()
    config_file = tmp_path / "config.json"
    config_file.write_text(
        json.dumps(
            dict(
                vocab_size=len(tokenizer),
                embedding_size=32,
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                max_position_embeddings=128,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
        )
    )
    result = finetune(
        FinetuneConfig(
            "text-classification",
            str(train),
            str(dev),
            str(config_file),
            str(tmp_path / "out"),
            tokenizer=str(tokenizer_dir),
            epochs=2,
            batch_size=32,
            learning_rate=2e-3,
            task_options=TaskOptions(max_seq_length=64),
        )
    )
    majority = 1 / 3  # the dev split is balanced
    assert result["dev"]["accuracy"] > majority + 0.15 and result["dev"]["mcc"] > 0.3, result
