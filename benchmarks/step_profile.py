"""Where one training step's time goes, region by region: embeddings, attention, FFN, MLM head,
SOP head, loss, optimizer — forward and backward apart.

Method (torch.profiler, no change to the model): forward pre-/post-hooks open and close a
`record_function` range named after the region each module belongs to (`region_of`); the
caller opens the "optimizer" range around clipping, the optimiser step and zero_grad. The
model's own forward outside every module region is "loss": the gather of the masked positions
and the cross-entropies. Backward ops run outside any range; each is charged to the region of
the forward op that created its autograd node, matched through the sequence number the profiler
records on both. Every op's self time goes to its innermost region, so nested modules (a
transformers `AlbertLayer` contains its attention) are not counted twice. The backward work no
forward op owns (gradient accumulation into `.grad`) is "unmatched"; step time that no
op covers (Python between ops, profiler bookkeeping) is "unattributed".

Ours computes the vocabulary projection at the masked positions and the cross-entropy as one
autograd node (`albert.modeling.SparseMaskedLMLoss`): its time is under "loss", so our "MLM head"
is the transform before it; transformers' "MLM head" includes its projection at every position.

The profiled step is slower than an unprofiled one (every op is recorded): the shares are what
to read; milliseconds are the profiled step's. Both model families (ours and transformers')
use the same module names for these parts, so one mapping serves both.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from torch import nn
from torch.autograd.profiler import record_function

REGIONS = ("embeddings", "attention", "ffn", "mlm_head", "sop_head", "loss", "optimizer")
PREFIX = "region::"

# module names (as `named_modules` gives them) -> region; AlbertLayer / *Attention by class
NAMED_REGIONS = {
    "albert.embeddings": "embeddings",
    "albert.encoder.embedding_hidden_mapping_in": "embeddings",
    # ours assembles the fused Q|K|V weight in the encoder's own forward
    "albert.encoder": "attention",
    "predictions": "mlm_head",
    # ours calls the head's transform directly (its vocabulary projection is fused with the loss)
    "predictions.dense": "mlm_head",
    "predictions.LayerNorm": "mlm_head",
    "albert.pooler": "sop_head",
    "albert.pooler_activation": "sop_head",
    "sop_classifier": "sop_head",
    "": "loss",
}


def region_of(name: str, module: nn.Module) -> str | None:
    """The region a module's forward is charged to (None: its parent's)."""
    kind = type(module).__name__
    if kind.endswith("Attention"):
        return "attention"
    if kind == "AlbertLayer":  # ours: the FFN half only; transformers': minus its nested attention
        return "ffn"
    return NAMED_REGIONS.get(name)


def add_region_hooks(model: nn.Module) -> list[Any]:
    """Forward hooks that wrap each mapped module's forward in a `record_function` range."""
    open_ranges: list[record_function] = []

    def enter(region: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            scope = record_function(PREFIX + region)
            scope.__enter__()
            open_ranges.append(scope)

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        open_ranges.pop().__exit__(None, None, None)

    handles = []
    for name, module in model.named_modules():
        region = region_of(name, module)
        if region is not None:
            handles.append(module.register_forward_pre_hook(enter(region)))
            handles.append(module.register_forward_hook(leave))
    return handles


def optimizer_region() -> record_function:
    """The range the caller opens around clipping + optimiser step + zero_grad."""
    return record_function(PREFIX + "optimizer")


def _enclosing(event: Any, prefix: str) -> Any:
    while event is not None and not event.name.startswith(prefix):
        event = event.cpu_parent
    return event


def _outermost(event: Any, prefix: str) -> Any:
    found = None
    while event is not None:
        if event.name.startswith(prefix):
            found = event
        event = event.cpu_parent
    return found


def attribute(events: Any) -> dict[tuple[str, str], float]:
    """Self time (ms) per (region, "forward" | "backward") from profiler events; backward work no
    forward op owns is ("unmatched", "backward"), ops outside every region ("unattributed", ...)."""
    owner: dict[int, str] = {}  # forward sequence number -> region
    for event in events:
        if event.sequence_nr >= 0 and not event.name.startswith("autograd::"):
            scope = _enclosing(event, PREFIX)
            if scope is not None:
                owner.setdefault(event.sequence_nr, scope.name[len(PREFIX) :])
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    for event in events:
        scope = _enclosing(event, PREFIX)
        node = _outermost(event, "autograd::engine::evaluate_function")
        if scope is not None:
            region = scope.name[len(PREFIX) :]
        elif node is not None:
            region = owner.get(node.sequence_nr, "unmatched")
        else:
            region = "unattributed"
        totals[region, "backward" if node is not None else "forward"] += event.self_cpu_time_total / 1000
    return dict(totals)


def profile_step(step: Callable[[], None]) -> dict[str, Any]:
    """Run `step` once under the profiler (regions must be hooked already): per region its ms,
    the part of them in the backward pass, and its share of the profiled step's wall time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        wall_ms = (time.perf_counter() - start) * 1000
    totals = attribute(prof.events())
    regions: dict[str, dict[str, float]] = {}
    for region in (*REGIONS, "unmatched"):
        forward, backward = totals.get((region, "forward"), 0.0), totals.get((region, "backward"), 0.0)
        regions[region] = {"ms": forward + backward, "backward_ms": backward}
    # Python between ops, profiler bookkeeping and ops outside every region
    covered = sum(region["ms"] for region in regions.values())
    regions["unattributed"] = {"ms": max(0.0, wall_ms - covered), "backward_ms": 0.0}
    for region in regions.values():
        region["share"] = region["ms"] / wall_ms
    backward = sum(region["backward_ms"] for region in regions.values())
    return {"step_ms": wall_ms, "backward_share": backward / wall_ms, "regions": regions}
