"""What the training loop needs from an objective, and nothing more.

The loop (`albert.train.loop`) owns everything that is the same for every objective: data order,
optimiser and scheduler steps, NaN handling, exact resume, DDP/FSDP, evaluation timing, metrics
and checkpoints (the trained model with its tokenizer). An objective says what one micro-batch
costs, which statistics a step reports, and how held-out data is scored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from torch import Tensor, nn

from albert.train.data import DataSource

Batch = dict[str, Tensor]

# per-step statistics every objective has; the loop fills in all but "tokens"
LOOP_STATS = ("tokens", "micro_batches", "bad", "stop")


class Objective(Protocol):
    """A training objective for `albert.train.loop.Trainer`."""

    name: str  # the progress bar's label: "pretrain", "distill"
    # what `losses` returns (losses and counts) and LOOP_STATS, summed over each step
    stat_names: tuple[str, ...]
    find_unused_parameters: bool  # DDP: True when some of the model's parameters take no part
    progress: dict[str, str]  # the progress bar's figures: label -> metrics record key
    progress_format: str  # how they are printed, e.g. ".3f"

    def data_source(self) -> DataSource:
        """The shards to train and evaluate on (called on every rank once the run's checkpoints
        are checked, so nothing is built for a run that is refused)."""
        ...

    def describe(self, model: nn.Module) -> str:
        """What is trained, for the line printed when the run starts."""
        ...

    def losses(self, model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """(losses, counts) of one micro-batch: `losses["loss"]` is minimised; every loss and
        count is summed into the step's statistics under its name (one of `stat_names`)."""
        ...

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        """The objective's fields of a metrics record from statistics summed over steps."""
        ...

    def held_out_sums(self, model: nn.Module, batches: Iterable[Batch], tokenizer: Any) -> Tensor:
        """Sums over this process's held-out batches (in eval mode, without gradients), to be added
        up across processes."""
        ...

    def held_out_record(self, sums: list[float], step: int) -> dict[str, Any]:
        """The evaluation record (`{"step": step, "eval": True, ...}`) from the summed sums."""
        ...

    def eval_message(self, record: dict[str, Any]) -> str:
        """One line for an evaluation record."""
        ...
