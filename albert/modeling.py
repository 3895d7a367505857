"""The ALBERT model, top to bottom, in one file.

ALBERT = BERT with three changes (Lan et al. 2019, arXiv:1909.11942):
  1. factorised embeddings: tokens are embedded in E dimensions and projected to H (V*E + E*H
     parameters instead of V*H);
  2. cross-layer parameter sharing: one block's parameters serve all L layers
     (`config.share` also offers the paper's attention-only / FFN-only / no sharing ablations,
     and `num_hidden_groups` x `inner_group_num` gives grouped sharing);
  3. a sentence-order-prediction (SOP) head next to the masked-LM head.

State-dict names, forward arguments and output fields follow transformers'
`modeling_albert.py`, so checkpoints move both ways. Blocks are post-LN as in the paper;
attention runs through `torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from albert import fastpath, hardware
from albert.checkpoint import load_model, save_model
from albert.config import AlbertConfig
from albert.errors import AlbertError
from albert.hub import ModelSpec

# ----------------------------------------------------------------------------------------
# activations (by the names transformers' configs use)


def _gelu_new(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_new,
    "gelu_fast": _gelu_new,
    "gelu_pytorch_tanh": _gelu_new,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "relu": F.relu,
    "relu6": F.relu6,
    "silu": F.silu,
    "swish": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "linear": lambda x: x,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise AlbertError(f"unknown hidden_act {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def linear(layer: nn.Module, x: Tensor, activation: str | None = None) -> Tensor:
    """`activation(layer(x))`; at CPU inference one oneDNN call on a packed weight (`albert.fastpath`)."""
    if fastpath.can_fuse(layer, x, activation):
        return fastpath.linear(layer, x, activation)
    out = layer(x)
    return get_activation(activation)(out) if activation is not None else out


def layer_norm(layer: nn.LayerNorm, x: Tensor) -> Tensor:
    """`layer(x)` at the weights' precision (fp32 in mixed-precision training): CPU autocast would
    normalise a bf16 input in bf16, and the residual stream that leaves each block would follow."""
    if x.dtype != layer.weight.dtype and torch.is_autocast_enabled(x.device.type):
        x = x.to(layer.weight.dtype)
    return layer(x)


# ----------------------------------------------------------------------------------------
# outputs: dataclasses with transformers' field names; `out[0]`, `out["logits"]` and
# `out.to_tuple()` work as in transformers (None fields are skipped).


class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)  # type: ignore[arg-type]

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_tuple())


OutputT = TypeVar("OutputT", bound=ModelOutput)


@dataclass
class BaseModelOutputWithPooling(ModelOutput):
    last_hidden_state: Tensor
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class AlbertForPreTrainingOutput(ModelOutput):
    loss: Tensor | None = None
    prediction_logits: Tensor | None = None
    sop_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    mlm_loss: Tensor | None = None
    sop_loss: Tensor | None = None


@dataclass
class MaskedLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


SequenceClassifierOutput = TokenClassifierOutput = MultipleChoiceModelOutput = MaskedLMOutput


@dataclass
class QuestionAnsweringModelOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


# ----------------------------------------------------------------------------------------
# building blocks


class AlbertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, all of width E (the factorised size); with
    `embedding_projection="word_only"` (albert_zh) only the word vectors are E-wide and are
    projected to H before the H-wide position and token-type vectors are added."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        word_only = config.embedding_projection == "word_only"
        width = config.hidden_size if word_only else config.embedding_size
        self.word_projection = (
            nn.Linear(config.embedding_size, config.hidden_size, bias=False) if word_only else None
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def decoder_weight(self) -> Tensor:
        """The MLM decoder matrix: the word embeddings, composed with the word projection when
        there is one (so the MLM head's H-wide output reaches the vocabulary)."""
        if self.word_projection is None:
            return self.word_embeddings.weight
        return self.word_embeddings.weight @ self.word_projection.weight.T

    def forward(
        self,
        input_ids: Tensor | None,
        token_type_ids: Tensor | None,
        position_ids: Tensor | None,
        inputs_embeds: Tensor | None,
    ) -> Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if self.word_projection is not None:
            inputs_embeds = self.word_projection(inputs_embeds)
        seq_len = inputs_embeds.shape[1]
        if seq_len > self.position_embeddings.num_embeddings:
            raise AlbertError(
                f"sequence of {seq_len} tokens is longer than max_position_embeddings="
                f"{self.position_embeddings.num_embeddings}; truncate the input (e.g. truncation=True)"
            )
        if position_ids is None:
            positions = self.position_embeddings.weight[:seq_len].unsqueeze(0)
        else:
            positions = self.position_embeddings(position_ids)
        if token_type_ids is None:
            types = self.token_type_embeddings.weight[0]
        else:
            types = self.token_type_embeddings(token_type_ids)
        return self.dropout(layer_norm(self.LayerNorm, inputs_embeds + types + positions))


class AlbertAttention(nn.Module):
    """Multi-head self-attention with the residual and post-LayerNorm (the paper's block)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)
        # Where the projected queries|keys|values (batch, seq, 3 * hidden) pass: a forward hook on
        # this module reads them (distillation does), whatever path computed them. No parameters.
        self.qkv_output = nn.Identity()
        self.pre_norm = config.layer_norm_position == "pre"

    def fused_qkv(self) -> tuple[Tensor, Tensor]:
        """Q, K and V weights as one matrix: one GEMM instead of three. With cross-layer
        sharing the concatenation is done once per forward and reused by every layer."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        return weight, bias

    def project_qkv(self, x: Tensor, qkv: tuple[Tensor, Tensor] | None) -> Tensor:
        """(batch, seq, 3 * hidden): queries, keys and values in one product."""
        if fastpath.applies(x):
            return fastpath.fused_linear(self, x, self.fused_qkv)
        weight, bias = qkv if qkv is not None else self.fused_qkv()
        return F.linear(x, weight, bias)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        qkv: tuple[Tensor, Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        batch, seq_len, hidden = x.shape
        h = layer_norm(self.LayerNorm, x) if self.pre_norm else x  # pre-LN normalises the block's input
        dropout = self.attention_dropout if self.training else 0.0
        probs = None
        if not output_attentions and ProjectedAttention.applies(self, h, dropout):
            weight, bias = qkv if qkv is not None else self.fused_qkv()
            context = ProjectedAttention.apply(h, weight, bias, mask, self.num_heads)
        else:
            projected = self.qkv_output(self.project_qkv(h, qkv))
            q, k, v = projected.view(batch, seq_len, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
            # SDPA does not expose the probabilities, and its bf16 CPU backward is slow: explicit then
            if output_attentions or explicit_attention_is_faster(q):
                probs = attention_probabilities(q, k, mask)
                context = F.dropout(probs, dropout, self.training) @ v
            else:
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
            context = context.transpose(1, 2).reshape(batch, seq_len, hidden)
        if self.pre_norm:
            return x + self.output_dropout(linear(self.dense, context)), probs
        return layer_norm(self.LayerNorm, x + self.output_dropout(linear(self.dense, context))), probs


class ProjectedAttention(torch.autograd.Function):
    """`scaled_dot_product_attention` of Q|K|V = x W^T + b (the fused projection), for fp32
    training on CPU, as one autograd node that returns the (batch, seq, hidden) context.

    Through autograd's chain (linear -> view/permute into Q, K, V -> SDPA) the attention
    kernel's three gradients come back as separate tensors and are stacked and reordered into
    the projection's (batch, seq, 3 * hidden) gradient: two copies of it per layer application.
    Here each of the three feeds the weight, bias and input gradients directly: three products
    a third as wide instead of one, the same FLOPs, no copy. Forward and backward run the same
    fused CPU attention kernel SDPA picks for fp32 (`_scaled_dot_product_flash_attention_for_cpu`),
    with a padding mask turned into the additive 0 / -inf mask SDPA makes of a boolean one.
    """

    @staticmethod
    def applies(attention: AlbertAttention, x: Tensor, dropout: float) -> bool:
        """fp32 training on CPU (autograd on, no autocast, tracing or compiling), no attention
        dropout (the fused kernel has none), plain `nn.Linear` projections, and nothing
        listening on `qkv_output` (the projections never exist as one tensor here)."""
        return (
            ENABLED_PROJECTED_ATTENTION
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and dropout == 0.0
            and eager_training(x)
            and all(type(p) is nn.Linear for p in (attention.query, attention.key, attention.value))
            and not attention.qkv_output._forward_hooks
            and not attention.qkv_output._forward_pre_hooks
        )

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, mask: Tensor | None, num_heads: int
    ) -> Tensor:
        batch, seq_len, hidden = x.shape
        projected = F.linear(x, weight, bias)
        q, k, v = projected.view(batch, seq_len, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
        if mask is not None:  # what SDPA does with a boolean mask
            mask = torch.where(mask, 0.0, float("-inf")).to(x.dtype)
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask)
        ctx.save_for_backward(x, weight, projected, out, logsumexp, mask)
        ctx.num_heads = num_heads
        # `out` is laid out (batch, seq, heads, head size): this reshape is a view
        return out.transpose(1, 2).reshape(batch, seq_len, hidden)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight, projected, out, logsumexp, mask = ctx.saved_tensors
        need_x, need_weight, need_bias, _, _ = ctx.needs_input_grad
        batch, seq_len, hidden = x.shape
        q, k, v = projected.view(batch, seq_len, 3, ctx.num_heads, -1).permute(2, 0, 3, 1, 4)
        grad_out = grad.reshape(batch, seq_len, ctx.num_heads, -1).transpose(1, 2)
        grads = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            grad_out, q, k, v, out, logsumexp, 0.0, False, attn_mask=mask
        )
        # each gradient is laid out (batch, seq, heads, head size): (tokens, hidden) is a view
        flat = [g.transpose(1, 2).reshape(-1, hidden) for g in grads]
        parts = [slice(i * hidden, (i + 1) * hidden) for i in range(3)]
        grad_x = grad_weight = grad_bias = None
        if need_x:
            grad_x = flat[0] @ weight[parts[0]]
            for g, part in zip(flat[1:], parts[1:], strict=True):
                grad_x.addmm_(g, weight[part])
            grad_x = grad_x.view(batch, seq_len, hidden)
        if need_weight:
            grad_weight = weight.new_empty(weight.shape)
            flat_x = x.reshape(-1, hidden)
            for g, part in zip(flat, parts, strict=True):
                torch.mm(g.T, flat_x, out=grad_weight[part])
        if need_bias:
            grad_bias = torch.cat([g.sum(0) for g in flat])
        return grad_x, grad_weight, grad_bias, None, None


ENABLED_PROJECTED_ATTENTION = hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward")


def attention_probabilities(q: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    """softmax(q k^T / sqrt(d)) over the unmasked keys, normalised in fp32, returned in q's dtype.

    The scale is applied to `q` (seq x head size) rather than to the scores (seq x seq): a
    fifth of the elements at albert-tiny's head size of 26. The softmax upcasts: torch's softmax
    on bf16 scores gives the same probabilities bit for bit without the upcast copies, but its
    backward pass then works from bf16-rounded probabilities, which moved a bf16 fine-tuning
    result measurably. Without autograd there is no backward pass, so there it skips the copies."""
    scores = (q * (1 / math.sqrt(q.shape[-1]))) @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    if not torch.is_grad_enabled():
        return scores.softmax(-1)
    return scores.float().softmax(-1).to(q.dtype)


def explicit_attention_is_faster(q: Tensor) -> bool:
    """bf16 on CPU: there two batched products and a softmax (which computes in fp32 and stores
    bf16) beat `scaled_dot_product_attention`. In training its bf16 CPU backward is 3-4x slower
    at ALBERT's head sizes (26 and 64: albert-tiny's attention fwd+bwd 194 ms vs 49 ms per layer
    at 32x128, albert-base's 49 vs 14 at 8x128); in inference its bf16 forward is no faster than
    its fp32 one (albert-base, 8x128, AMD EPYC with AVX512-BF16: 3.8 ms per layer in either,
    explicit bf16 2.0 ms, 2.5 ms with a padding mask). fp32 keeps SDPA."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu"


class AlbertLayer(nn.Module):
    """One transformer block: attention, then FFN with residual and post-LayerNorm.

    Under partial sharing (`share="attention"` / `"ffn"`) a block holds only its shared half
    and per-layer blocks hold the other half; `has_attention` / `has_ffn` say which.
    """

    def __init__(self, config: AlbertConfig, has_attention: bool = True, has_ffn: bool = True) -> None:
        super().__init__()
        if has_attention:
            self.attention = AlbertAttention(config)
        if has_ffn:
            self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
            self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
            self.activation_name = config.hidden_act
            get_activation(config.hidden_act)  # unknown names fail here, at construction
            # transformers' port skips this dropout; the original TF ALBERT applies it.
            self.dropout = nn.Dropout(config.hidden_dropout_prob)
            self.pre_norm = config.layer_norm_position == "pre"

    def forward(self, x: Tensor) -> Tensor:
        """The block's feed-forward half (FFN, residual, LayerNorm). The encoder calls the attention
        half, `self.attention`, first: under partial sharing the two halves of one layer live
        in different blocks, so the encoder pairs them (`AlbertTransformer.layer_plan`)."""
        if self.pre_norm:
            return x + self.dropout(self.feed_forward(layer_norm(self.full_layer_layer_norm, x)))
        return layer_norm(self.full_layer_layer_norm, x + self.dropout(self.feed_forward(x)))

    def feed_forward(self, x: Tensor) -> Tensor:
        """`ffn_output(activation(ffn(x)))`; in training as one autograd node that keeps less."""
        if FeedForward.applies(self, x):
            return FeedForward.apply(
                x, self.ffn.weight, self.ffn.bias, self.ffn_output.weight, self.ffn_output.bias,
                GELU_APPROXIMATIONS[self.activation_name],
            )  # fmt: skip
        return linear(self.ffn_output, linear(self.ffn, x, self.activation_name))


# the GELUs FeedForward recomputes: activation name -> F.gelu's `approximate`
GELU_APPROXIMATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh"}


def eager_training(x: Tensor) -> bool:
    """Autograd on, no autocast on x's device, neither tracing nor compiling: where a hand-written
    autograd node (`FeedForward`, `ProjectedAttention`) may stand in for the plain chain, which
    tracing and compiling must see and autocast must cast."""
    return (
        torch.is_grad_enabled()
        and not torch.is_autocast_enabled(x.device.type)
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _autocast_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a matrix product of `x` in (x's own when autocast is off)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class FeedForward(torch.autograd.Function):
    """The FFN `W2 gelu(W1 x + b1) + b2` for fp32 training, keeping only `x` and the
    pre-activation `h = W1 x + b1` for the backward pass and recomputing `gelu(h)` there.

    Autograd's chain keeps `gelu(h)` as well, for W2's gradient: an intermediate-size tensor per
    layer application, with ALBERT's shared layers the largest activation there is (albert-base
    at 8x128: 12 x 12.6 MB). The recompute costs one elementwise pass, which the backward wins
    back by applying gelu'(h) in place. Same products and the same GELU as the plain path, so the
    same values. Under autocast the plain chain runs: there the products are several times
    faster, the recompute would be 5-8 % of a step, and the saved tensors are half as big anyway.
    """

    @staticmethod
    def applies(layer: AlbertLayer, x: Tensor) -> bool:
        """Training (autograd on; no autocast; no tracing or compiling, which must see the plain
        graph) of plain `nn.Linear` layers with a GELU."""
        return (
            eager_training(x)
            and layer.activation_name in GELU_APPROXIMATIONS
            and type(layer.ffn) is nn.Linear
            and type(layer.ffn_output) is nn.Linear
        )

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, approximate: str
    ) -> Tensor:
        h = F.linear(x, w1, b1)
        ctx.save_for_backward(x, w1, w2, h)
        ctx.approximate = approximate
        return F.linear(F.gelu(h, approximate=approximate), w2, b2)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, w1, w2, h = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad
        flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w2 = grad_b2 = None
        if need_w2:
            activated = F.gelu(h, approximate=ctx.approximate)
            grad_w2 = flat_grad.T @ activated.reshape(-1, h.shape[-1])
            del activated
        if need_b2:
            grad_b2 = flat_grad.sum(0)
        grad_h = grad_out @ w2  # then, in place, times gelu'(h): no second intermediate-size buffer
        torch.ops.aten.gelu_backward.grad_input(grad_h, h, approximate=ctx.approximate, grad_input=grad_h)
        flat_grad_h = grad_h.reshape(-1, h.shape[-1])
        return (
            grad_h @ w1 if need_x else None,
            flat_grad_h.T @ x.reshape(-1, x.shape[-1]) if need_w1 else None,
            flat_grad_h.sum(0) if need_b1 else None,
            grad_w2,
            grad_b2,
            None,
        )


class AlbertLayerGroup(nn.Module):
    def __init__(self, config: AlbertConfig, has_attention: bool, has_ffn: bool) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList(
            AlbertLayer(config, has_attention, has_ffn) for _ in range(config.inner_group_num)
        )


class AlbertTransformer(nn.Module):
    """The E->H projection and the L layers, which reuse `num_hidden_groups` shared groups."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = (
            nn.Linear(config.embedding_size, config.hidden_size)
            if config.embedding_projection == "after_sum"
            else nn.Identity()  # "word_only": the embeddings are already H-wide
        )
        share_attention = config.share in ("all", "attention", "none")  # "none": one group per layer
        share_ffn = config.share in ("all", "ffn", "none")
        self.albert_layer_groups = nn.ModuleList(
            AlbertLayerGroup(config, share_attention, share_ffn) for _ in range(config.num_hidden_groups)
        )
        if not (share_attention and share_ffn):  # partial sharing: the unshared halves, per layer
            count = config.num_hidden_layers * config.inner_group_num
            self.unshared_layers = nn.ModuleList(
                AlbertLayer(config, not share_attention, not share_ffn) for _ in range(count)
            )
        self.gradient_checkpointing = False

    def layer_plan(self) -> list[tuple[AlbertLayer, AlbertLayer]]:
        """(attention owner, FFN owner) for each of the L x inner_group_num layer applications."""
        config = self.config
        plan = []
        for i in range(config.num_hidden_layers):
            # transformers' float formula, kept verbatim so uneven group splits agree
            group = int(i / (config.num_hidden_layers / config.num_hidden_groups))
            for j, shared in enumerate(self.albert_layer_groups[group].albert_layers):
                own = (
                    self.unshared_layers[i * config.inner_group_num + j]
                    if hasattr(self, "unshared_layers")
                    else shared
                )
                plan.append(
                    (
                        shared if hasattr(shared, "attention") else own,
                        shared if hasattr(shared, "ffn") else own,
                    )
                )
        return plan

    def forward(
        self, embeddings: Tensor, mask: Tensor | None, output_hidden_states: bool, output_attentions: bool
    ) -> tuple[Tensor, tuple[Tensor, ...] | None, tuple[Tensor, ...] | None]:
        x = self.embedding_hidden_mapping_in(embeddings)
        all_hidden = [x] if output_hidden_states else None
        all_attentions: list[Tensor] | None = [] if output_attentions else None
        fused: dict[int, tuple[Tensor, Tensor]] = {}
        for attention_owner, ffn_owner in self.layer_plan():
            attention = attention_owner.attention
            if id(attention) not in fused and not fastpath.applies(x):
                fused[id(attention)] = attention.fused_qkv()
            qkv = fused.get(id(attention))
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(
                    lambda h, a=attention, f=ffn_owner, w=qkv: f(a(h, mask, w)[0]),
                    x,
                    use_reentrant=False,
                )
                probs = None
            else:
                x, probs = attention(x, mask, qkv, output_attentions)
                x = ffn_owner(x)
            if all_hidden is not None:
                all_hidden.append(x)
            if all_attentions is not None and probs is not None:
                all_attentions.append(probs)
        return (
            x,
            tuple(all_hidden) if all_hidden is not None else None,
            tuple(all_attentions) if all_attentions is not None else None,
        )


