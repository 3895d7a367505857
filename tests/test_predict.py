"""`albert predict`: inputs from arguments, files (plain or JSON lines) and stdin; JSON lines out."""

from __future__ import annotations

import io
import json

import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    classifier_dir,
    cli_json_lines,
    one_thread,
    pretraining_dir,
    tiny_config,
    tokenizer,
    tokenizer_dir,
)

import albert
from albert.cli import main

TEXTS = ["a fine film", "In the beginning God created the heaven and the earth, and it was good.", "ok"]


def test_inputs_from_a_file_stdin_and_arguments_agree(classifier_dir, tmp_path, capsys, monkeypatch):
    base = ["predict", "--task", "text-classification", "--model", str(classifier_dir)]
    from_args = cli_json_lines(capsys, *base, *TEXTS)
    plain = tmp_path / "texts.txt"
    plain.write_text(TEXTS[0] + "\n\n" + "\n".join(TEXTS[1:]) + "\n", encoding="utf-8")
    # a blank line keeps its place: output line N answers input line N
    assert cli_json_lines(capsys, *base, "--input", str(plain)) == [from_args[0], None, *from_args[1:]]
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    assert cli_json_lines(capsys, *base, "--input", str(jsonl)) == from_args
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(TEXTS)))
    assert cli_json_lines(capsys, *base) == from_args
    expected = albert.pipeline("text-classification", model=classifier_dir)(TEXTS)
    assert [r["label"] for r in from_args] == [r["label"] for r in expected]
    out = tmp_path / "predictions.jsonl"
    assert main([*base, "--input", str(plain), "--output", str(out), "--top-k", "2"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and lines[1] is None and all(len(line) == 2 for line in lines if line)


def test_text_lines_starting_with_a_brace_stay_text(classifier_dir, tmp_path, capsys):
    base = ["predict", "--task", "text-classification", "--model", str(classifier_dir)]
    texts = ["{braces} open this line", "{ and this one"]
    expected = cli_json_lines(capsys, *base, *texts)
    plain = tmp_path / "braces"  # no extension: detected from the content, which is not JSON
    plain.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert cli_json_lines(capsys, *base, "--input", str(plain)) == expected
    as_json = tmp_path / "objects.txt"  # .txt is text even when every line is a JSON object
    as_json.write_text(json.dumps({"text": "a"}) + "\n", encoding="utf-8")
    assert cli_json_lines(capsys, *base, "--input", str(as_json)) == cli_json_lines(
        capsys, *base, json.dumps({"text": "a"})
    )
    assert cli_json_lines(
        capsys, *base, "--input", str(as_json), "--input-format", "jsonl"
    ) == cli_json_lines(capsys, *base, "a")


def test_text_pairs_from_jsonl(classifier_dir, tmp_path, capsys):
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(json.dumps({"text": "a fine film", "text_pair": "I agree"}) + "\n", encoding="utf-8")
    lines = cli_json_lines(
        capsys,
        "predict",
        "--task",
        "text-classification",
        "--model",
        str(classifier_dir),
        "--input",
        str(jsonl),
    )
    pipe = albert.pipeline("text-classification", model=classifier_dir, dtype="auto")  # as the CLI's default
    assert lines[0]["score"] == pytest.approx(pipe({"text": "a fine film", "text_pair": "I agree"})["score"])
    assert lines[0]["score"] != pytest.approx(pipe("a fine film")["score"])


def test_feature_extraction_and_fill_mask_from_the_cli(pretraining_dir, capsys):
    base = ["--model", str(pretraining_dir)]
    vectors = cli_json_lines(
        capsys, "predict", "--task", "feature-extraction", "--pooling", "cls", *base, *TEXTS
    )
    assert len(vectors) == 3 and all(len(v) == 32 and isinstance(v[0], float) for v in vectors)
    filled = cli_json_lines(
        capsys, "predict", "--task", "fill-mask", "--top-k", "2", *base, "Emma was [MASK]."
    )
    assert (
        len(filled) == 1
        and len(filled[0]) == 2
        and {"score", "token", "token_str", "sequence"} == set(filled[0][0])
    )


def test_predict_errors(classifier_dir, tmp_path, capsys, monkeypatch):
    base = ["predict", "--task", "text-classification", "--model", str(classifier_dir)]

    def error(*argv: str) -> str:
        assert main([*base, *argv]) == 2
        return capsys.readouterr().err

    assert "input file not found" in error("--input", str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    assert "line 2: not valid JSON" in error("--input", str(bad))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    assert "not valid UTF-8" in error("--input", str(latin))
    assert "pass both --question and --context" in error("--question", "who?")
    monkeypatch.setattr("sys.stdin", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    assert "no input" in error()
    assert "has no tokenizer" in error("--tokenizer", str(tmp_path), "x")
    empty_model = tmp_path / "empty"
    empty_model.mkdir()
    assert main(["predict", "--task", "text-classification", "--model", str(empty_model), "x"]) == 2
    assert "config.json" in capsys.readouterr().err
