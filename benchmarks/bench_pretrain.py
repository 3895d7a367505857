"""Pretraining step speed and peak memory: our AlbertForPreTraining vs transformers'.

Same config, batch, sequence length, random weights and data (15% of positions labelled for
MLM) and the same optimiser (AdamW over the same parameter groups) on CPU. One training step =
forward (MLM + SOP loss) + backward + global-norm clipping + optimiser step, i.e. what
`albert pretrain` does per micro-batch. Ours computes MLM logits only at the masked positions
(`sparse_prediction=True`, as the trainer does); transformers computes them everywhere.

Variants: `ours` and `hf` in fp32, and `ours_bf16`: ours under the bf16 autocast the trainer
uses for `--precision bf16` (fp32 master weights), run where the CPU has native bf16 (AVX512-BF16
or AMX) and compared with our own fp32 (`hf_bf16` on request). Each step is timed in wall-clock
and in process CPU time; on a machine shared with other jobs the CPU-time rate is the steadier
one (with one thread it ignores time spent descheduled).

After the timed steps each worker profiles one more step (`step_profile.py`): the time per
region — embeddings, attention, FFN, MLM head, SOP head, loss, optimizer — and its backward part.

Every (implementation, configuration) runs in its own subprocess so peak RSS
(`ru_maxrss`) does not mix. Within a round the workers are alive together and their timed
steps interleave, one step of each in turn, so a change in machine load hits every variant
alike; `--rounds` repeats that with fresh workers. Memory is reported two ways, both always: the peak RSS of the whole process, which
on transformers' side includes importing transformers (hundreds of MB) and on ours does not,
and the growth of RSS over the process' footprint just before the model is built (imports
excluded on both sides: the memory training itself takes).

    python benchmarks/bench_pretrain.py                     # albert-tiny 32x128, albert-base-v2 8x128
    python benchmarks/bench_pretrain.py --configs albert-tiny:32x128 --steps 20
    python benchmarks/bench_pretrain.py --variants ours ours_bf16 hf hf_bf16 --no-profile
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import step_profile

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


VARIANTS = ("ours", "ours_bf16", "hf", "hf_bf16")
DEFAULT_VARIANTS = ("ours", "ours_bf16", "hf")


def build(impl: str, config: Any) -> tuple[Any, dict]:
    """The model (training mode) and the extra forward arguments for one implementation."""
    if impl == "hf":
        import transformers

        hf_config = transformers.AlbertConfig(**{k: v for k, v in config.to_dict().items() if k != "share"})
        return transformers.AlbertForPreTraining(hf_config).train(), {}
    from albert.modeling import AlbertForPreTraining

    return AlbertForPreTraining(config).train(), {"sparse_prediction": True}


def worker(variant: str, preset: str, batch: int, seq: int, args: argparse.Namespace) -> None:
    """One variant, one configuration, driven by the parent over stdin: build and warm up, say
    READY; then time one training step per `step` line (answering STEPPED), and on `finish`
    profile one more step and print the JSON result."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from albert import AlbertConfig
    from albert.optim import build_optimizer
    from albert.train.precision import resolve_precision

    impl, _, precision_name = variant.partition("_")
    precision = resolve_precision(precision_name or "fp32", torch.device("cpu"))
    config = AlbertConfig.from_preset(preset)
    before = current_rss_mb()
    model, extra = build(impl, config)
    optimizer = build_optimizer(model, "adamw", lr=1e-4)
    data = random_batch(config.vocab_size, batch, seq)

    def step() -> None:
        with precision.autocast(torch.device("cpu")):
            loss = model(**data, **extra).loss
        loss.backward()
        with step_profile.optimizer_region():
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    print("READY", flush=True)
    wall, cpu = [], []
    for command in sys.stdin:
        if command.strip() != "step":
            break
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        print("STEPPED", flush=True)
    result = {
        "variant": variant,
        "median_step_s": statistics.median(wall),
        "median_cpu_step_s": statistics.median(cpu),
        "tokens_per_second": batch * seq / statistics.median(wall),
        "tokens_per_cpu_second": batch * seq / statistics.median(cpu),
        "peak_rss_mb": peak_rss_mb(),
        "train_rss_mb": peak_rss_mb() - before,
    }
    if args.profile:
        step_profile.add_region_hooks(model)
        result["profile"] = step_profile.profile_step(step)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def start_worker(
    variant: str, preset: str, batch: int, seq: int, args: argparse.Namespace, log: Path
) -> subprocess.Popen:
    """The worker process. Its stderr goes to `log`: a pipe nobody reads while the steps run
    could fill up and stall it."""
    command = [sys.executable, __file__, "--worker", variant, preset, str(batch), str(seq)]
    command += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    command += [] if args.profile else ["--no-profile"]
    with open(log, "w") as errors:
        return subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
        )


