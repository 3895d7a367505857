"""Faults and awkward inputs that must not lose data or give silently wrong answers: a full disk
while saving, long texts in token classification, arbitrary Unicode through every pipeline,
stale staging directories, an output that is the input model, strict JSON from evaluate."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    classifier_dir,
    finetune_tiny,
    one_thread,
    pretraining_dir,
    save_tiny,
    sentiment_rows,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_csv,
)

import albert
from albert.cli import main
from albert.errors import AlbertError


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(directory: Path) -> list[str]:
    """Temporary files or staging directories a failed save may have left."""
    return [
        p.name
        for p in directory.rglob("*")
        if p.name.endswith(".tmp") or p.name.startswith((".best", ".albert-"))
    ]


def full_disk_on(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    """Make `module.name(obj, path)` write half a file and then fail as a full disk does."""

    def write_then_fail(obj: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"\0" * 1024)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(module, name, write_then_fail)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line of an error that stopped a run; the line a run starts with, naming the
    precision it trains in, comes before it."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    lines = [line for line in lines if not re.match(r"albert \w+: precision \w+ \(", line)]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


# ----------------------------------------------------------------------------------------
# a full disk while saving


@pytest.fixture
def sentiment_files(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(24, 0)),
        write_csv(tmp_path / "dev.csv", ["label", "text"], sentiment_rows(8, 1)),
    )


def test_full_disk_in_finetune_keeps_the_previous_checkpoint(
    sentiment_files, tiny_config, tokenizer_dir, tmp_path, capsys, monkeypatch
) -> None:
    import albert.checkpoint
    from albert.modeling import AlbertForSequenceClassification

    train, dev = sentiment_files
    output = tmp_path / "ft"
    finetune_tiny("text-classification", train, dev, tiny_config, tokenizer_dir, output, max_steps=3)
    weights = digest(output / "model.safetensors")
    full_disk_on(monkeypatch, albert.checkpoint, "save_file")  # the writer checkpoints use
    argv = ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(dev)]
    argv += ["--model", str(tiny_config), "--tokenizer", str(tokenizer_dir), "--output", str(output)]
    assert main([*argv, "--max-steps", "3", "--max-seq-length", "64"]) == 2
    line = one_error_line(capsys)
    assert "could not write" in line and "model.safetensors" in line and "disk is full" in line
    assert f"previous best checkpoint in {output} is intact" in line
    assert digest(output / "model.safetensors") == weights and not leftovers(output)
    AlbertForSequenceClassification.from_pretrained(output)  # still loads


def test_full_disk_in_export_keeps_the_earlier_export(classifier_dir, tmp_path, capsys, monkeypatch) -> None:
    onnx = pytest.importorskip("onnx")
    output = tmp_path / "exported" / "model.onnx"
    assert main(["export", "--model", str(classifier_dir), "--output", str(output)]) == 0
    capsys.readouterr()
    before = {p.name: digest(p) for p in output.parent.iterdir()}
    full_disk_on(monkeypatch, onnx, "save")
    assert main(["export", "--model", str(classifier_dir), "--output", str(output)]) == 2
    line = one_error_line(capsys)
    assert "could not write" in line and "model.onnx" in line and "earlier model.onnx" in line
    assert {p.name: digest(p) for p in output.parent.iterdir()} == before
    monkeypatch.undo()
    onnx.checker.check_model(onnx.load(str(output)))


# ----------------------------------------------------------------------------------------
# token classification over texts longer than one window


def parity_runner(input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray) -> dict:
    """A position-free stand-in model: each token's label is its id modulo 3, whatever the
    window around it, so windowed and whole-text predictions must agree exactly."""
    return {"logits": np.eye(3, dtype=np.float32)[input_ids % 3] * 5}


def test_long_texts_are_tagged_to_the_end_in_strided_windows(tokenizer, tmp_path) -> None:
    from albert.pipelines import LoadedModel, TokenClassificationPipeline

    config = {"id2label": {0: "O", 1: "B-X", 2: "I-X"}, "max_position_embeddings": 100_000}
    loaded = LoadedModel(parity_runner, config, tokenizer, tmp_path)
    with open(Path(str(albert.__file__)).parent / "resources" / "task_train.csv", encoding="utf-8") as f:
        text = " ".join(f.read().split()[:1000])
    windowed = TokenClassificationPipeline(loaded, max_seq_length=24)(text)
    whole = TokenClassificationPipeline(loaded, max_seq_length=100_000)(text)
    assert windowed == whole
    assert windowed[-1]["end"] > len(text) - 40  # tagged to the end, not cut after one window
    assert all(text[e["start"] : e["end"]] == e["word"] for e in windowed)


def test_strided_windows_see_every_word_first_subword(tokenizer) -> None:
    from albert.tasks.token_classification import encode_words, strided_windows

    words = "the unbelievably extraordinary circumstances of Highbury's inhabitants".split() * 20
    (whole,) = encode_words(tokenizer, [words], False, 10**9)
    windows = strided_windows(whole, 12, tokenizer.cls_token_id, tokenizer.sep_token_id)
    assert len(windows) > 1 and all(len(w["input_ids"]) <= 12 for w in windows)
    seen = {w for window in windows for w in window["word_ids"] if w is not None}
    assert seen == set(range(len(words)))


# ----------------------------------------------------------------------------------------
# arbitrary text through the tokenizer and every pipeline

TEXT = st.one_of(
    st.text(max_size=200),
    st.text(
        alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]), max_size=50
    ),
    st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=12), st.integers(20, 200)),
)
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pipelines(tiny_config, tokenizer_dir, tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("property")
    heads = {
        "text-classification": ("AlbertForSequenceClassification", {"id2label": {0: "a", 1: "b"}}),
        "token-classification": ("AlbertForTokenClassification", {"id2label": {0: "O", 1: "B-X", 2: "I-X"}}),
        "question-answering": ("AlbertForQuestionAnswering", {}),
        "fill-mask": ("AlbertForMaskedLM", {}),
        "feature-extraction": ("AlbertModel", {}),
    }
    return {
        task: albert.pipeline(
            task, save_tiny(head, tiny_config, tokenizer_dir, root / head, **extra), max_seq_length=32
        )
        for task, (head, extra) in heads.items()
    }


@FAST
@given(text=TEXT)
def test_tokenizer_takes_any_text(tokenizer, text: str) -> None:
    encoded = tokenizer(text, truncation=True, max_length=64)
    assert all(0 <= i < len(tokenizer) for i in encoded["input_ids"])
    assert isinstance(tokenizer.decode(encoded["input_ids"]), str)


@FAST
@given(text=TEXT, question=st.text(max_size=40))
def test_every_pipeline_takes_any_text(pipelines, text: str, question: str) -> None:
    assert set(pipelines["text-classification"](text)) == {"label", "score"}
    entities = pipelines["token-classification"](text)
    assert all(text[e["start"] : e["end"]] == e["word"] for e in entities)
    answer = pipelines["question-answering"](question=question, context=text)
    assert answer["answer"] == text[answer["start"] : answer["end"]]
    assert len(pipelines["feature-extraction"](text)) == 32
    assert pipelines["fill-mask"]("[MASK] " + text)
    with pytest.raises(AlbertError, match="no \\[MASK\\]|lies past the first 32 tokens"):
        pipelines["fill-mask"](text.replace("[MASK]", "") + " x " * 40 + "[MASK]")


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(TEXT, min_size=1, max_size=5))
def test_predict_cli_answers_every_line(classifier_dir, tmp_path, capsys, lines: list[str]) -> None:
    lines = [line.replace("\r", " ").replace("\n", " ") for line in lines]  # one text per line
    lines = ["".join(c for c in line if c not in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") for line in lines]
    source = tmp_path / "lines.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    status = main(
        ["predict", "--task", "text-classification", "--model", str(classifier_dir), "--input", str(source)]
    )
    out = capsys.readouterr().out.splitlines()
    assert status == 0 and len(out) == len(lines)
    assert [json.loads(o) is None for o in out] == [not line.strip() for line in lines]


# ----------------------------------------------------------------------------------------
# files around the output


def test_stale_staging_of_the_same_output_is_removed(tokenizer_dir, tmp_path) -> None:
    from albert.data.build import build_pretraining_data

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join("One sentence here. Another one there." for _ in range(30)) + "\n")
    stale = [
        tmp_path / ".data.partial-999999999-abc",
        tmp_path / ".data.partial-k2j_x",
        tmp_path / ".data.old-999999999",
    ]
    live = tmp_path / f".data.partial-{os.getppid()}-run"  # a running process's staging stays
    other = tmp_path / ".other.partial-999999999-abc"  # another output's staging is not ours
    for path in [*stale, live, other]:
        path.mkdir()
        (path / "shard-00000.input_ids.bin").write_bytes(b"x")
    build_pretraining_data(
        tokenizer_dir, [corpus], tmp_path / "data", max_seq_length=32, dupe_factor=1, progress=False
    )
    assert not any(p.exists() for p in stale) and live.exists() and other.exists()
    assert (tmp_path / "data" / "manifest.json").is_file()


def test_finetune_onto_its_own_model_needs_overwrite(
    sentiment_files, pretraining_dir, tmp_path, capsys
) -> None:
    model = tmp_path / "model"
    shutil.copytree(pretraining_dir, model)
    train, dev = sentiment_files
    argv = ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(dev)]
    argv += ["--model", str(model), "--output", str(model), "--max-steps", "2", "--max-seq-length", "32"]
    weights = digest(model / "model.safetensors")
    assert main(argv) == 2 and "--overwrite" in one_error_line(capsys)
    assert digest(model / "model.safetensors") == weights
    assert main([*argv, "--overwrite"]) == 0
    assert (model / "finetune_args.json").is_file() and digest(model / "model.safetensors") != weights


# ----------------------------------------------------------------------------------------
# evaluate: strict JSON and the checkpoint's real step


def test_evaluate_json_has_no_bare_nan() -> None:
    from albert.evaluate import strict_json

    out = strict_json(
        {"task": "x", "pearson": math.nan, "per_type": {"PER": {"f1": math.inf}}, "accuracy": 0.5}
    )
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["pearson"] is None and out["per_type"]["PER"]["f1"] is None
    assert set(out["null_because"]) == {"pearson", "per_type.PER.f1"} and out["accuracy"] == 0.5


def test_evaluate_reports_the_checkpoint_step(pretraining_dir, tokenizer_dir, tmp_path, capsys) -> None:
    from albert.data.build import build_pretraining_data

    checkpoint = tmp_path / "checkpoints" / "step-6"
    shutil.copytree(pretraining_dir, checkpoint)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join("Emma walked to town. She bought bread. Then home." for _ in range(30)) + "\n"
    )
    build_pretraining_data(
        tokenizer_dir, [corpus], tmp_path / "data", max_seq_length=32, dupe_factor=1, progress=False
    )
    argv = ["evaluate", "--model", str(checkpoint), "--data", str(tmp_path / "data")]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 6  # from the name
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 7}))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["step"] == 7  # from the trainer state
