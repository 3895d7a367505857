"""`albert distill`: task-agnostic distillation of a BERT teacher into an ALBERT student.

    albert convert-bert --teacher BERT --output STUDENT --embedding-size 128 --share all
    albert distill --teacher BERT --student STUDENT --data corpus/*.txt --output RUN [--max-steps N ...]
    torchrun --nproc-per-node K -m albert distill ...     # same command line, DDP

What one step does is `albert.train.distillation`; the loop around it is `albert.train.loop`.
This module maps the command line onto them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from albert.pretrain import add_training_arguments
from albert.train.distillation import DistillationObjective, DistillConfig
from albert.train.loop import run_training


def distill(
    teacher: str | Path,
    student: str | Path,
    data: str | Path | list[str] | list[Path],
    output: str | Path,
    **options: Any,
) -> dict[str, Any]:
    """Python entry point: `distill(bert_dir, student_dir, ["corpus.txt"], "run", max_steps=1000)`.
    Returns the loop's summary; fine-tune from `summary["checkpoint"]`."""
    inputs = [str(p) for p in data] if isinstance(data, (list, tuple)) else [str(data)]
    cfg = DistillConfig(
        data="", model=str(student), output=str(output), teacher=str(teacher), inputs=inputs, **options
    )
    return run_training(cfg, DistillationObjective)


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = DistillConfig(data="")
    a = parser.add_argument
    a("--teacher", required=True, help="BERT directory (transformers layout, with vocab.txt)")
    a("--student", required=True, help="ALBERT directory with the teacher's vocabulary (from convert-bert)")
    a(
        "--data",
        nargs="+",
        required=True,
        help="text files, directories or globs; or an `albert data` directory",
    )
    a(
        "--output",
        required=True,
        help="run directory: data/, checkpoints/step-N/ (fine-tune from these), metrics.jsonl",
    )
    a(
        "--max-seq-length",
        type=int,
        default=d.max_seq_length,
        help="tokens per sequence when building from text",
    )
    a("--data-workers", type=int, default=d.data_workers, help="processes for building the data")
    a(
        "--relation-heads",
        type=int,
        default=None,
        help="relation heads (default: the teacher's attention heads)",
    )
    a(
        "--hidden-weight",
        type=float,
        default=d.hidden_weight,
        help="weight of the last-layer hidden MSE (0: off)",
    )
    a(
        "--mlm-weight",
        type=float,
        default=d.mlm_weight,
        help="weight of the student's MLM loss (teacher with MLM head)",
    )
    add_training_arguments(parser, d)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    options = vars(args).copy()
    teacher, student, data, output = (options.pop(k) for k in ("teacher", "student", "data", "output"))
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    summary = distill(teacher, student, data, output, **{k: v for k, v in options.items() if k in names})
    if summary["rank"] == 0 and summary["interrupted"] is None and summary.get("checkpoint"):
        print(f"done: step {summary['step']}, student checkpoint {summary['checkpoint']}")
    return 0
