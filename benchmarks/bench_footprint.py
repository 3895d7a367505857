"""Size and CPU latency of fine-tuned models, side by side: what docs/distillation.md's table reports.

For each model directory: parameters (all, and without the task head), bytes of model.safetensors
on disk, and the latency of classifying one text at a time (batch 1, as an interactive service
would) through `albert.pipeline`, over the first --limit Rotten Tomatoes dev reviews (real text,
mixed lengths): median and 90th percentile in milliseconds, after a warm-up. Every model runs in
the same process with the same thread count, alternating order between rounds.

    python benchmarks/bench_footprint.py MODEL_DIR... [--limit 200] [--threads 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from workloads import ROTTEN_TOMATOES, read_texts

DEV = ROTTEN_TOMATOES / "dev.csv"


def parameters(directory: Path) -> dict[str, int]:
    from safetensors import safe_open

    total = head = 0
    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        for key in f.keys():
            n = int(np.prod(f.get_slice(key).get_shape()))
            total += n
            if key.startswith(("classifier.", "predictions.", "sop_classifier.")):
                head += n
    return {"parameters": total, "encoder_parameters": total - head}


def latencies(classify, texts: list[str]) -> list[float]:
    times = []
    for text in texts:
        start = time.perf_counter()
        classify([text])
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--name", default="bench_footprint", help="results file: benchmarks/results/NAME.json"
    )
    args = parser.parse_args()

    import torch

    import albert

    torch.set_num_threads(args.threads)
    texts = read_texts(DEV, args.limit)
    pipes = {m: albert.pipeline("text-classification", model=str(m)) for m in args.models}
    for pipe in pipes.values():
        latencies(pipe, texts[:10])  # warm-up
    measured: dict[Path, list[float]] = {m: [] for m in args.models}
    for r in range(args.rounds):
        order = args.models if r % 2 == 0 else list(reversed(args.models))
        for m in order:
            measured[m] += latencies(pipes[m], texts)
    rows = []
    for m in args.models:
        t = np.array(measured[m])
        rows.append(
            {
                "model": str(m),
                **parameters(m),
                "disk_mb": round((m / "model.safetensors").stat().st_size / 1e6, 1),
                "threads": args.threads,
                "median_ms": round(float(np.median(t)), 2),
                "p90_ms": round(float(np.percentile(t, 90)), 2),
            }
        )
        print(json.dumps(rows[-1]))
    from machine import write_results

    write_results(args.name, {"texts": len(texts), "rounds": args.rounds, "rows": rows})


if __name__ == "__main__":
    main()
