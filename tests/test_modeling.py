"""Numerical parity with transformers' Albert* classes on the same weights, both directions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

import albert
from albert import AlbertConfig
from albert.modeling import MODEL_CLASSES

CONFIGS = {
    "small": dict(vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37),
    "groups": dict(
        vocab_size=99, embedding_size=16, hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
        intermediate_size=37, num_hidden_groups=2, inner_group_num=2,
    ),
    "e_equals_h_relu": dict(
        vocab_size=99, embedding_size=24, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=48, hidden_act="relu",
    ),
    "gelu_v1_unshared": dict(
        vocab_size=99, embedding_size=8, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
        intermediate_size=20, hidden_act="gelu", num_hidden_groups=3,
    ),
}  # fmt: skip


def _inputs(cls_name: str, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # padding inside the batch
    mask[2, 4:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if cls_name == "AlbertForMultipleChoice":
        batch = {k: v.view(1, 3, 11).repeat(2, 1, 1) for k, v in batch.items()}
    return batch


def _compare(a: object, b: object, keys: list[str]) -> None:
    for key in keys:
        x, y = a[key], b[key]  # type: ignore[index]
        if isinstance(x, tuple):
            assert len(x) == len(y), key
            for xi, yi in zip(x, y, strict=True):
                assert (xi - yi).abs().max().item() <= 1e-5, key
        else:
            assert x.shape == y.shape, key
            assert (x - y).abs().max().item() <= 1e-5, key


@pytest.mark.parametrize("config_name", list(CONFIGS))
@pytest.mark.parametrize("cls_name", list(MODEL_CLASSES))
def test_transformers_checkpoint_loads_here(tmp_path: Path, cls_name: str, config_name: str) -> None:
    torch.manual_seed(0)
    num_labels = 2 if cls_name == "AlbertForQuestionAnswering" else 3  # QA: start/end
    hf_config = transformers.AlbertConfig(
        **CONFIGS[config_name], num_labels=num_labels, attn_implementation="eager"
    )
    theirs = getattr(transformers, cls_name)(hf_config).eval()
    theirs.save_pretrained(tmp_path)
    ours = getattr(albert, cls_name).from_pretrained(tmp_path)
    batch = _inputs(cls_name, hf_config.vocab_size)
    with torch.no_grad():
        a = theirs(**batch, output_hidden_states=True, output_attentions=True)
        b = ours(**batch, output_hidden_states=True, output_attentions=True)
    _compare(a, b, list(a.keys()))


@pytest.mark.parametrize("config_name", ["small", "groups"])
@pytest.mark.parametrize("cls_name", list(MODEL_CLASSES))
def test_our_checkpoint_loads_in_transformers(tmp_path: Path, cls_name: str, config_name: str) -> None:
    torch.manual_seed(1)
    num_labels = 2 if cls_name == "AlbertForQuestionAnswering" else 3
    ours = getattr(albert, cls_name)(AlbertConfig(**CONFIGS[config_name], num_labels=num_labels)).eval()
    ours.save_pretrained(tmp_path)
    theirs = getattr(transformers, cls_name).from_pretrained(tmp_path).eval()
    batch = _inputs(cls_name, ours.config.vocab_size, seed=1)
    with torch.no_grad():
        a = theirs(**batch)
        b = ours(**batch)
    _compare(a, b, list(a.keys()))


def test_losses_match_transformers(tmp_path: Path) -> None:
    torch.manual_seed(2)
    cfg = dict(CONFIGS["small"], num_labels=3)
    batch = _inputs("AlbertModel", 99)
    labels = {
        "AlbertForPreTraining": dict(
            labels=torch.where(torch.rand(3, 11) < 0.3, batch["input_ids"], -100),
            sentence_order_label=torch.tensor([0, 1, 1]),
        ),
        "AlbertForMaskedLM": dict(labels=torch.where(torch.rand(3, 11) < 0.3, batch["input_ids"], -100)),
        "AlbertForSequenceClassification": dict(labels=torch.tensor([0, 2, 1])),
        "AlbertForTokenClassification": dict(labels=torch.randint(0, 3, (3, 11))),
        "AlbertForQuestionAnswering": dict(
            start_positions=torch.tensor([1, 3, 20]), end_positions=torch.tensor([2, 5, 20])
        ),
    }
    for cls_name, extra in labels.items():
        n = 2 if cls_name in ("AlbertForQuestionAnswering", "AlbertForPreTraining") else 3
        theirs = getattr(transformers, cls_name)(transformers.AlbertConfig(**dict(cfg, num_labels=n))).eval()
        theirs.save_pretrained(tmp_path / cls_name)
        ours = getattr(albert, cls_name).from_pretrained(tmp_path / cls_name)
        with torch.no_grad():
            a, b = theirs(**batch, **extra), ours(**batch, **extra)
        assert abs(a.loss.item() - b.loss.item()) < 1e-5, cls_name


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_problem_types(problem: str) -> None:
    num_labels = 1 if problem == "regression" else 4
    cfg = AlbertConfig(**CONFIGS["small"], num_labels=num_labels, problem_type=problem)
    model = albert.AlbertForSequenceClassification(cfg)
    batch = _inputs("AlbertModel", 99)
    labels = torch.rand(3) if problem == "regression" else (torch.rand(3, 4) > 0.5).float()
    out = model(**batch, labels=labels)
    assert out.logits.shape == (3, num_labels)
    assert out.loss.requires_grad and torch.isfinite(out.loss)
    out.loss.backward()


def test_sparse_prediction_equals_dense_loss() -> None:
    torch.manual_seed(3)
    model = albert.AlbertForPreTraining(AlbertConfig(**CONFIGS["small"])).eval()
    batch = _inputs("AlbertModel", 99)
    labels = torch.where(torch.rand(3, 11) < 0.3, batch["input_ids"], -100)
    order = torch.tensor([1, 0, 1])
    dense = model(**batch, labels=labels, sentence_order_label=order)
    sparse = model(**batch, labels=labels, sentence_order_label=order, sparse_prediction=True)
    assert sparse.prediction_logits.shape == ((labels != -100).sum().item(), 99)
    assert torch.allclose(dense.loss, sparse.loss, atol=1e-6)
    assert torch.allclose(dense.loss, dense.mlm_loss + dense.sop_loss)
    nothing = model(
        **batch, labels=torch.full_like(labels, -100), sentence_order_label=order, sparse_prediction=True
    )
    assert nothing.mlm_loss.item() == 0.0 and torch.isfinite(nothing.loss)


def _pretraining_grads(model: torch.nn.Module, sparse: bool, bf16: bool = False) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(3)
    batch = _inputs("AlbertModel", 99)
    labels = torch.where(torch.rand(3, 11) < 0.3, batch["input_ids"], -100)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = model(
            **batch, labels=labels, sentence_order_label=torch.tensor([1, 0, 1]), sparse_prediction=sparse
        )
    out.loss.backward()
    return out.mlm_loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def test_sparse_prediction_gradients_equal_the_full_vocabulary_loss() -> None:
    """The gathered-positions loss (one fused logits + cross-entropy node) against the full-vocab
    loss through autograd's own chain: same loss, same gradient for every parameter."""
    torch.manual_seed(3)
    model = albert.AlbertForPreTraining(AlbertConfig(**CONFIGS["small"])).eval()  # no dropout
    dense_loss, dense = _pretraining_grads(model, sparse=False)
    sparse_loss, sparse = _pretraining_grads(model, sparse=True)
    torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-6, atol=1e-6)
    for name, grad in dense.items():
        torch.testing.assert_close(sparse[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_sparse_prediction_under_bf16_autocast_tracks_fp32() -> None:
    """bf16 autocast training (explicit attention, bf16 products, fp32 softmax and loss): the
    loss within bf16 rounding of fp32's, every gradient pointing the same way."""
    torch.manual_seed(3)
    model = albert.AlbertForPreTraining(AlbertConfig(**CONFIGS["small"])).eval()
    fp32_loss, fp32 = _pretraining_grads(model, sparse=True)
    bf16_loss, bf16 = _pretraining_grads(model, sparse=True, bf16=True)
    assert bf16_loss.dtype == torch.float32
    torch.testing.assert_close(bf16_loss, fp32_loss, rtol=2e-2, atol=0)
    for name, grad in fp32.items():
        assert bf16[name].dtype == torch.float32, name
        if not name.endswith("key.bias"):  # softmax ignores the key bias: its gradient is rounding noise
            cosine = torch.nn.functional.cosine_similarity(bf16[name].flatten(), grad.flatten(), dim=0)
            assert cosine > 0.98, (name, cosine)


def _fused_and_chain_mlm_under_bf16(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, labels: torch.Tensor
) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """(summed loss, gradients of features, weight, bias) from the fused node and from autocast's chain."""
    results = []
    for fused in (True, False):
        leaves = [t.detach().clone().requires_grad_() for t in (features, weight, bias)]
        with torch.autocast("cpu", torch.bfloat16):
            if fused:
                _, total = albert.modeling.SparseMaskedLMLoss.apply(*leaves, labels)
            else:
                total = F.cross_entropy(F.linear(*leaves), labels, reduction="sum")
        (total * 0.5).backward()
        results.append((total.detach(), [t.grad for t in leaves]))
    return results


def test_sparse_mlm_loss_under_bf16_matches_autocast_cross_entropy_even_for_confident_targets() -> None:
    """The fused node under bf16 autocast against autocast's own chain (bf16 product, fp32
    cross-entropy): the same loss and gradients within bf16 rounding, also for a target the
    model is nearly sure of, whose logit gradient p - 1 is small and must not be lost to bf16
    rounding of p (p ~ 0.9995 rounds to 0.99609 or 1 in bf16)."""
    torch.manual_seed(0)
    width, vocab = 16, 500
    weight = torch.randn(vocab, width) * 0.3
    features, labels = torch.randn(6, width), torch.randint(0, vocab, (6,))
    direction = torch.nn.functional.normalize(torch.randn(width), dim=0)
    weight[7] = 3 * direction  # one position whose target logit stands ~8 above the rest
    confident = (5 * direction[None], torch.tensor([7]))
    for feats, targets in ((features, labels), confident):
        bias = torch.randn(vocab) * 0.1
        (fused_total, fused_grads), (chain_total, chain_grads) = _fused_and_chain_mlm_under_bf16(
            feats, weight, bias, targets
        )
        torch.testing.assert_close(fused_total, chain_total, rtol=1e-6, atol=1e-6)
        for fused_grad, chain_grad in zip(fused_grads, chain_grads, strict=True):
            torch.testing.assert_close(fused_grad, chain_grad, rtol=2e-2, atol=2e-3 * chain_grad.abs().max())
    p_target = F.linear(*confident[:1], weight, bias).softmax(-1)[0, 7]
    assert 0.999 < p_target < 0.99995, p_target
    torch.testing.assert_close(fused_grads[2][7], (p_target - 1) / 2, rtol=1e-2, atol=0)


@pytest.mark.parametrize("grad", [True, False], ids=["training", "inference"])
def test_attention_probabilities_in_bf16_come_from_an_fp32_softmax(grad: bool) -> None:
    """bf16 attention probabilities are normalised in fp32 and rounded once, masked keys at 0:
    in inference too, where torch's bf16 softmax is trusted to do so without upcast copies."""
    torch.manual_seed(0)
    q, k = (torch.randn(2, 3, 9, 26).bfloat16() * 3 for _ in range(2))
    mask = torch.ones(2, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    with torch.set_grad_enabled(grad):
        probs = albert.modeling.attention_probabilities(q, k, mask)
    scores = (q * (1 / math.sqrt(26))) @ k.transpose(-1, -2)
    reference = scores.masked_fill(~mask, torch.finfo(torch.bfloat16).min).float().softmax(-1)
    assert probs.dtype == torch.bfloat16
    assert torch.equal(probs, reference.to(torch.bfloat16))
    assert probs[1, ..., 6:].float().abs().max() == 0


@pytest.mark.parametrize("share", ["all", "attention", "ffn", "none"])
def test_share_modes_count_and_run(tmp_path: Path, share: str) -> None:
    cfg = AlbertConfig(**CONFIGS["small"], share=share)
    model = albert.AlbertForPreTraining(cfg)
    attn = (
        sum(
            p.numel()
            for p in model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention.parameters()
        )
        if share != "ffn"
        else 0
    )
    blocks = model.albert.encoder
    n_attention = sum(1 for m in blocks.modules() if isinstance(m, albert.modeling.AlbertAttention))
    n_ffn = sum(
        1 for m in blocks.modules() if isinstance(m, albert.modeling.AlbertLayer) and hasattr(m, "ffn")
    )
    expected = {"all": (1, 1), "attention": (1, 3), "ffn": (3, 1), "none": (3, 3)}[share]
    assert (n_attention, n_ffn) == expected
    assert share == "ffn" or attn > 0
    # every parameter receives a gradient: the plan really uses each unshared half
    out = model(
        **_inputs("AlbertModel", 99),
        labels=torch.full((3, 11), 7),
        sentence_order_label=torch.tensor([0, 1, 0]),
    )
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.save_pretrained(tmp_path)
    again = albert.AlbertForPreTraining.from_pretrained(tmp_path)
    assert again.config.share == share
    for (k, v), (k2, v2) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_share_none_is_transformers_loadable(tmp_path: Path) -> None:
    """share="none" is stored as one group per layer, which transformers represents exactly."""
    ours = albert.AlbertModel(AlbertConfig(**CONFIGS["small"], share="none")).eval()
    ours.save_pretrained(tmp_path)
    theirs = transformers.AlbertModel.from_pretrained(tmp_path).eval()
    batch = _inputs("AlbertModel", 99)
    with torch.no_grad():
        _compare(theirs(**batch), ours(**batch), ["last_hidden_state", "pooler_output"])


def test_gradient_checkpointing_gives_same_gradients() -> None:
    torch.manual_seed(4)
    model = albert.AlbertForMaskedLM(AlbertConfig(**CONFIGS["groups"]))
    batch = _inputs("AlbertModel", 99)
    labels = batch["input_ids"].clone()
    model(**batch, labels=labels).loss.backward()
    reference = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(**batch, labels=labels).loss.backward()
    for a, p in zip(reference, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_outputs_behave_like_transformers_outputs() -> None:
    model = albert.AlbertModel(AlbertConfig(**CONFIGS["small"])).eval()
    batch = _inputs("AlbertModel", 99)
    out = model(**batch)
    assert out[0] is out.last_hidden_state and out["pooler_output"] is out.pooler_output
    assert model(**batch, return_dict=False)[0].shape == (3, 11, 32)
    first, second = out
    assert second.shape == (3, 32)


def test_too_long_input_is_a_clear_error() -> None:
    model = albert.AlbertModel(AlbertConfig(**CONFIGS["small"], max_position_embeddings=8))
    with pytest.raises(albert.AlbertError, match="max_position_embeddings"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_unknown_activation_is_a_clear_error() -> None:
    with pytest.raises(albert.AlbertError, match="hidden_act"):
        albert.AlbertModel(AlbertConfig(**CONFIGS["small"], hidden_act="nope"))


def test_inference_fast_path_matches_the_autograd_path_and_follows_weight_updates() -> None:
    from albert.fastpath import ENABLED

    torch.manual_seed(5)
    model = albert.AlbertForSequenceClassification(AlbertConfig(**CONFIGS["groups"], num_labels=3)).eval()
    batch = _inputs("AlbertModel", 99)
    with torch.no_grad():
        fast = model(**batch).logits
    plain = model(**batch).logits.detach()  # autograd on: the plain F.linear path
    assert torch.allclose(fast, plain, atol=1e-5)
    ffn = model.albert.encoder.albert_layer_groups[0].albert_layers[0].ffn
    assert (getattr(ffn, "_packed_cache", None) is not None) == ENABLED
    with torch.no_grad():  # an optimizer-style in-place update must invalidate the packed copy
        for p in model.parameters():
            p.mul_(1.5)
        updated = model(**batch).logits
    assert torch.allclose(updated, model(**batch).logits.detach(), atol=1e-5)
    assert not torch.allclose(updated, fast, atol=1e-3)
    model.train()
    assert getattr(ffn, "_packed_cache", None) is None


def test_input_mistakes_are_clear_errors() -> None:
    model = albert.AlbertModel(AlbertConfig(**CONFIGS["small"]))
    ids = torch.ones(1, 4, dtype=torch.long)
    with pytest.raises(albert.AlbertError, match="exactly one of input_ids or inputs_embeds"):
        model()
    with pytest.raises(albert.AlbertError, match="exactly one of input_ids or inputs_embeds"):
        model(ids, inputs_embeds=torch.zeros(1, 4, 16))
    with pytest.raises(albert.AlbertError, match="must be 2-D"):
        model(ids[0])
    with pytest.raises(albert.AlbertError, match="num_labels must be 2"):
        albert.AlbertForQuestionAnswering(AlbertConfig(**CONFIGS["small"], num_labels=3))
    with pytest.raises(albert.AlbertError, match="expected an AlbertConfig"):
        albert.AlbertModel({"hidden_size": 32})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_a_mistyped_forward_argument_is_a_type_error(name: str) -> None:
    """`model(ids, lables=y)` must fail naming the argument, not run without a loss."""
    model = MODEL_CLASSES[name](AlbertConfig(**CONFIGS["small"], num_labels=2)).eval()
    ids = torch.randint(5, 99, (2, 3, 7) if name == "AlbertForMultipleChoice" else (2, 7))
    with pytest.raises(TypeError, match="unexpected keyword argument 'lables'"):
        model(ids, lables=torch.zeros(2, dtype=torch.long))
    assert model(ids, return_dict=False)[0].shape[0] == 2  # the spelled-out arguments still work


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_training_feed_forward_equals_the_plain_layers(activation: str) -> None:
    """The fp32 training FFN node (which recomputes the GELU in backward instead of keeping it)
    gives the values and gradients of the plain nn.Linear -> GELU -> nn.Linear chain."""
    torch.manual_seed(0)
    cfg = AlbertConfig(**CONFIGS["small"], hidden_act=activation)
    layer = albert.AlbertForPreTraining(cfg).albert.encoder.albert_layer_groups[0].albert_layers[0]
    x = torch.randn(2, 5, 32, requires_grad=True)
    assert albert.modeling.FeedForward.applies(layer, x)
    with torch.autocast("cpu", torch.bfloat16):
        assert not albert.modeling.FeedForward.applies(layer, x)  # bf16: the plain chain
    gelu = albert.modeling.get_activation(activation)
    params = (layer.ffn.weight, layer.ffn.bias, layer.ffn_output.weight, layer.ffn_output.bias)
    results = []
    for out in (layer.feed_forward(x), layer.ffn_output(gelu(layer.ffn(x)))):
        (out * torch.linspace(-1, 1, 32)).sum().backward()
        results.append([out, x.grad, *(p.grad for p in params)])
        for t in (x, *params):
            t.grad = None
    assert results[0][0].grad_fn.name() == "FeedForwardBackward"
    for fused, plain in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("hidden", [32, 48])
def test_training_projected_attention_equals_the_plain_chain(padded: bool, hidden: int) -> None:
    """The fp32 training attention node (fused Q|K|V projection + attention kernel, gradients
    fed to the projection without assembling them) gives the values and gradients of the
    linear -> SDPA chain, with and without a padding mask."""
    torch.manual_seed(0)
    cfg = AlbertConfig(**{**CONFIGS["small"], "hidden_size": hidden, "num_attention_heads": 4})
    attention = albert.modeling.AlbertAttention(cfg)
    x = torch.randn(2, 7, hidden, requires_grad=True)
    lengths = torch.tensor([7, 4 if padded else 7])
    mask = albert.modeling.attention_mask_for_sdpa((torch.arange(7) < lengths[:, None]).long())
    assert albert.modeling.ProjectedAttention.applies(attention, x, 0.0)
    assert not albert.modeling.ProjectedAttention.applies(attention, x, 0.1)  # dropout: the plain chain
    with torch.autocast("cpu", torch.bfloat16):
        assert not albert.modeling.ProjectedAttention.applies(attention, x, 0.0)

    def plain() -> torch.Tensor:
        q, k, v = attention.project_qkv(x, None).view(2, 7, 3, 4, -1).permute(2, 0, 3, 1, 4)
        context = (
            F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(2, 7, hidden)
        )
        return attention.LayerNorm(x + attention.dense(context))

    results = []
    for out in (attention(x, mask)[0], plain()):
        (out * torch.linspace(-1, 1, hidden)).sum().backward()
        results.append([out, x.grad, *(p.grad for p in attention.parameters())])
        x.grad = None
        attention.zero_grad(set_to_none=True)
    assert "ProjectedAttentionBackward" in graph_nodes(results[0][0])
    assert "ProjectedAttentionBackward" not in graph_nodes(results[1][0])
    for fused, reference in zip(*results, strict=True):
        torch.testing.assert_close(fused, reference, rtol=1e-6, atol=1e-6)


def graph_nodes(out: torch.Tensor) -> set[str]:
    """The names of the autograd nodes `out` was computed through."""
    seen, todo = {}, [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen[id(node)] = node.name()
            todo.extend(next_node for next_node, _ in node.next_functions)
    return set(seen.values())
