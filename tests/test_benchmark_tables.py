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
        line = make_tables.machine_line(record)
        assert line in page and f"Command: `{record['command']}`" in line, path.name
        if "gemm_peak" in record["machine"]:  # results older than the probe say so instead
            assert record["machine"]["gemm_peak"]["fp32"]["gflops"] > 0, path.name
        else:
            assert "GEMM probe: not recorded" in line, path.name


def test_mfu_above_the_probe_is_flagged_not_hidden(tmp_path: Path) -> None:
    make_tables = load("make_tables")
    shutil.copy(BENCHMARKS / "results" / "bench_model.json", tmp_path / "bench_model.json")
    record = json.loads((tmp_path / "bench_model.json").read_text(encoding="utf-8"))
    record["rows"][0]["mfu"]["ours"] = 1.26
    (tmp_path / "bench_model.json").write_text(json.dumps(record), encoding="utf-8")
    page = make_tables.render(tmp_path)
    assert "126 % ⚠" in page
    assert "`bench_tokenizer`" in page.split("## Not recorded")[1]  # absent results are named, not invented


def test_targets_are_judged_from_the_results(tmp_path: Path) -> None:
    make_tables = load("make_tables")
    for name in ("bench_precision", "bench_serve", "tf_checkpoint_xxlarge"):
        shutil.copy(BENCHMARKS / "results" / f"{name}.json", tmp_path / f"{name}.json")
    path = tmp_path / "bench_precision.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    full = record["speed"]["workloads"]["full length 8x128"]
    full["speedup_vs_ours_fp32"]["ours bf16"] = 1.5
    path.write_text(json.dumps(record), encoding="utf-8")
    path = tmp_path / "tf_checkpoint_xxlarge.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["runs"]["albert"][0]["peak_rss_mb"] = 2 * record["checkpoint_mb"]
    path.write_text(json.dumps(record), encoding="utf-8")
    page = make_tables.render(tmp_path)
    assert "bf16 **1.50×** our fp32 (target ≥ 1.8×: missed ✗)" in page
    assert "peak RSS 2.00× the checkpoint (target ≤ 1.5×: missed ✗)" in page
    serve = page.split("## Serving over HTTP")[1].split("\n## ")[0]
    assert "failed requests of ours at concurrency 128: 0 (target 0: met)" in serve


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