class AlbertMLMHead(nn.Module):
    """H -> E -> vocabulary; the decoder is the (tied) word-embedding matrix plus a bias."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        # albert_zh ("word_only") transforms at width H, then maps back through its projection
        width = config.hidden_size if config.embedding_projection == "word_only" else config.embedding_size
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = nn.Linear(config.hidden_size, width)
        self.activation = get_activation(config.hidden_act)

    def transform(self, hidden: Tensor) -> Tensor:
        """The part before the vocabulary projection: dense, activation, LayerNorm."""
        return layer_norm(self.LayerNorm, self.activation(self.dense(hidden)))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        return F.linear(self.transform(hidden), word_embeddings, self.bias)


class AlbertSOPHead(nn.Module):
    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(_classifier_dropout(config))
        # transformers sizes this by num_labels (2 for every published checkpoint); keep its shape
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(self.dropout(pooled))


def _classifier_dropout(config: AlbertConfig) -> float:
    p = config.classifier_dropout_prob
    return config.hidden_dropout_prob if p is None else p


def attention_mask_for_sdpa(attention_mask: Tensor | None) -> Tensor | None:
    """(batch, seq) 1/0 padding mask -> boolean (batch, 1, 1, seq), or None when nothing is
    padded, which lets SDPA take its fastest kernel."""
    if attention_mask is None:
        return None
    if not torch.jit.is_tracing() and not torch.compiler.is_compiling() and bool(attention_mask.all()):
        return None
    return attention_mask.bool()[:, None, None, :]


# ----------------------------------------------------------------------------------------
# base class: weights init, save/load


class AlbertPreTrainedModel(nn.Module):
    base_model_prefix = "albert"
    config: AlbertConfig

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        if not isinstance(config, AlbertConfig):
            raise AlbertError(f"expected an AlbertConfig, got {type(config).__name__}")
        self.config = config

    def train(self, mode: bool = True) -> AlbertPreTrainedModel:
        """Also drops the inference path's packed weights, so no stale copy can outlive a
        change made behind autograd's back (e.g. through `param.data`)."""
        fastpath.drop_packed(self)
        return super().train(mode)

    def post_init(self) -> None:
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation: N(0, initializer_range) weights, zero biases, unit LayerNorms."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, AlbertMLMHead):
            nn.init.zeros_(module.bias)

    @property
    def base_model(self) -> AlbertModel:
        return getattr(self, self.base_model_prefix, self)  # type: ignore[return-value]

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.get_input_embeddings().weight.numel()
        return total

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each layer in the backward pass: activation memory O(1) in depth."""
        self.base_model.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.encoder.gradient_checkpointing = False

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `config.json` + `model.safetensors` in the transformers layout."""
        save_model(self, Path(directory))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | ModelSpec,
        config: AlbertConfig | None = None,
        *,
        dtype: str | torch.dtype | None = None,
        **config_overrides: Any,
    ) -> AlbertPreTrainedModel:
        """Load a checkpoint directory written here or by transformers, or a hub name found in the
        local Hugging Face cache (`albert.hub.resolve` decides which; a preset name has no weights
        and says so). Keyword arguments override config fields. `dtype` ("auto", "fp32", "bf16" or
        a torch dtype; default: as stored) casts the weights, for inference: "auto" picks bf16 on
        CPUs with native bf16 units (`albert.hardware`)."""
        model = load_model(cls, name_or_path, config, **config_overrides)
        return model if dtype is None else model.to(hardware.torch_dtype(dtype))

    @classmethod
    def from_preset(cls, name: str, **config_overrides: Any) -> AlbertPreTrainedModel:
        """A randomly initialised model with a named preset's hyper-parameters."""
        return cls(AlbertConfig.from_preset(name, **config_overrides))

    def _base(
        self,
        input_ids: Tensor | None,
        attention_mask: Tensor | None,
        token_type_ids: Tensor | None,
        position_ids: Tensor | None,
        inputs_embeds: Tensor | None,
        output_hidden_states: bool | None,
        output_attentions: bool | None,
    ) -> BaseModelOutputWithPooling:
        """Run the base model for a head class (always as a dataclass, whatever `return_dict`)."""
        return self.base_model(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )

    def _return(self, output: OutputT, return_dict: bool | None) -> OutputT | tuple[Any, ...]:
        return output if return_dict is None or return_dict else output.to_tuple()


