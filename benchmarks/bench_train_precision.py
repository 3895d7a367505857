"""How closely bf16 pretraining follows fp32: the same run (data, seed, steps) in both precisions.

`albert pretrain --precision bf16` trains under bf16 autocast with fp32 master weights, fp32
optimizer state, LayerNorm and losses in fp32 (`albert/train/precision.py`). This benchmark
pretrains albert-tiny twice on a real corpus, once per precision, from the same seed (so the
same initial weights, data order and masks), and compares the per-step training loss curves
(max absolute and relative difference, and over a 10-step moving average) and the held-out
evaluation at the end. Each run is `python -m albert pretrain` in its own process, one after
the other; tokens/s is recorded too but the two runs are not interleaved, so on a shared
machine read it as indicative only (bench_pretrain.py measures speed).

On a CPU without native bf16 the bf16 run is forced (``ALBERT_NATIVE_BF16=1``: emulated,
correct but slow); the results record which it was.

    python benchmarks/bench_train_precision.py                 # albert-tiny, austen.txt, 300 steps x 8 x 128
    python benchmarks/bench_train_precision.py --steps 50 --workdir /tmp/tp   # a quick look, files kept
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import native_bf16, write_results

PRECISIONS = ("fp32", "bf16")


def prepare(corpus: Path, work: Path, vocab_size: int, seq: int) -> tuple[Path, Path]:
    """A tokenizer trained on `corpus` and dynamic-masking pretraining data built from it."""
    from albert.data import build_pretraining_data
    from albert.tokenizer_train import train_tokenizer

    tokenizer = work / "tokenizer"
    if not (tokenizer / "spiece.model").is_file():
        train_tokenizer([corpus], vocab_size, tokenizer, num_threads=1)
    data = work / "data"
    if not (data / "manifest.json").is_file():
        build_pretraining_data(
            tokenizer, [corpus], data, max_seq_length=seq, dynamic_masking=True, progress=False
        )
    return tokenizer, data


def pretrain(precision: str, data: Path, tokenizer: Path, output: Path, args: argparse.Namespace) -> None:
    argv = [sys.executable, "-m", "albert", "pretrain", "--data", str(data), "--tokenizer", str(tokenizer)]
    argv += [
        "--model",
        args.model,
        "--output",
        str(output),
        "--precision",
        precision,
        "--seed",
        str(args.seed),
    ]
    argv += ["--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--log-every", "1"]
    argv += ["--eval-every", str(args.eval_every), "--eval-batches", str(args.eval_batches)]
    argv += ["--save-every", str(args.steps), "--eval-fraction", "0.02"]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    if precision == "bf16" and not native_bf16():
        env["ALBERT_NATIVE_BF16"] = "1"  # emulated: the comparison still holds, the speed does not
    print("running:", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, env=env)


def read_run(output: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if not r.get("eval") and "loss" in r]
    return {
        "loss": [r["loss"] for r in train],
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in train[5:] or train),
        "eval": [r for r in records if r.get("eval")],
    }


def moving_average(values: list[float], window: int) -> list[float]:
    return [statistics.fmean(values[i : i + window]) for i in range(len(values) - window + 1)]


def compare(fp32: list[float], bf16: list[float]) -> dict[str, float]:
    """Largest absolute and relative gap between two loss curves, step by step."""
    gaps = [abs(a - b) for a, b in zip(fp32, bf16, strict=True)]
    return {
        "max_abs_diff": max(gaps),
        "max_rel_diff": max(g / abs(a) for g, a in zip(gaps, fp32, strict=True)),
        "mean_abs_diff": statistics.fmean(gaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/pretrain/en/austen.txt"))
    parser.add_argument("--model", default="albert-tiny")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--workdir", type=Path, help="keep the tokenizer, data and runs here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        tokenizer, data = prepare(args.corpus, work, args.vocab_size, args.seq)
        runs = {}
        for precision in PRECISIONS:
            output = work / f"run-{precision}"
            if not (output / "metrics.jsonl").is_file():
                pretrain(precision, data, tokenizer, output, args)
            runs[precision] = read_run(output)

    fp32, bf16 = runs["fp32"], runs["bf16"]
    final = {p: runs[p]["eval"][-1] for p in PRECISIONS}
    payload = {
        "model": args.model,
        "corpus": args.corpus.name,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seq": args.seq,
        "seed": args.seed,
        "bf16_native": native_bf16(),
        "per_step": compare(fp32["loss"], bf16["loss"]),
        "moving_average_10": compare(moving_average(fp32["loss"], 10), moving_average(bf16["loss"], 10)),
        "final_eval": {
            p: {
                k: final[p][k]
                for k in ("step", "loss", "mlm_loss", "sop_loss", "mlm_accuracy", "sop_accuracy")
            }
            for p in PRECISIONS
        },
        "final_eval_rel_diff": abs(final["bf16"]["loss"] - final["fp32"]["loss"]) / final["fp32"]["loss"],
        "eval_curve": {p: [(r["step"], r["loss"]) for r in runs[p]["eval"]] for p in PRECISIONS},
        "train_loss_first_last": {p: (runs[p]["loss"][0], runs[p]["loss"][-1]) for p in PRECISIONS},
        "tokens_per_second": {p: runs[p]["tokens_per_second"] for p in PRECISIONS},
        "losses": {p: runs[p]["loss"] for p in PRECISIONS},
    }
    write_results("bench_train_precision", payload)
    print(
        json.dumps(
            {k: payload[k] for k in ("per_step", "moving_average_10", "final_eval", "final_eval_rel_diff")}
        )
    )


if __name__ == "__main__":
    main()
