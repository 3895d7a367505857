"""Pretraining step speed and peak memory: our AlbertForPreTraining vs transformers'.

Same config, batch, sequence length, random weights and data (15% of positions labelled for
MLM) and the same optimiser (AdamW over the same parameter groups), fp32 on CPU. One training
step = forward (MLM + SOP loss) + backward + global-norm clipping + optimiser step, i.e. what
`albert pretrain` does per micro-batch. Ours computes MLM logits only at the masked positions
(`sparse_prediction=True`, as the trainer does); transformers computes them everywhere.

Every (implementation, configuration) runs in its own subprocess so peak RSS
(`ru_maxrss`) does not mix; implementations alternate over `--rounds` so machine load hits
both alike. Memory is reported two ways, both always: the peak RSS of the whole process, which
on transformers' side includes importing transformers (hundreds of MB) and on ours does not,
and the growth of RSS over the process' footprint just before the model is built (imports
excluded on both sides: the memory training itself takes).

    python benchmarks/bench_pretrain.py                     # albert-tiny 32x128, albert-base-v2 8x128
    python benchmarks/bench_pretrain.py --configs albert-tiny:32x128 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

RESULT_PREFIX = "RESULT "


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def random_batch(vocab: int, batch: int, seq: int, seed: int = 0) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab, (batch, seq), generator=g)
    labels = torch.full((batch, seq), -100)
    masked = torch.rand(batch, seq, generator=g) < 0.15
    labels[masked] = input_ids[masked]
    input_ids = input_ids.masked_fill(masked, 4)
    return {
        "input_ids": input_ids,
        "token_type_ids": (torch.arange(seq) >= seq // 2).long().expand(batch, seq).contiguous(),
        "attention_mask": torch.ones(batch, seq, dtype=torch.long),
        "labels": labels,
        "sentence_order_label": torch.randint(0, 2, (batch,), generator=g),
    }


def worker(impl: str, preset: str, batch: int, seq: int, steps: int, warmup: int, threads: int) -> None:
    """One implementation, one configuration: time `steps` training steps, print a JSON result."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from albert import AlbertConfig
    from albert.optim import build_optimizer

    config = AlbertConfig.from_preset(preset)
    if impl == "hf":
        import transformers

        hf_config = transformers.AlbertConfig(**{k: v for k, v in config.to_dict().items() if k != "share"})
        before = current_rss_mb()
        model = transformers.AlbertForPreTraining(hf_config)
        extra: dict = {}
    else:
        from albert.modeling import AlbertForPreTraining

        before = current_rss_mb()
        model = AlbertForPreTraining(config)
        extra = {"sparse_prediction": True}
    model.train()
    optimizer = build_optimizer(model, "adamw", lr=1e-4)
    data = random_batch(config.vocab_size, batch, seq)

    def step() -> None:
        loss = model(**data, **extra).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    result = {
        "impl": impl,
        "median_step_s": statistics.median(times),
        "tokens_per_second": batch * seq / statistics.median(times),
        "peak_rss_mb": peak_rss_mb(),
        "train_rss_mb": peak_rss_mb() - before,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(impl: str, preset: str, batch: int, seq: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--worker", impl, preset, str(batch), str(seq)]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if out.returncode or not lines:
        raise SystemExit(f"worker {impl} {preset} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["albert-tiny:32x128", "albert-base-v2:8x128"])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating worker pairs per config")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="bench_pretrain", help="results file: benchmarks/results/NAME.json")
    parser.add_argument(
        "--worker", nargs=4, metavar=("IMPL", "PRESET", "BATCH", "SEQ"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        impl, preset, batch, seq = args.worker
        worker(impl, preset, int(batch), int(seq), args.steps, args.warmup, args.threads)
        return

    import torch
    import transformers
    from machine import write_results

    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"{args.steps} timed steps (+{args.warmup} warm-up) per worker, {args.rounds} rounds, AdamW, fp32\n"
    )
    header = (
        f"{'config':<24} {'impl':<6} {'tokens/s':>10} {'step ms':>9} {'peak RSS MB':>12} {'train RSS MB':>13}"
    )
    print(header)
    summary = []
    for spec in args.configs:
        preset, shape = spec.split(":")
        batch, seq = (int(x) for x in shape.split("x"))
        results: dict[str, list[dict]] = {"ours": [], "hf": []}
        for _ in range(args.rounds):
            for impl in ("ours", "hf"):
                results[impl].append(run_worker(impl, preset, batch, seq, args))
        best = {impl: max(rs, key=lambda r: r["tokens_per_second"]) for impl, rs in results.items()}
        peak = {impl: min(r["peak_rss_mb"] for r in rs) for impl, rs in results.items()}
        grown = {impl: min(r["train_rss_mb"] for r in rs) for impl, rs in results.items()}
        for impl in ("ours", "hf"):
            r = best[impl]
            print(
                f"{spec:<24} {impl:<6} {r['tokens_per_second']:>10.0f} {r['median_step_s'] * 1000:>9.0f} "
                f"{peak[impl]:>12.0f} {grown[impl]:>13.0f}"
            )
        summary.append(
            {
                "config": spec,
                "tokens_per_second": {impl: best[impl]["tokens_per_second"] for impl in best},
                "peak_rss_mb": peak,
                "train_rss_mb": grown,
                "speed_ratio": best["ours"]["tokens_per_second"] / best["hf"]["tokens_per_second"],
                "peak_rss_ratio": peak["ours"] / peak["hf"],
                "train_rss_ratio": grown["ours"] / grown["hf"],
                "runs": results,
            }
        )
    print("\nratios ours/transformers (speed: higher is better; memory: lower is better)")
    for row in summary:
        print(
            f"{row['config']:<24} tokens/s x{row['speed_ratio']:.2f}   peak RSS x{row['peak_rss_ratio']:.2f} "
            f"(transformers' import counted on its side only)   training RSS growth x{row['train_rss_ratio']:.2f}"
        )
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    torch.set_num_threads(args.threads)
    payload = {
        "transformers": transformers.__version__,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "optimizer": "adamw",
        "rows": summary,
    }
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
