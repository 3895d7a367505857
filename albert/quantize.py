"""`albert.quantize(model)`: an int8 copy of a model for CPU inference in PyTorch.

Dynamic quantisation: every linear layer's weights are stored as int8 (per output channel)
ahead of time and activations are quantised on the fly per batch, so no calibration data is
needed. That covers ~all of the FLOPs of an ALBERT forward; attention scores, softmax, GELU and
LayerNorm stay fp32.

Two spots need more than `torch.ao.quantization.quantize_dynamic`:

* the fused Q/K/V projection: `AlbertAttention` concatenates the query/key/value weights per
  forward and calls `F.linear` on them, which a quantised `nn.Linear` (whose `.weight` is a
  method) cannot serve. The attention modules become `Int8AlbertAttention`, which holds the
  concatenated weights as one quantised linear layer (still one GEMM per layer);
* the MLM decoder is `F.linear` on the word-embedding matrix (tied weights), not an `nn.Linear`.
  `Int8AlbertMLMHead` gives it an int8 copy of that matrix (a quarter of its fp32 size); the
  embedding lookup keeps the fp32 table, so the copy unties the two - fine for inference, and
  why an int8 model refuses `save_pretrained`.

The original model is left untouched.
"""

from __future__ import annotations

import copy
import sys
import types
import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from albert.errors import AlbertError
from albert.modeling import AlbertAttention, AlbertMLMHead, AlbertPreTrainedModel

# measured on x86 with AVX2/AVX-512: fbgemm's int8 GEMM is the fastest of the available engines
PREFERRED_ENGINES = ("fbgemm", "x86", "onednn", "qnnpack")


def cpu_has_vnni() -> bool:
    """True where int8 dot products accumulate in 32 bits (AVX512-VNNI, AVX-VNNI, AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


class Int8Linear(DynamicLinear):
    """A dynamic int8 linear layer that quantises activations to the full 8 bits when it is safe.

    fbgemm's default (`reduce_range=True`) keeps activations to 7 bits, because AVX2's
    u8 x s8 multiply-add saturates 16-bit sums. With VNNI the sums are 32-bit, so that bit can be
    kept: on a fine-tuned sentiment model it halves int8's disagreement with fp32 (4.8 % -> 2.8 %
    of predictions) at the same speed."""

    reduce_range = not cpu_has_vnni()

    def forward(self, x: Tensor) -> Tensor:
        if self._packed_params.dtype != torch.qint8:
            return super().forward(x)
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=self.reduce_range).to(x.dtype)


def _dynamic_int8(linear: nn.Linear) -> nn.Module:
    """A dynamically quantised (int8 weights, per output channel) copy of one linear layer."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    linear.qconfig = per_channel_dynamic_qconfig
    return Int8Linear.from_float(linear)


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


class Int8AlbertAttention(AlbertAttention):
    """`AlbertAttention` whose fused Q/K/V and output projections are int8 linear layers."""

    qkv: nn.Module

    @classmethod
    def convert(cls, attention: AlbertAttention) -> Int8AlbertAttention:
        weight, bias = attention.fused_qkv()
        attention.__class__ = cls
        attention.qkv = _dynamic_int8(_linear(weight.detach(), bias.detach()))
        attention.dense = _dynamic_int8(attention.dense)
        del attention.query, attention.key, attention.value
        return attention  # type: ignore[return-value]

    def fused_qkv(self) -> tuple[Tensor, Tensor]:
        return torch.empty(0), torch.empty(0)  # the encoder's per-forward cache: nothing to fuse

    def project_qkv(self, x: Tensor, qkv: tuple[Tensor, Tensor] | None) -> Tensor:
        return self.qkv(x)


class Int8AlbertMLMHead(AlbertMLMHead):
    """`AlbertMLMHead` with an int8 copy of the tied decoder (word embeddings + bias)."""

    decoder: nn.Module

    @classmethod
    def convert(cls, head: AlbertMLMHead, word_embeddings: Tensor) -> Int8AlbertMLMHead:
        head.__class__ = cls
        head.decoder = _dynamic_int8(_linear(word_embeddings.detach(), head.bias.detach()))
        head.dense = _dynamic_int8(head.dense)
        return head  # type: ignore[return-value]

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden))))


def _refuse_save(*args: Any, **kwargs: Any) -> None:
    raise AlbertError(
        "an int8 model cannot be saved as a checkpoint; save the fp32 model and call "
        "albert.quantize() after loading it, or export with `albert export --int8`"
    )


def choose_engine(engine: str | None) -> str:
    supported = torch.backends.quantized.supported_engines
    if engine is None:
        engine = next(e for e in (*PREFERRED_ENGINES, supported[0]) if e in supported)
    if engine not in supported:
        raise AlbertError(
            f"quantized engine {engine!r} is not available here; choose one of: {', '.join(supported)}"
        )
    return engine


def quantize(model: AlbertPreTrainedModel, engine: str | None = None) -> AlbertPreTrainedModel:
    """An int8 copy of `model` (any head) for CPU inference; `model` itself is not modified.

    `engine` selects the int8 kernels (`torch.backends.quantized.engine`, set process-wide):
    fbgemm/x86 on x86 CPUs, qnnpack on ARM. The copy runs on CPU in eval mode only.
    """
    if not isinstance(model, AlbertPreTrainedModel):
        raise AlbertError(f"quantize() takes an ALBERT model, got {type(model).__name__}")
    torch.backends.quantized.engine = choose_engine(engine)
    int8 = copy.deepcopy(model).cpu().eval()
    word_embeddings = int8.get_input_embeddings().weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notes
        for module in list(int8.modules()):
            if isinstance(module, AlbertAttention):
                Int8AlbertAttention.convert(module)
            elif isinstance(module, AlbertMLMHead):
                Int8AlbertMLMHead.convert(module, word_embeddings)
        from torch.ao.quantization import per_channel_dynamic_qconfig

        int8 = torch.ao.quantization.quantize_dynamic(
            int8,
            {nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            mapping={nn.Linear: Int8Linear},
            inplace=True,
        )
    for parameter in int8.parameters():
        parameter.requires_grad_(False)
    int8.save_pretrained = _refuse_save  # type: ignore[method-assign]
    return int8


class _CallableModule(types.ModuleType):
    """`albert.quantize` is this module once it has been imported (Python binds submodules as
    package attributes); making the module callable keeps `albert.quantize(model)` working."""

    def __call__(self, model: AlbertPreTrainedModel, engine: str | None = None) -> AlbertPreTrainedModel:
        return quantize(model, engine)


sys.modules[__name__].__class__ = _CallableModule
