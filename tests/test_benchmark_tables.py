"""docs/benchmarks.md is generated from benchmarks/results/*.json by benchmarks/make_tables.py:
the committed page must be exactly what the generator writes (no benchmark is run here)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import each other as scripts do
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_committed_page_regenerates_byte_identically(tmp_path: Path) -> None:
    make_tables = load("make_tables")
    page = tmp_path / "benchmarks.md"
    page.write_text(make_tables.render(BENCHMARKS / "results"), encoding="utf-8")
    assert page.read_bytes() == (REPO / "docs" / "benchmarks.md").read_bytes(), (
        "docs/benchmarks.md is out of date: run python benchmarks/make_tables.py"
    )


def test_every_table_names_its_machine_and_command() -> None:
    make_tables = load("make_tables")
    results = sorted((BENCHMARKS / "results").glob("*.json"))
    assert results, "no benchmark results committed"
    page = make_tables.render(BENCHMARKS / "results")
    for path in results:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["machine"]["gemm_peak"]["fp32"]["gflops"] > 0, path.name
        assert make_tables.machine_line(record) in page, path.name


def test_mfu_above_the_probe_is_flagged_not_hidden(tmp_path: Path) -> None:
    make_tables = load("make_tables")
    shutil.copy(BENCHMARKS / "results" / "bench_model.json", tmp_path / "bench_model.json")
    record = json.loads((tmp_path / "bench_model.json").read_text(encoding="utf-8"))
    record["rows"][0]["mfu"]["ours"] = 1.26
    (tmp_path / "bench_model.json").write_text(json.dumps(record), encoding="utf-8")
    page = make_tables.render(tmp_path)
    assert "126 % ⚠" in page
    assert "`bench_tokenizer`" in page.split("## Not recorded")[1]  # absent results are named, not invented


def test_gemm_probe_includes_the_models_own_linear() -> None:
    machine = load("machine")
    peak = machine.gemm_peak(torch.float32, seconds=0.05)
    assert "albert.modeling.linear" in peak["paths"]
    assert peak["gflops"] == max(peak["paths"].values()) > 0
    assert peak["path"] in peak["paths"]


@pytest.mark.parametrize(
    "flags, expected", [(["avx512f"], ["fp32"]), (["avx512f", "amx_bf16"], ["fp32", "bf16"])]
)
def test_bf16_is_probed_only_where_the_cpu_has_it(monkeypatch, flags: list[str], expected: list[str]) -> None:
    machine = load("machine")
    monkeypatch.setattr(machine, "cpu_flags", lambda: flags)
    assert [machine.DTYPE_NAMES[d] for d in machine.probe_dtypes()] == expected
