"""The machine a benchmark ran on, recorded beside every figure (results differ by CPU).

Every benchmark writes `benchmarks/results/<name>.json` as `{"machine": machine_info(), ...}`
so the tables generated from those files can say which CPU produced them. The record includes a
GEMM probe per precision (`gemm_peak`): the best matrix-product rate this CPU reaches through any
kernel path the model can use, the yardstick for model FLOP utilisation (MFU).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from albert.modeling import linear as model_linear

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The CPU features that decide which kernels run: vector width, bf16 and int8 dot products, AMX tiles.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The kernel-relevant subset of the CPU's feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return [flag for flag in KERNEL_FLAGS if flag in flags]


def native_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def probe_dtypes() -> list[torch.dtype]:
    """The precisions worth probing here: fp32 always, bf16 where the CPU has it."""
    return [torch.float32, torch.bfloat16] if native_bf16() else [torch.float32]


DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}
# A transformer-shaped product: 1,024 tokens through albert-base's FFN (768 -> 3,072).
GEMM_SHAPE = (1024, 768, 3072)


def _gemm_paths(dtype: torch.dtype) -> dict[str, Callable[[], object]]:
    """Every way this project can run `x @ w.T + b` in `dtype` on CPU, ready to call."""
    tokens, inner, outer = GEMM_SHAPE
    layer = torch.nn.Linear(inner, outer).to(dtype)
    x = torch.randn(tokens, inner, dtype=dtype)
    weight_t = layer.weight.detach().t().contiguous()
    paths: dict[str, Callable[[], object]] = {
        "torch.mm": lambda: torch.mm(x, weight_t),
        "F.linear": lambda: F.linear(x, layer.weight, layer.bias),
        # the model's own inference linear (oneDNN, weight packed once where it applies)
        "albert.modeling.linear": lambda: model_linear(layer, x),
    }
    try:  # oneDNN with the weight reordered once for this batch size, for any dtype it supports
        with torch.no_grad():
            packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), tokens)
            bias = layer.bias.detach()
            torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
        paths["oneDNN packed"] = lambda: torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    except (AttributeError, RuntimeError):
        pass
    return paths


def gemm_peak(dtype: torch.dtype = torch.float32, seconds: float = 2.0) -> dict[str, Any]:
    """Best sustained GFLOP/s of a GEMM_SHAPE product in `dtype`, over every kernel path of
    `_gemm_paths` (the paths take turns, so a shared machine's load hits them alike).

    MFU is model FLOPs / time / this rate. Because the probe includes the model's own packed
    oneDNN linear, a forward pass cannot honestly exceed it: an MFU above 100 % means the probe
    missed a faster path, and benchmarks flag it instead of hiding it."""
    tokens, inner, outer = GEMM_SHAPE
    flops = 2 * tokens * inner * outer
    best: dict[str, float] = {}
    paths = _gemm_paths(dtype)  # built outside inference mode: the model's weights are normal tensors
    with torch.inference_mode():
        for call in paths.values():  # warm-up: packing, thread pool, page faults
            call()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for name, call in paths.items():
                start = time.perf_counter()
                for _ in range(3):
                    call()
                rate = 3 * flops / (time.perf_counter() - start) / 1e9
                best[name] = max(best.get(name, 0.0), rate)
    fastest = max(best, key=best.__getitem__)
    return {
        "dtype": DTYPE_NAMES.get(dtype, str(dtype)),
        "shape": list(GEMM_SHAPE),
        "gflops": round(best[fastest], 1),
        "path": fastest,
        "paths": {name: round(rate, 1) for name, rate in best.items()},
    }


def gemm_peaks(seconds: float = 2.0) -> dict[str, dict[str, Any]]:
    """`gemm_peak` for every precision of `probe_dtypes`, keyed "fp32" / "bf16"."""
    return {DTYPE_NAMES[d]: gemm_peak(d, seconds) for d in probe_dtypes()}


def machine_info(peaks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """CPU model, kernel flags, cores, threads used, load, the torch build and the GEMM probe
    (measured now unless the benchmark measured it already and passes `peaks`)."""
    return {
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "gemm_peak": peaks if peaks is not None else gemm_peaks(),
    }


def command_line() -> str:
    """The benchmark's command line as a user would type it from the repository root."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(Path(__file__).resolve().parents[1])
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def write_results(
    name: str,
    payload: dict[str, Any],
    directory: Path = RESULTS_DIR,
    peaks: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write `payload` plus the machine record and the command that ran as
    `<directory>/<name>.json`; return the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    record = {"machine": machine_info(peaks), "command": command_line(), **payload}
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(f"results written to {path}")
    return path
