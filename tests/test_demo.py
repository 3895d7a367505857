"""The main job runs end to end on the bundled corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from albert.cli import main
from albert.demo import default_corpus


def test_bundled_corpus_is_shipped() -> None:
    assert default_corpus().is_file() and default_corpus().stat().st_size > 100_000


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--output", str(tmp_path), "--vocab-size", "2000"]) == 0
    out = capsys.readouterr().out
    assert "weights identical after reload: True" in out
    assert (tmp_path / "model" / "model.safetensors").is_file() and (tmp_path / "model" / "spiece.model").is_file()