def ask(process: subprocess.Popen, command: str | None, answer: str, log: Path) -> str:
    """Send `command` (if any) to a worker; its next line of output, which must start with `answer`."""
    if command is not None:
        process.stdin.write(command + "\n")
        process.stdin.flush()
    line = process.stdout.readline()
    if not line.startswith(answer):
        process.kill()
        process.wait()
        raise SystemExit(f"worker {' '.join(process.args[3:7])} failed:\n{line}{log.read_text()[-3000:]}")
    return line


def run_round(variants: list[str], preset: str, batch: int, seq: int, args: argparse.Namespace) -> dict:
    """One round: a worker per variant, built and warmed up one after the other, then their
    timed steps interleaved (one step of each in turn), so a change in machine load during the
    round hits every variant alike; then each worker's result, one after the other."""
    with tempfile.TemporaryDirectory(prefix="bench_pretrain_") as tmp:
        logs = {variant: Path(tmp) / f"{variant}.log" for variant in variants}
        workers = {}
        for variant in variants:  # warm-ups do not overlap
            workers[variant] = start_worker(variant, preset, batch, seq, args, logs[variant])
            ask(workers[variant], None, "READY", logs[variant])
        for _ in range(args.steps):
            for variant, process in workers.items():
                ask(process, "step", "STEPPED", logs[variant])
        results = {}
        for variant, process in workers.items():
            line = ask(process, "finish", RESULT_PREFIX, logs[variant])
            results[variant] = json.loads(line[len(RESULT_PREFIX) :])
            process.wait()
    return results


def variants_to_run(requested: list[str]) -> list[str]:
    """The requested variants, without the bf16 ones where the CPU has no native bf16 (there
    bf16 is emulated and slower than fp32: nothing to learn from timing it)."""
    from machine import native_bf16

    if native_bf16():
        return requested
    skipped = [v for v in requested if v.endswith("_bf16")]
    if skipped:
        print(f"skipping {', '.join(skipped)}: this CPU has no native bf16 (AVX512-BF16 or AMX)")
    return [v for v in requested if not v.endswith("_bf16")]


def summarize(spec: str, results: dict[str, list[dict]]) -> dict:
    """One configuration's row: best rate per variant, least memory, ratios, profiles, raw runs."""
    best = {v: max(rs, key=lambda r: r["tokens_per_second"]) for v, rs in results.items()}
    row: dict[str, Any] = {
        "config": spec,
        "tokens_per_second": {v: r["tokens_per_second"] for v, r in best.items()},
        "tokens_per_cpu_second": {
            v: max(r["tokens_per_cpu_second"] for r in rs) for v, rs in results.items()
        },
        "peak_rss_mb": {v: min(r["peak_rss_mb"] for r in rs) for v, rs in results.items()},
        "train_rss_mb": {v: min(r["train_rss_mb"] for r in rs) for v, rs in results.items()},
    }
    row["speed_ratio"] = row["tokens_per_second"]["ours"] / row["tokens_per_second"]["hf"]
    row["cpu_speed_ratio"] = row["tokens_per_cpu_second"]["ours"] / row["tokens_per_cpu_second"]["hf"]
    row["peak_rss_ratio"] = row["peak_rss_mb"]["ours"] / row["peak_rss_mb"]["hf"]
    row["train_rss_ratio"] = row["train_rss_mb"]["ours"] / row["train_rss_mb"]["hf"]
    if "ours_bf16" in results:  # bf16 against our own fp32
        row["bf16_speedup"] = row["tokens_per_second"]["ours_bf16"] / row["tokens_per_second"]["ours"]
        row["bf16_cpu_speedup"] = (
            row["tokens_per_cpu_second"]["ours_bf16"] / row["tokens_per_cpu_second"]["ours"]
        )
    profiles = {v: r["profile"] for v, r in best.items() if "profile" in r}
    if profiles:
        row["profiles"] = profiles
    row["runs"] = {
        v: [{k: x for k, x in r.items() if k != "profile"} for r in rs] for v, rs in results.items()
    }
    return row


