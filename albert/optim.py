"""Optimisers and learning-rate schedules: LAMB as in ALBERT, AdamW, linear warmup/decay.

LAMB (You et al. 2019) is what ALBERT was trained with: Adam's update, plus weight decay, then
scaled per tensor by the trust ratio ||w|| / ||update|| so every layer moves by a similar
relative amount - which is what lets ALBERT use batch 4096. Following google-research/albert's
`lamb_optimizer.py`: no bias correction by default, and LayerNorm parameters and biases get
neither weight decay nor the trust ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from albert.errors import AlbertError

NO_DECAY_MARKERS = ("LayerNorm", "layer_norm", "bias")


def is_no_decay(name: str) -> bool:
    """LayerNorm parameters and biases: excluded from weight decay (and LAMB's trust ratio)."""
    return any(marker in name for marker in NO_DECAY_MARKERS)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if is_no_decay(name) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "adapt": True},
        {"params": no_decay, "weight_decay": 0.0, "adapt": False},
    ]


class Lamb(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments for Batch training.

    Per parameter w with gradient g at step t:
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2      (bias-corrected if asked)
        u = m / (sqrt(v) + eps) + weight_decay * w
        r = ||w|| / ||u||  if the group adapts and both norms are > 0, else 1
        w = w - lr * r * u
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, object]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = False,
        adapt: bool = True,
    ) -> None:
        if lr < 0 or eps < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise AlbertError(f"invalid LAMB settings: lr={lr}, eps={eps}, betas={betas}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            adapt=adapt,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise AlbertError("LAMB does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                if group["bias_correction"]:
                    m_hat = m / (1 - beta1 ** state["step"])
                    v_hat = v / (1 - beta2 ** state["step"])
                else:
                    m_hat, v_hat = m, v
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                ratio = 1.0
                if group["adapt"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.sub_(update * (group["lr"] * ratio))
        return loss


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    bias_correction: bool = False,
) -> torch.optim.Optimizer:
    """LAMB or AdamW over `model`, with LayerNorm/bias parameters excluded from decay."""
    groups = parameter_groups(model, weight_decay)
    if name == "lamb":
        return Lamb(
            groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction
        )
    if name == "adamw":
        for group in groups:
            group.pop("adapt")
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise AlbertError(f"unknown optimizer {name!r}; choose lamb or adamw")


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """LR rises linearly from 0 over `warmup_steps`, then falls linearly to 0 at `total_steps`."""
    if total_steps < 1 or warmup_steps < 0:
        raise AlbertError(f"invalid schedule: warmup_steps={warmup_steps}, total_steps={total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, factor)
