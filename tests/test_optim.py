"""LAMB against an independent reference, step by step; parameter groups; the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from albert import AlbertConfig, AlbertError, AlbertForPreTraining
from albert.optim import Lamb, build_optimizer, is_no_decay, linear_warmup_decay


def reference_lamb_step(
    w: np.ndarray,
    g: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: int,
    *,
    lr: float,
    wd: float,
    adapt: bool,
    bias_correction: bool,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """google-research/albert lamb_optimizer.py, transcribed to float64 numpy."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mh, vh = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
    update = mh / (np.sqrt(vh) + eps) + wd * w
    ratio = 1.0
    if adapt:
        w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
        ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
    return w - lr * ratio * update, m, v


@pytest.mark.parametrize("bias_correction", [False, True])
def test_lamb_matches_reference_step_by_step(bias_correction: bool) -> None:
    rng = np.random.default_rng(0)
    shapes = {"layer.weight": (7, 5), "layer.bias": (5,), "zero.weight": (3, 3)}
    weights = {k: rng.normal(size=s) for k, s in shapes.items()}
    weights["zero.weight"][:] = 0.0  # ||w|| = 0: trust ratio falls back to 1
    params = {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in weights.items()}
    groups = [
        {"params": [params["layer.weight"], params["zero.weight"]], "weight_decay": 0.01, "adapt": True},
        {"params": [params["layer.bias"]], "weight_decay": 0.0, "adapt": False},
    ]
    optimizer = Lamb(groups, lr=0.05, bias_correction=bias_correction)
    state = {k: (np.zeros(s), np.zeros(s)) for k, s in shapes.items()}
    for t in range(1, 8):
        for name, p in params.items():
            grad = rng.normal(size=shapes[name])
            p.grad = torch.tensor(grad)
            adapt = not name.endswith("bias")
            weights[name], m, v = reference_lamb_step(
                weights[name], grad, *state[name], t, lr=0.05, wd=0.01 if adapt else 0.0, adapt=adapt,
                bias_correction=bias_correction,
            )  # fmt: skip
            state[name] = (m, v)
        optimizer.step()
        for name, p in params.items():
            np.testing.assert_allclose(p.detach().numpy(), weights[name], rtol=1e-10, atol=1e-12)


def test_trust_ratio_makes_step_size_relative_to_weight_norm() -> None:
    big = torch.nn.Parameter(torch.full((10,), 100.0))
    small = torch.nn.Parameter(torch.full((10,), 0.01))
    optimizer = Lamb([big, small], lr=0.1, weight_decay=0.0)
    big.grad, small.grad = torch.ones(10), torch.ones(10)
    optimizer.step()
    # both move by lr * ||w|| in norm: 10 % of their size
    assert torch.allclose((100.0 - big.detach()) / 100.0, torch.full((10,), 0.1), rtol=1e-4)
    assert torch.allclose((0.01 - small.detach()) / 0.01, torch.full((10,), 0.1), rtol=1e-4)


def test_groups_exclude_layernorm_and_biases() -> None:
    model = AlbertForPreTraining(
        AlbertConfig(
            vocab_size=30,
            embedding_size=8,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=20,
        )
    )
    optimizer = build_optimizer(model, "lamb", lr=1e-3)
    decay_ids = {id(p) for p in optimizer.param_groups[0]["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decay_ids) == (not is_no_decay(name)), name
    assert optimizer.param_groups[1]["weight_decay"] == 0.0 and optimizer.param_groups[1]["adapt"] is False
    assert any("predictions.bias" == n for n, p in model.named_parameters() if id(p) not in decay_ids)
    adamw = build_optimizer(model, "adamw", lr=1e-3)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(AlbertError, match="lamb or adamw"):
        build_optimizer(model, "sgd", lr=1e-3)


def test_linear_warmup_then_decay() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = linear_warmup_decay(optimizer, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert lrs[8] == pytest.approx(0.5) and lrs[12] == 0.0


def test_invalid_settings_are_clear_errors() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(AlbertError, match="invalid LAMB settings"):
        Lamb([param], lr=-1.0)
    with pytest.raises(AlbertError, match="invalid schedule"):
        linear_warmup_decay(torch.optim.SGD([param], lr=1.0), warmup_steps=2, total_steps=0)
    embedding = torch.nn.Embedding(5, 2, sparse=True)
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(AlbertError, match="sparse gradients"):
        Lamb(embedding.parameters()).step()


def test_fused_adamw_takes_the_same_steps_as_the_per_tensor_loop() -> None:
    config = AlbertConfig(
        vocab_size=30, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=20,
    )  # fmt: skip
    torch.manual_seed(0)
    fused_model = AlbertForPreTraining(config)
    loop_model = AlbertForPreTraining(config)
    loop_model.load_state_dict(fused_model.state_dict())
    fused = build_optimizer(fused_model, "adamw", lr=1e-2)
    loop = build_optimizer(loop_model, "adamw", lr=1e-2)
    assert fused.param_groups[0]["fused"] is True
    for group in loop.param_groups:
        group["fused"] = False
    ids = torch.randint(0, 30, (2, 6))
    for _ in range(4):
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            model.eval()  # no dropout: both see the same forward
            model(input_ids=ids, labels=ids, sentence_order_label=torch.tensor([0, 1])).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    for (name, a), b in zip(fused_model.named_parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_lamb_skips_parameters_without_gradients() -> None:
    used, unused = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    optimizer = Lamb([used, unused], lr=0.1)
    used.grad = torch.ones(4)
    optimizer.step()
    assert torch.equal(unused.detach(), torch.ones(4)) and unused not in optimizer.state
    assert (used.detach() < 1).all()