# ----------------------------------------------------------------------------------------
# the models


class AlbertModel(AlbertPreTrainedModel):
    """Embeddings -> shared transformer layers -> (optional) tanh pooler over [CLS]."""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if add_pooling_layer else None
        self.pooler_activation = nn.Tanh()
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple[Any, ...]:
        if (input_ids is None) == (inputs_embeds is None):
            raise AlbertError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None and input_ids.dim() == 1:
            raise AlbertError(
                "input_ids must be 2-D (batch, sequence); add a batch dimension, e.g. ids[None]"
            )
        embeddings = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        hidden, all_hidden, all_attentions = self.encoder(
            embeddings,
            attention_mask_for_sdpa(attention_mask),
            bool(output_hidden_states),
            bool(output_attentions),
        )
        pooled = self.pooler_activation(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        return self._return(
            BaseModelOutputWithPooling(hidden, pooled, all_hidden, all_attentions), return_dict
        )


def _masked_lm(
    head: AlbertMLMHead, word_embeddings: Tensor, hidden: Tensor, labels: Tensor | None, sparse: bool
) -> tuple[Tensor, Tensor | None]:
    """MLM logits and loss. With `sparse`, logits are computed only at labelled positions
    (shape (n_masked, V)): the vocabulary projection over every position is most of a small
    model's training cost, and unlabelled positions contribute nothing to the loss."""
    if labels is None:
        return head(hidden, word_embeddings), None
    if sparse:
        selected = labels.reshape(-1) != -100
        gathered, targets = hidden.reshape(-1, hidden.shape[-1])[selected], labels.reshape(-1)[selected]
        if type(head) is AlbertMLMHead:  # a subclass (the int8 head) decodes its own way
            logits, total = SparseMaskedLMLoss.apply(
                head.transform(gathered), word_embeddings, head.bias, targets
            )
        else:
            logits = head(gathered, word_embeddings)
            total = F.cross_entropy(logits, targets, reduction="sum")
        # sum / count (not mean): a batch with nothing masked gives 0, not NaN, with no host sync
        return logits, total / selected.sum().clamp(min=1)
    logits = head(hidden, word_embeddings)
    return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


class SparseMaskedLMLoss(torch.autograd.Function):
    """Vocabulary logits at the masked positions and their summed cross-entropy, as one autograd
    node: `(features @ weight.T + bias, sum(cross_entropy))` for `features` (n_masked, E).

    Same values as `F.linear` + `F.cross_entropy(reduction="sum")`, with less memory and fewer
    passes over the (n_masked, V) scores. The loss comes from fp32 log-probabilities, which are
    dropped after the forward pass; the backward pass recomputes the softmax from the logits
    (which the caller holds anyway) in their own dtype and sets the target entries, p - 1, from
    the kept fp32 target log-probabilities. Under bf16 autocast that is one bf16 pass over the
    scores where exp, scaling and a downcast of an fp32 copy took three (the product consumes
    bf16 either way), and the fp32 (n_masked, V) tensor is not kept; the upstream gradient scales
    the two products' small outputs instead of the scores. The logits are returned for accuracy
    and carry no gradient. Under autocast the product runs in the autocast dtype (bf16 on CPU)
    and the log-softmax and loss in fp32, as autocast runs `F.cross_entropy`.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, features: Tensor, weight: Tensor, bias: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor]:
        dtype = _autocast_dtype(features)
        with torch.autocast(features.device.type, enabled=False):
            features_cast, weight_cast = features.to(dtype), weight.to(dtype)
            logits = F.linear(features_cast, weight_cast, bias.to(dtype))
            target_log_probs = logits.log_softmax(-1, dtype=torch.float32).gather(1, labels[:, None])
            total = -target_log_probs.sum()
        ctx.save_for_backward(features_cast, weight_cast, logits, target_log_probs, labels)
        ctx.dtypes = (features.dtype, weight.dtype, bias.dtype)
        ctx.mark_non_differentiable(logits)
        return logits, total

    @staticmethod
    def backward(ctx: Any, _: Tensor, grad_total: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        features, weight, logits, target_log_probs, labels = ctx.saved_tensors
        # d(sum CE)/d(logits) = softmax - one-hot; the softmax of bf16 logits computes in fp32
        grad = logits.softmax(-1)
        rows = torch.arange(labels.numel(), device=labels.device)
        grad[rows, labels] = (target_log_probs.squeeze(1).exp() - 1).to(grad.dtype)
        features_dtype, weight_dtype, bias_dtype = ctx.dtypes
        need_features, need_weight, need_bias, _ = ctx.needs_input_grad
        scale = grad_total.float()
        return (
            ((grad @ weight).float() * scale).to(features_dtype) if need_features else None,
            ((grad.T @ features).float() * scale).to(weight_dtype) if need_weight else None,
            (grad.sum(0).float() * scale).to(bias_dtype) if need_bias else None,  # sums in fp32
            None,
        )


class AlbertForPreTraining(AlbertPreTrainedModel):
    """MLM + sentence-order prediction; `loss` = MLM loss + SOP loss when both labels are given."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        sentence_order_label: Tensor | None = None,
        sparse_prediction: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> AlbertForPreTrainingOutput | tuple[Any, ...]:
        out = self._base(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states,
            output_attentions,
        )
        word_embeddings = self.albert.embeddings.decoder_weight()
        logits, mlm_loss = _masked_lm(
            self.predictions, word_embeddings, out.last_hidden_state, labels, sparse_prediction
        )
        sop_logits = self.sop_classifier(out.pooler_output)
        sop_loss = (
            None
            if sentence_order_label is None
            else F.cross_entropy(sop_logits, sentence_order_label.view(-1))
        )
        loss = mlm_loss + sop_loss if mlm_loss is not None and sop_loss is not None else None
        output = AlbertForPreTrainingOutput(
            loss, logits, sop_logits, out.hidden_states, out.attentions, mlm_loss, sop_loss
        )
        return self._return(output, return_dict)


class AlbertForMaskedLM(AlbertPreTrainedModel):
    """MLM only (no pooler); `sparse_prediction=True` scores only the labelled positions."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        sparse_prediction: bool = False,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> MaskedLMOutput | tuple[Any, ...]:
        out = self._base(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states,
            output_attentions,
        )
        word_embeddings = self.albert.embeddings.decoder_weight()
        logits, loss = _masked_lm(
            self.predictions, word_embeddings, out.last_hidden_state, labels, sparse_prediction
        )
        return self._return(MaskedLMOutput(loss, logits, out.hidden_states, out.attentions), return_dict)


def resolve_problem_type(config: AlbertConfig, labels: Tensor | None = None) -> str:
    """transformers' rule: `config.problem_type` if set; else regression when num_labels == 1,
    single-label for integer (or absent) labels, multi-label for float labels."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels is None or labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def classification_loss(config: AlbertConfig, logits: Tensor, labels: Tensor) -> Tensor:
    """The task loss for `resolve_problem_type`: MSE, cross-entropy or BCE."""
    problem = resolve_problem_type(config, labels)
    if problem == "regression":
        if config.num_labels == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
        return F.mse_loss(logits, labels)
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear; single-label, multi-label or regression."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple[Any, ...]:
        out = self._base(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states,
            output_attentions,
        )
        logits = self.classifier(self.dropout(out.pooler_output))
        loss = None if labels is None else classification_loss(self.config, logits, labels)
        return self._return(
            SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict
        )


class AlbertForTokenClassification(AlbertPreTrainedModel):
    """Per-token dropout -> linear (NER, POS); labels of -100 are ignored."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> TokenClassifierOutput | tuple[Any, ...]:
        out = self._base(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states,
            output_attentions,
        )
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, -2), labels.view(-1))
        return self._return(
            TokenClassifierOutput(loss, logits, out.hidden_states, out.attentions), return_dict
        )


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    """Per-token start/end logits for extractive QA (SQuAD)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        if config.num_labels != 2:
            raise AlbertError(
                f"question answering predicts start and end: num_labels must be 2, not {config.num_labels}"
            )
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> QuestionAnsweringModelOutput | tuple[Any, ...]:
        out = self._base(
            input_ids,
            attention_mask,
            token_type_ids,
            position_ids,
            inputs_embeds,
            output_hidden_states,
            output_attentions,
        )
        start_logits, end_logits = (
            t.squeeze(-1).contiguous() for t in self.qa_outputs(out.last_hidden_state).split(1, dim=-1)
        )
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the sequence (answer truncated away) are ignored
            ignored = start_logits.shape[1]
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (
                F.cross_entropy(start_logits, start, ignore_index=ignored)
                + F.cross_entropy(end_logits, end, ignore_index=ignored)
            ) / 2
        output = QuestionAnsweringModelOutput(
            loss, start_logits, end_logits, out.hidden_states, out.attentions
        )
        return self._return(output, return_dict)


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    """Inputs of shape (batch, choices, seq): each choice is scored from its pooled [CLS]."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(_classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> MultipleChoiceModelOutput | tuple[Any, ...]:
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise AlbertError("pass exactly one of input_ids or inputs_embeds")
        num_choices = reference.shape[1]

        def flat(t: Tensor | None, trailing: int = 1) -> Tensor | None:
            return None if t is None else t.reshape(-1, *t.shape[-trailing:])

        out = self._base(
            flat(input_ids),
            flat(attention_mask),
            flat(token_type_ids),
            flat(position_ids),
            flat(inputs_embeds, 2),
            output_hidden_states,
            output_attentions,
        )
        logits = self.classifier(self.dropout(out.pooler_output)).view(-1, num_choices)
        loss = None if labels is None else F.cross_entropy(logits, labels.view(-1))
        return self._return(
            MultipleChoiceModelOutput(loss, logits, out.hidden_states, out.attentions), return_dict
        )


MODEL_CLASSES: dict[str, type[AlbertPreTrainedModel]] = {
    cls.__name__: cls
    for cls in (
        AlbertModel,
        AlbertForPreTraining,
        AlbertForMaskedLM,
        AlbertForSequenceClassification,
        AlbertForTokenClassification,
        AlbertForQuestionAnswering,
        AlbertForMultipleChoice,
    )
}
