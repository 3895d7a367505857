"""Shared fixtures: the location of ../shared/data and small model configs."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (CI always has it)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _quiet_hf(monkeypatch: pytest.MonkeyPatch) -> None:
    # transformers is only a test oracle here: keep it offline and quiet.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("TQDM_DISABLE", "1")
