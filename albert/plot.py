"""`albert plot RUN`: training and evaluation curves of a run's `metrics.jsonl`, as one PNG.

Pretraining, six panels: loss (total, MLM, SOP; train and eval), accuracies (MLM, SOP; train
and eval), learning rate, held-out perplexity, held-out word-order gain (what shuffling a
sequence's words costs the model; near 0 = a bag-of-words model, see docs/pretraining.md) and
training tokens/s. Distillation, four (`albert distill`, recognised by its
`relation_loss`): loss (total, relations, hidden MSE, MLM), the three relation KLs, learning rate,
tokens/s. A series that is zero throughout (a disabled loss term) is left out. matplotlib is imported only here (the `plot` extra)
and drawn with the non-interactive Agg backend, so this works on headless machines.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any

from albert.errors import AlbertError
from albert.paths import check_output
from albert.train.metrics import read_metrics

METRICS_FILE = "metrics.jsonl"


def _metrics_path(run: str | os.PathLike) -> Path:
    path = Path(run)
    if path.is_dir():
        path = path / METRICS_FILE
    if not path.is_file():
        raise AlbertError(
            f"no {METRICS_FILE} at {path}; pass a pretraining --output directory or its metrics file"
        )
    return path


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


PRETRAINING_PANELS = (
    ("loss", ("loss", "mlm_loss", "sop_loss"), False),
    ("accuracy", ("mlm_accuracy", "sop_accuracy"), False),
    ("learning rate", ("learning_rate",), False),
    ("held-out perplexity (MLM)", ("perplexity",), True),
    ("held-out word-order gain, nats (~0: a bag of words)", ("word_order_gain",), False),
    ("training tokens/s", ("tokens_per_second",), False),
)
DISTILLATION_PANELS = (
    ("loss", ("loss", "relation_loss", "hidden_mse", "mlm_loss"), False),
    ("self-attention relations, KL(teacher || student)", ("qq_kl", "kk_kl", "vv_kl"), False),
    ("learning rate", ("learning_rate",), False),
    ("training tokens/s", ("tokens_per_second",), False),
)


def plot_metrics(run: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Draw the curves of `run` (a run directory or metrics.jsonl) to `output` (default RUN/curves.png)."""
    path = _metrics_path(run)
    check_output(Path(output) if output else path.parent / "curves.png", directory=False)
    records = read_metrics(path)
    train = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    if not train and not evals:
        raise AlbertError(f"{path} has no metrics yet; wait for the first logged step (--log-every)")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AlbertError("plotting needs matplotlib: pip install 'albert[plot]' (or matplotlib)") from None

    target = Path(output) if output else path.parent / "curves.png"
    distillation = any("relation_loss" in r for r in records)
    panels = DISTILLATION_PANELS if distillation else PRETRAINING_PANELS
    columns = (len(panels) + 1) // 2
    fig, axes = plt.subplots(2, columns, figsize=(6 * columns, 8), constrained_layout=True)
    for ax, (title, keys, log_scale) in zip(axes.flat, panels, strict=True):
        drawn = False
        for color, key in enumerate(keys):
            for label, rows, style in (("train", train, "-"), ("eval", evals, "o--")):
                steps, values = _series(rows, key)
                if any(values):
                    ax.plot(
                        steps,
                        values,
                        style,
                        color=f"C{color}",
                        label=f"{label} {key}",
                        markersize=4,
                        linewidth=1.2,
                    )
                    drawn = True
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
            if log_scale:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{path.parent.name}: {len(train)} train / {len(evals)} eval records")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, target)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="pretraining output directory (or its metrics.jsonl)")
    parser.add_argument("--output", "-o", help="PNG to write (default: RUN/curves.png)")


def run(args: argparse.Namespace) -> int:
    print(plot_metrics(args.run, args.output))
    return 0
