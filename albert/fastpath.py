"""The inference fast path: oneDNN GEMMs with each weight packed once and GELU/ReLU fused.

At CPU inference (no autograd, no tracing, exporting or compiling, which must see the plain
graph) a linear layer runs as `torch.ops.mkldnn._linear_pointwise` on a copy of its weight that
was reordered into oneDNN's blocked layout once, instead of being re-laid-out on every call,
with the activation applied inside the GEMM. The packed copy has the layer's own dtype: fp32
weights give fp32 GEMMs, bf16 weights (a model loaded with ``dtype="bf16"``) bf16 GEMMs, which
run on AVX512-BF16 / AMX units where the CPU has them; on a CPU where oneDNN has no bf16 GEMM at
all (AVX2 only) bf16 models take the plain PyTorch ops.

The model asks three things (see `albert.modeling`): `applies(x)`, whether to take this path for
an activation `x`; `linear(layer, x, activation)` for one `nn.Linear`; `fused_linear(owner, x,
make)` for a weight assembled from several parameters (the fused Q/K/V projection). Packed copies
are cached on their owner module and rebuilt when a source parameter changes; `drop_packed`
forgets them. ``ALBERT_DISABLE_ONEDNN=1`` turns the path off (the plain PyTorch ops run instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import Tensor, nn

# activation name (transformers' config names) -> oneDNN post-op (name, algorithm)
POST_OPS: dict[str | None, tuple[str, str]] = {
    None: ("none", ""),
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_fast": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}


def _onednn_runs_bf16() -> bool:
    """Whether oneDNN has a bf16 GEMM on this CPU (AVX512-BW/VL/DQ or AVX-NE-CONVERT). Without
    one, packing a bf16 weight raises, so bf16 models take the plain PyTorch ops instead."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


PACKED_DTYPES = (torch.float32, torch.bfloat16) if _onednn_runs_bf16() else (torch.float32,)
ENABLED = (
    os.environ.get("ALBERT_DISABLE_ONEDNN", "") in ("", "0")
    and torch.backends.mkldnn.is_available()
    and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
)
_CACHE = "_packed_cache"


def applies(x: Tensor) -> bool:
    """CPU inference in fp32 or bf16 only: never with autograd, tracing, exporting or compiling,
    nor under autocast (the packed GEMM would run in the weights' dtype, not autocast's)."""
    return (
        ENABLED
        and x.device.type == "cpu"
        and x.dtype in PACKED_DTYPES
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def can_fuse(layer: nn.Module, x: Tensor, activation: str | None) -> bool:
    """Whether `linear(layer, x, activation)` can serve `activation(layer(x))`: a plain
    `nn.Linear` of `x`'s dtype, an activation oneDNN fuses, and `applies(x)`."""
    return (
        type(layer) is nn.Linear and activation in POST_OPS and layer.weight.dtype == x.dtype and applies(x)
    )


def linear(layer: nn.Linear, x: Tensor, activation: str | None = None) -> Tensor:
    """`activation(layer(x))` as one oneDNN call on the packed weight (check `can_fuse` first)."""
    weight, bias = _packed(layer, lambda: (layer.weight, layer.bias))
    post_op, algorithm = POST_OPS[activation]
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], algorithm)


def fused_linear(owner: nn.Module, x: Tensor, make: Callable[[], tuple[Tensor, Tensor]]) -> Tensor:
    """`F.linear(x, *make())` with `make()`'s weight packed once and cached on `owner` (rebuilt
    when any of `owner`'s parameters changes). For weights assembled from several parameters."""
    weight, bias = _packed(owner, make)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def drop_packed(model: nn.Module) -> None:
    """Forget every packed copy under `model`, so none can outlive a change made behind
    autograd's back (e.g. through `param.data`)."""
    for module in model.modules():
        module.__dict__.pop(_CACHE, None)


def _packed(
    owner: nn.Module, make: Callable[[], tuple[Tensor, Tensor | None]]
) -> tuple[Tensor, Tensor | None]:
    """`make()`'s (weight, bias), the weight reordered for oneDNN; cached on `owner` and rebuilt
    whenever one of its parameters is modified or replaced (version counter or storage)."""
    key = tuple((p._version, p.data_ptr(), p.dtype) for p in owner.parameters())
    cached = owner.__dict__.get(_CACHE)
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            weight, bias = make()
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 128)
            cached = (key, packed, None if bias is None else bias.clone())
        owner.__dict__[_CACHE] = cached
    return cached[1], cached[2]
