"""Training precision (fp32 / bf16 autocast / fp16 + loss scaling) chosen from the hardware.

On CPUs the rule is inference's (`albert.hardware.choose_precision`): `auto` is bf16 where the
CPU has native bf16 units (AVX512-BF16 or AMX) and fp32 elsewhere; `bf16` on a CPU without them
is an error that offers fp32. On CUDA GPUs `auto` is bf16 where the GPU runs it, fp16 with loss
scaling on older ones.

bf16 and fp16 are mixed precision: the weights and the optimizer state stay fp32 (the "master"
copy, so small updates are not rounded away and checkpoints hold fp32 weights), and
`torch.autocast` runs the matrix products in the low precision. LayerNorm runs in fp32 (see
`albert.modeling.layer_norm`), so the residual stream between blocks is fp32; the attention
softmax inside the fused kernel accumulates in fp32, and the losses (cross-entropy, KL, MSE)
are computed on fp32 logits.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from albert.errors import AlbertError
from albert.hardware import PRECISIONS as CPU_PRECISIONS
from albert.hardware import choose_precision, describe_choice

PRECISIONS = (*CPU_PRECISIONS, "fp16")  # fp16: CUDA GPUs only
DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """Autocast dtype (None = plain fp32) and whether fp16 loss scaling is needed; `description`
    says which precision was chosen and why (one line for the user)."""

    name: str
    dtype: torch.dtype | None
    description: str = ""

    @property
    def needs_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """The precision to train in on `device` for a requested one ("auto", "fp32", "bf16", "fp16")."""
    if name not in PRECISIONS:
        raise AlbertError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        if name == "fp16":
            raise AlbertError("fp16 mixed precision needs a CUDA GPU; use --precision bf16 or fp32 on CPUs")
        chosen = choose_precision(name)
        return Precision(chosen, DTYPES[chosen], describe_choice(name, chosen))
    if name != "auto":
        return Precision(name, DTYPES[name], f"precision {name} (requested)")
    if torch.cuda.is_bf16_supported():
        return Precision("bf16", torch.bfloat16, "precision bf16 (auto: this GPU runs bf16)")
    return Precision(
        "fp16", torch.float16, "precision fp16 (auto: this GPU has no fast bf16; loss scaling on)"
    )
