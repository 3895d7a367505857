"""What the CPU computes natively, and the inference precision chosen from it.

`native_bf16()` asks torch's CPU capability report whether bf16 GEMMs run on dedicated units
(AVX512-BF16 dot products or AMX tiles); without them bf16 is emulated and slower than fp32.
`choose_precision("auto")` therefore picks bf16 where the CPU has them and fp32 elsewhere;
"fp32" and "bf16" are explicit choices, and asking for bf16 on a CPU without native bf16 is an
error that suggests fp32. `cpu_has_vnni()` says whether int8 dot products add up in 32 bits,
which decides whether int8 weights may use all 8 bits (`albert.quantization`, `albert.export`).

The environment variable ``ALBERT_NATIVE_BF16`` overrides the detection: ``0`` behaves as a CPU
without native bf16 (the fp32 path everywhere "auto" is used), ``1`` as one with it. Tests use it
to exercise both paths on any machine.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from albert.errors import AlbertError

if TYPE_CHECKING:
    import torch

# torch is imported where it is used, so the CLIs that only name the choices (argparse, config
# checks, the torch-free ONNX server) can import this list without it
PRECISIONS = ("auto", "fp32", "bf16")
OVERRIDE = "ALBERT_NATIVE_BF16"


def bf16_units() -> list[str]:
    """The CPU's native bf16 units as torch reports them: "AVX512-BF16", "AMX" (may be empty)."""
    import torch

    units = []
    if torch.cpu._is_avx512_bf16_supported():
        units.append("AVX512-BF16")
    if torch.cpu._is_amx_tile_supported():
        units.append("AMX")
    return units


def cpu_has_vnni() -> bool:
    """True where int8 dot products accumulate in 32 bits (AVX512-VNNI, AVX-VNNI, AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def native_bf16() -> bool:
    """True where the CPU computes bf16 natively; ``ALBERT_NATIVE_BF16=0|1`` overrides it."""
    forced = os.environ.get(OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise AlbertError(f"{OVERRIDE} must be 0 or 1, not {forced!r}; unset it to detect the CPU")
    return bool(bf16_units())


def choose_precision(name: str = "auto") -> str:
    """The precision to run ("fp32" or "bf16") for a requested one ("auto", "fp32" or "bf16")."""
    if name not in PRECISIONS:
        raise AlbertError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}")
    if name == "fp32":
        return "fp32"
    if native_bf16():
        return "bf16"
    if name == "bf16":
        raise AlbertError(
            "this CPU has no native bf16 (neither AVX512-BF16 nor AMX), so bf16 would be emulated "
            "and slower than fp32; use fp32 (--precision fp32, or auto, which picks it here)"
        )
    return "fp32"


def describe_choice(requested: str, chosen: str) -> str:
    """One line saying which precision runs and why, e.g. for a CLI's stderr."""
    if requested != "auto":
        return f"precision {chosen} (requested)"
    if chosen == "bf16":
        units = ", ".join(bf16_units()) or f"{OVERRIDE}=1"
        return f"precision bf16 (auto: this CPU has native bf16: {units}; --precision fp32 to override)"
    return "precision fp32 (auto: this CPU has no native bf16)"


def torch_dtype(precision: str | torch.dtype) -> torch.dtype:
    """The torch dtype for a precision name ("auto" resolved by `choose_precision`) or a dtype."""
    import torch

    if isinstance(precision, torch.dtype):
        return precision
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[choose_precision(precision)]


def announce(command: str, line: str) -> None:
    """Print a command's precision line (`describe_choice`, or a training `Precision`'s
    description) as the one stderr line that says which precision runs."""
    print(f"albert {command}: {line}", file=sys.stderr, flush=True)


def announce_precision(command: str, requested: str, chosen: str) -> None:
    """Report a CLI's precision choice as one stderr line (once its model has loaded)."""
    announce(command, describe_choice(requested, chosen))
