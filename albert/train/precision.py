"""Numeric precision (fp32 / bf16 autocast / fp16 + loss scaling) chosen from the hardware."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from albert.errors import AlbertError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class Precision:
    """Autocast dtype (None = plain fp32) and whether fp16 loss scaling is needed."""

    name: str
    dtype: torch.dtype | None

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto`: bf16 on GPUs that run it fast, fp16 (+ GradScaler) on older GPUs, fp32 on CPUs
    (CPUs without AMX/AVX512-BF16 run bf16 matmuls far slower than fp32)."""
    if name not in PRECISIONS:
        raise AlbertError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "fp32"
    if name == "fp16" and device.type != "cuda":
        raise AlbertError("fp16 mixed precision needs a CUDA GPU; use --precision bf16 or fp32 on CPUs")
    return Precision(name, {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name])
