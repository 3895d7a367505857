"""Quantisation, `albert.quantize(model)`: an int8 copy of a model for CPU inference in PyTorch.

Dynamic quantisation: every linear layer's weights are stored as int8 (per output channel)
ahead of time and activations are quantised on the fly per batch, so no calibration data is
needed. That covers ~all of the FLOPs of an ALBERT forward; attention scores, softmax, GELU and
LayerNorm stay fp32.

Two spots need more than `torch.ao.quantization.quantize_dynamic`:

* the fused Q/K/V projection: `AlbertAttention` concatenates the query/key/value weights per
  forward and calls `F.linear` on them, which a quantised `nn.Linear` (whose `.weight` is a
  method) cannot serve. Each attention module is replaced by an `Int8AlbertAttention`, which
  holds the concatenated weights as one int8 linear layer (still one GEMM per layer);
* the MLM decoder is `F.linear` on the word-embedding matrix (tied weights), not an `nn.Linear`.
  The head is replaced by an `Int8AlbertMLMHead` with an int8 copy of that matrix (a quarter of
  its fp32 size); the embedding lookup keeps the fp32 table, so the copy unties the two - fine
  for inference, and one reason an int8 model cannot be saved as a checkpoint
  (`save_pretrained` refuses any model holding quantized weights).

The int8 model is a copy of the original with these modules swapped in (and every other
`nn.Linear` replaced by an `Int8Linear`); the original is left untouched.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from albert.config import AlbertConfig
from albert.errors import AlbertError
from albert.hardware import cpu_has_vnni
from albert.modeling import AlbertAttention, AlbertMLMHead, AlbertPreTrainedModel

# measured on x86 with AVX2/AVX-512: fbgemm's int8 GEMM is the fastest of the available engines; on an
# AMX/VNNI Xeon onednn (which can use AMX-INT8) ran the albert-base forward no faster, so fbgemm stays first
PREFERRED_ENGINES = ("fbgemm", "x86", "onednn", "qnnpack")


class Int8Linear(DynamicLinear):
    """A dynamic int8 linear layer that quantises activations to the full 8 bits when it is safe.

    fbgemm's default (`reduce_range=True`) keeps activations to 7 bits, because AVX2's
    u8 x s8 multiply-add saturates 16-bit sums. With VNNI the sums are 32-bit, so that bit can be
    kept, which brings int8's predictions closer to fp32's at the same speed
    (`benchmarks/bench_precision.py --accuracy` measures the agreement on a fine-tuned model)."""

    reduce_range = not cpu_has_vnni()

    def forward(self, x: Tensor) -> Tensor:
        if self._packed_params.dtype != torch.qint8:
            return super().forward(x)
        packed = self._packed_params._packed_params
        return torch.ops.quantized.linear_dynamic(x, packed, reduce_range=self.reduce_range).to(x.dtype)


def _dynamic_int8(linear: nn.Linear) -> Int8Linear:
    """A dynamically quantised (int8 weights, per output channel) copy of one linear layer."""
    linear.qconfig = per_channel_dynamic_qconfig
    return Int8Linear.from_float(linear)


def _int8_linear(weight: Tensor, bias: Tensor) -> Int8Linear:
    """An int8 linear layer computing `x @ weight.T + bias`."""
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return _dynamic_int8(layer)


class Int8AlbertAttention(AlbertAttention):
    """`AlbertAttention` whose fused Q/K/V and output projections are int8 linear layers: the
    attention itself (scores, softmax, residual, LayerNorm) is the fp32 module's, unchanged."""

    def __init__(self, config: AlbertConfig, fp32: AlbertAttention) -> None:
        super().__init__(config)
        weight, bias = fp32.fused_qkv()
        del self.query, self.key, self.value  # served by the one int8 Q/K/V layer
        self.qkv = _int8_linear(weight.detach(), bias.detach())
        self.dense = _dynamic_int8(fp32.dense)
        self.LayerNorm.load_state_dict(fp32.LayerNorm.state_dict())

    def fused_qkv(self) -> tuple[Tensor, Tensor]:
        return torch.empty(0), torch.empty(0)  # the encoder's per-forward cache: nothing to fuse

    def project_qkv(self, x: Tensor, qkv: tuple[Tensor, Tensor] | None) -> Tensor:
        return self.qkv(x)


class Int8AlbertMLMHead(AlbertMLMHead):
    """`AlbertMLMHead` with an int8 dense layer and an int8 copy of the tied decoder (word
    embeddings + bias)."""

    def __init__(self, config: AlbertConfig, fp32: AlbertMLMHead, word_embeddings: Tensor) -> None:
        super().__init__(config)
        self.load_state_dict(fp32.state_dict())
        self.dense = _dynamic_int8(fp32.dense)
        self.decoder = _int8_linear(word_embeddings.detach(), fp32.bias.detach())

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden))))


def choose_engine(engine: str | None) -> str:
    supported = torch.backends.quantized.supported_engines
    if engine is None:
        engine = next(e for e in (*PREFERRED_ENGINES, supported[0]) if e in supported)
    if engine not in supported:
        raise AlbertError(
            f"quantized engine {engine!r} is not available here; choose one of: {', '.join(supported)}"
        )
    return engine


@contextmanager
def _quantized_engine(engine: str) -> Iterator[None]:
    """Pack int8 weights for `engine`'s kernels. torch reads the engine from a process-wide
    setting when weights are packed (a packed layer then keeps its kernels); it is restored after."""
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def _swap_int8_modules(model: AlbertPreTrainedModel) -> None:
    """Replace every attention module and MLM head of `model` (in place) by its int8 class."""
    word_embeddings = model.get_input_embeddings().weight
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, AlbertAttention):
                setattr(parent, name, Int8AlbertAttention(model.config, child))
            elif isinstance(child, AlbertMLMHead):
                setattr(parent, name, Int8AlbertMLMHead(model.config, child, word_embeddings))


def quantize(model: AlbertPreTrainedModel, engine: str | None = None) -> AlbertPreTrainedModel:
    """An int8 copy of `model` (any head) for CPU inference; `model` itself is not modified.

    `engine` selects the int8 kernels the weights are packed for (see `torch.backends.quantized`):
    fbgemm/x86 on x86 CPUs, qnnpack on ARM. The copy runs on CPU in eval mode only and cannot
    be saved as a checkpoint (save the fp32 model; quantise after loading it).
    """
    if not isinstance(model, AlbertPreTrainedModel):
        raise AlbertError(f"quantize() takes an ALBERT model, got {type(model).__name__}")
    model.train(model.training)  # same mode; drops inference caches (oneDNN packed weights): not copyable
    int8 = copy.deepcopy(model).cpu().eval()
    with _quantized_engine(choose_engine(engine)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization deprecation notes
        _swap_int8_modules(int8)
        quantize_dynamic(
            int8,
            {nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
            mapping={nn.Linear: Int8Linear},
            inplace=True,
        )
    int8.requires_grad_(False)
    return int8.eval()
