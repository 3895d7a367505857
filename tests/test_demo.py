"""The main job runs every stage end to end on the bundled data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albert.cli import main
from albert.demo import default_corpus, labels_without_torch
from albert.errors import AlbertError


def test_bundled_corpus_is_shipped() -> None:
    assert default_corpus().is_file() and default_corpus().stat().st_size > 100_000


@pytest.mark.slow
def test_demo_quick_runs_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--output", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for stage in (
        "tokenizer",
        "pretraining data",
        "pretrain",
        "fine-tune",
        "evaluate",
        "predict",
        "ONNX",
        "total",
    ):
        assert stage in out, stage
    assert "fresh process where torch cannot be imported, agrees with PyTorch on" in out
    assert (tmp_path / "classifier" / "model.safetensors").is_file()
    assert (tmp_path / "onnx" / "model_int8.onnx").is_file()
    config = json.loads((tmp_path / "classifier" / "config.json").read_text())
    assert set(config["id2label"].values()) == {"austen", "botchan", "kjv"}


def test_demo_missing_corpus_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--output", str(tmp_path), "--corpus", str(tmp_path / "none.txt")]) == 2
    assert "corpus file not found" in capsys.readouterr().err


def test_torch_free_run_reports_its_failure_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(AlbertError, match="torch-free ONNX runtime failed"):
        labels_without_torch(broken, ["a text"])