def print_profiles(row: dict) -> None:
    names = [*step_profile.REGIONS, "unmatched", "unattributed"]
    print(f"\n{row['config']}: share of one profiled step per region (backward part in brackets)")
    print(f"{'variant':<10} {'step ms':>8} " + " ".join(f"{n[:12]:>14}" for n in names))
    for variant, profile in row["profiles"].items():
        cells = []
        for name in names:
            region = profile["regions"][name]
            cells.append(
                f"{region['share'] * 100:5.1f}% ({region['backward_ms'] / profile['step_ms'] * 100:4.1f})"
            )
        print(f"{variant:<10} {profile['step_ms']:>8.0f} " + " ".join(f"{c:>14}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["albert-tiny:32x128", "albert-base-v2:8x128"])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(DEFAULT_VARIANTS))
    parser.add_argument("--steps", type=int, default=8, help="timed steps per worker")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating worker rounds per config")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the per-region profile"
    )
    parser.add_argument("--name", default="bench_pretrain", help="results file: benchmarks/results/NAME.json")
    parser.add_argument(
        "--worker", nargs=4, metavar=("VARIANT", "PRESET", "BATCH", "SEQ"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        variant, preset, batch, seq = args.worker
        worker(variant, preset, int(batch), int(seq), args)
        return
    for needed in ("ours", "hf"):
        if needed not in args.variants:
            parser.error(f"--variants must include {needed}: the ratios are ours / transformers in fp32")

    import torch
    import transformers
    from machine import write_results

    variants = variants_to_run(args.variants)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"{args.steps} timed steps (+{args.warmup} warm-up) per worker, {args.rounds} rounds, AdamW\n")
    header = f"{'config':<24} {'variant':<10} {'tokens/s':>10} {'step ms':>9} {'tokens/CPU-s':>13}"
    print(header + f" {'peak RSS MB':>12} {'train RSS MB':>13}")
    summary = []
    for spec in args.configs:
        preset, shape = spec.split(":")
        batch, seq = (int(x) for x in shape.split("x"))
        results: dict[str, list[dict]] = {variant: [] for variant in variants}
        for _ in range(args.rounds):
            for variant, result in run_round(variants, preset, batch, seq, args).items():
                results[variant].append(result)
        row = summarize(spec, results)
        for variant in variants:
            r = max(results[variant], key=lambda r: r["tokens_per_second"])
            print(
                f"{spec:<24} {variant:<10} {r['tokens_per_second']:>10.0f} {r['median_step_s'] * 1000:>9.0f} "
                f"{row['tokens_per_cpu_second'][variant]:>13.0f} {row['peak_rss_mb'][variant]:>12.0f} "
                f"{row['train_rss_mb'][variant]:>13.0f}"
            )
        summary.append(row)
    print("\nratios ours/transformers (speed: higher is better; memory: lower is better)")
    for row in summary:
        print(
            f"{row['config']:<24} tokens/s x{row['speed_ratio']:.2f} (per CPU-second x{row['cpu_speed_ratio']:.2f})   "
            f"peak RSS x{row['peak_rss_ratio']:.2f} (transformers' import counted on its side only)   "
            f"training RSS growth x{row['train_rss_ratio']:.2f}"
        )
        if "bf16_speedup" in row:
            print(
                f"{'':<24} ours bf16 / ours fp32: tokens/s x{row['bf16_speedup']:.2f} "
                f"(per CPU-second x{row['bf16_cpu_speedup']:.2f})"
            )
    for row in summary:
        if "profiles" in row:
            print_profiles(row)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    torch.set_num_threads(args.threads)
    payload = {
        "transformers": transformers.__version__,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "interleaved": True,
        "optimizer": "adamw",
        "variants": variants,
        "rows": summary,
    }
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
