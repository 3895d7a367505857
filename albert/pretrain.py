"""`albert pretrain`: masked-LM + sentence-order prediction, the ALBERT recipe.

    albert pretrain --data DATA --model albert-tiny --output RUN [--max-steps N ...]
    torchrun --nproc-per-node K -m albert pretrain ...      # same command line, DDP

The objective is `albert.train.pretraining`; the loop (LAMB, warmup + decay, clipping, exact
resume, DDP/FSDP, checkpoints) is `albert.train.loop`. This module maps the command line onto them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

from albert.train.loop import TrainConfig, run_training
from albert.train.precision import PRECISIONS
from albert.train.pretraining import PretrainingObjective


def run_pretraining(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) pretraining; returns a summary (final step, checkpoint, last evaluation)."""
    return run_training(cfg, PretrainingObjective)


def pretrain(
    data: str, model: str = "albert-tiny", output: str = "pretrain-output", **options: Any
) -> dict[str, Any]:
    """Python entry point: `pretrain(data_dir, "albert-tiny", "run", max_steps=1000)`."""
    return run_pretraining(TrainConfig(data=str(data), model=str(model), output=str(output), **options))


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="")
    a = parser.add_argument
    a("--data", required=True, help="pretraining data directory written by `albert data`")
    a("--model", default=d.model, help="preset name, config.json, or a model directory to continue from")
    a("--output", required=True, help="run directory: checkpoints/, metrics.jsonl")
    a("--tokenizer", help="tokenizer directory (default: the one the data was built with)")
    a("--eval-data", help="held-out data directory (default: hold out --eval-fraction of --data)")
    add_training_arguments(parser, d)


def add_training_arguments(parser: argparse.ArgumentParser, d: TrainConfig) -> None:
    """The training-loop options, shared with `albert distill` (`d` holds the defaults)."""
    a = parser.add_argument
    a(
        "--eval-fraction",
        type=float,
        default=d.eval_fraction,
        help="fraction of the data held out for evaluation",
    )
    a("--max-steps", type=int, default=d.max_steps)
    a("--batch-size", type=int, default=d.batch_size, help="sequences per device per micro-batch")
    a("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimiser step")
    a("--learning-rate", "--lr", type=float, default=d.learning_rate)
    a("--warmup-steps", type=int, default=None, help="linear warmup steps (default: 2.5%% of --max-steps)")
    a("--optimizer", choices=("lamb", "adamw"), default=d.optimizer)
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--bias-correction", action="store_true", help="Adam bias correction in LAMB (off in ALBERT)")
    a("--max-grad-norm", type=float, default=d.max_grad_norm, help="global-norm clipping (0: off)")
    a("--save-every", type=int, default=d.save_every, help="checkpoint every N steps")
    a("--keep", type=int, default=d.keep, help="keep the newest N checkpoints")
    a("--eval-every", type=int, default=d.eval_every, help="evaluate every N steps (0: never)")
    a("--eval-batches", type=int, default=d.eval_batches, help="global batches per evaluation")
    a("--log-every", type=int, default=d.log_every, help="write metrics every N steps")
    a("--seed", type=int, default=d.seed)
    a("--resume", action="store_true", help="continue from the newest complete checkpoint in --output")
    a("--gradient-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    a(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="auto: bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32; on GPUs bf16, else fp16",
    )
    a("--device", default=d.device, help="auto, cpu or cuda")
    a("--num-workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    a("--tensorboard", action="store_true", help="also write TensorBoard scalars to OUTPUT/tensorboard")
    a(
        "--max-nan-steps",
        type=int,
        default=d.max_nan_steps,
        help="stop after more consecutive non-finite steps",
    )
    a("--fsdp", action="store_true", help="shard with FSDP instead of DDP under torchrun")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    summary = run_pretraining(cfg)
    if summary["rank"] == 0 and summary["interrupted"] is None and summary.get("checkpoint"):
        print(f"done: step {summary['step']}, checkpoint {summary['checkpoint']}")
    return 0
