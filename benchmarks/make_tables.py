"""Generate docs/benchmarks.md from the benchmarks' raw results (benchmarks/results/*.json).

Every table in that page is written here from the JSON the benchmarks saved, each with the
machine it ran on (CPU, kernel flags, threads, load, GEMM probe) and the command that produced
it. Edit the prose here, never the page; a test regenerates the page and compares it byte for
byte with the committed one.

    python benchmarks/make_tables.py            # rewrite docs/benchmarks.md
    python benchmarks/make_tables.py --check    # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"

Record = dict[str, Any]

INTRO = """\
# Benchmarks

Every benchmark measures us and the reference (transformers on the same weights, or the same
configuration) side by side in one run, alternating, and prints ratios; ratios are ours /
transformers, so above 1 is faster (for memory, below 1 is smaller). Speed targets live here,
never in unit tests. The benchmarks are in `benchmarks/`; run them from the repository root with
the project's venv. Each writes its raw results to `benchmarks/results/NAME.json`, and this page
is generated from those files by `python benchmarks/make_tables.py` (do not edit it by hand).

Results differ by machine, so every table names its own: CPU model, the kernel-relevant CPU
flags, torch threads, the load average when the benchmark finished, and the GEMM probe — the
best rate of a 1024×768 @ 768×3072 product per precision, over every kernel path the model can
use, including its own packed oneDNN linear (`benchmarks/machine.py`). MFU (model FLOP
utilisation) is measured against that probe, so it cannot honestly exceed 100 %; a value above
it is marked ⚠ rather than clamped. A load average above the core count means other jobs shared
the CPU during the run: read the ratios, which were measured side by side, rather than the
absolute rates — and even the ratios move under heavy sharing, since code that synchronises its
threads more often (more, smaller kernels per layer) loses more time to a descheduled thread.
"""


def fmt_ratio(value: float) -> str:
    return f"**{value:.2f}×**"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def fmt_mfu(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0%}".replace("%", " %") + (" ⚠" if value > 1.0 else "")


def fmt_target(goal: str, met: bool) -> str:
    """A target next to the figure it judges; a miss is marked, never left out."""
    return f"(target {goal}: {'met' if met else 'missed ✗'})"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(record: Record) -> str:
    """One paragraph naming the machine and the command behind a table."""
    machine = record["machine"]
    load = machine.get("load_average") or ([record["load_average"]] if "load_average" in record else [])
    busy = load and load[0] > machine["cores"]
    probes = (
        "; ".join(
            f"{name} {probe['gflops']:,.0f} GFLOP/s ({probe['path']})"
            for name, probe in machine.get("gemm_peak", {}).items()
        )
        or "not recorded with these results"
    )
    text = (
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({', '.join(machine['flags']) or 'no AVX'}), "
        f"torch {machine['torch']} ({machine['torch_cpu_capability']}), {machine['torch_threads']} threads"
    )
    if load:
        text += f", load average {load[0]:.1f}" + (" — shared with other jobs" if busy else "")
    text += f". GEMM probe: {probes}. Command: `{record['command']}`."
    return text


def model_section(record: Record) -> str:
    rows = []
    for row in record["rows"]:
        seq = row["sequences_per_second"]
        rows.append(
            [
                row["precision"],
                row["shape"],
                f"{row['padded_length']} ({row['real_token_fraction']:.0%} real)".replace("%", " %"),
                fmt_rate(seq["transformers"]),
                fmt_rate(seq["ours"]),
                fmt_ratio(row["ratio"]),
                fmt_mfu(row["mfu"]["transformers"]),
                fmt_mfu(row["mfu"]["ours"]),
            ]
        )
    header = ["precision", "batch", "padded length", "transformers seq/s", "ours seq/s", "ratio"]
    header += ["their MFU", "our MFU"]
    return f"""\
## Model forward — `bench_model.py`

{record["model"]}, saved by transformers {record["transformers"]} and loaded by us; eval,
`torch.inference_mode()`, median of {record["rounds"]} alternating calls per model. "N mixed" is N
Rotten Tomatoes dev reviews padded to the longest of them (the fraction of real tokens is given);
the others are full-length. bf16 runs both models under `torch.autocast`. MFU = FLOPs of the
padded batch / time / the GEMM probe of the same precision. This is the project's one
measurement of our fp32 forward against transformers'.

{table(header, rows)}

{machine_line(record)}

Where the fp32 speed comes from: the forward is mostly GEMMs. Transformers runs three Q/K/V
products per layer; we run one fused product, concatenating the shared Q/K/V weights once per
forward rather than per layer. At CPU inference (no autograd, not tracing) the linear layers go
through oneDNN with each weight reordered ("packed") once and cached, and GELU fused into the FFN
GEMM. Outputs stay within 3e-6 of transformers (the parity tests run through the fast path).
"""


def inference_section(record: Record) -> str:
    rows = []
    for row in record["rows"]:
        seconds = row["seconds"]
        for name, value in seconds.items():
            rows.append(
                [
                    row["shape"],
                    name,
                    f"{value * 1e3:.1f}",
                    fmt_ratio(seconds["transformers fp32"] / value),
                    f"{seconds['ours fp32'] / value:.2f}×",
                    f"{row['agreement'][name]['min_cosine']:.5f}",
                ]
            )
    header = ["batch", "variant", "latency ms", "vs transformers fp32", "vs ours fp32", "min cosine"]
    return f"""\
## Inference: int8 and ONNX — `bench_inference.py`

{record["model"]}; every variant runs the same weights. Latency is the median of
{record["rounds"]} rounds per variant (each at least two calls and {record["min_seconds"]} s),
variants in round-robin; "N mixed" is N Rotten Tomatoes dev reviews padded to the longest. Min cosine:
hidden states at the real positions against transformers fp32. int8 (PyTorch) is
`albert.quantize` (quantized engine `{record["quantized_engine"]}`); ONNX int8 is
`albert export --int8`. The fp32 rows are the references the deployment variants are measured
against; the fp32 comparison with transformers is `bench_model.py`'s table above.

{table(header, rows)}

{machine_line(record)}
"""


def accuracy_section(record: Record) -> str:
    rows = [
        [row["variant"], f"{row['accuracy']:.2f}", f"{row['vs_fp32']:+.2f}", f"{row['agreement']:.1f} %"]
        for row in record["rows"]
    ]
    header = [
        "variant",
        f"dev accuracy ({record['examples']:,})",
        "vs fp32 (points)",
        "same prediction as fp32",
    ]
    return f"""\
## int8 accuracy cost — `bench_inference.py --accuracy`

A fine-tuned sequence classifier (`{record["model"]}`) on `{record["dev"]}`, in every precision.

{table(header, rows)}

{machine_line(record)}
"""


def tokenizer_section(record: Record) -> str:
    rows = [
        [
            f"{row['workload']} ({row['texts']:,} texts)",
            row["mode"],
            f"{row['texts_per_second']['ours']:,.0f}",
            f"{row['texts_per_second']['transformers']:,.0f}",
            fmt_ratio(row["ratio"]),
        ]
        for row in record["rows"]
    ]
    return f"""\
## Tokenizer — `bench_tokenizer.py`

{record["vocab_size"]:,}-piece SentencePiece model trained the ALBERT way, against the
`AlbertTokenizer` of transformers {record["transformers"]} on the same file; identical outputs are checked before
timing; best of {record["repeats"]} alternating runs. Both run the same Rust engine
(`tokenizers`); for plain lists the engine itself is most of the time.

{table(["workload", "output", "ours texts/s", "transformers texts/s", "ratio"], rows)}

{machine_line(record)}
"""


# ours / transformers in fp32, per configuration; bf16 against our own fp32; peak RSS on every row
PRETRAIN_SPEED_TARGETS = {"albert-tiny:32x128": 2.0, "albert-base-v2:8x128": 1.3}
PRETRAIN_PEAK_RSS_TARGET = 0.5
PRETRAIN_BF16_TARGET = 1.6
PROFILE_REGIONS = ["embeddings", "attention", "ffn", "mlm_head", "sop_head", "loss", "optimizer"]
PROFILE_HEADER = ["embeddings", "attention", "FFN", "MLM head", "SOP head", "loss", "optimizer"]


def pretrain_section(record: Record) -> str:
    if "variants" in record:  # results with CPU time, bf16 and the per-region profile
        return pretrain_section_with_profile(record)
    rows = []
    for row in record["rows"]:
        speed, peak, grown = row["tokens_per_second"], row["peak_rss_mb"], row["train_rss_mb"]
        rows.append(
            [
                row["config"],
                f"{speed['ours']:,.0f} / {speed['hf']:,.0f}",
                fmt_ratio(row["speed_ratio"]),
                f"{peak['ours']:,.0f} / {peak['hf']:,.0f}",
                f"{row['peak_rss_ratio']:.2f}×",
                f"{grown['ours']:,.0f} / {grown['hf']:,.0f}",
                fmt_ratio(row["train_rss_ratio"]),
            ]
        )
    header = ["config", "tokens/s ours / theirs", "ratio", "peak RSS MB ours / theirs", "ratio"]
    header += ["training RSS growth MB ours / theirs", "ratio"]
    return f"""\
## Pretraining throughput and memory — `bench_pretrain.py`

Same config, batch, sequence length and optimiser ({record["optimizer"]}) for both; one step is
forward (MLM + SOP) + backward + clipping + optimiser step; {record["steps"]} timed steps after
{record["warmup"]} warm-up, best of {record["rounds"]} alternating rounds. Each (implementation,
configuration) runs in its own subprocess so memory does not mix. Memory is given both ways:
peak RSS of the whole process — which on transformers' side includes importing transformers and
on ours does not — and the growth of RSS from just before the model is built (imports excluded on
both sides: what training itself takes). Ours computes MLM logits only at the masked positions.

{table(header, rows)}

{machine_line(record)}
"""


def pretrain_targets(row: Record) -> str:
    """The targets one configuration's row is judged by, each next to its figure."""
    judged = []
    goal = PRETRAIN_SPEED_TARGETS.get(row["config"])
    if goal is not None:
        judged.append(
            f"tokens/s {fmt_ratio(row['speed_ratio'])} transformers' "
            + fmt_target(f"≥ {goal}×", row["speed_ratio"] >= goal)
        )
    judged.append(
        f"peak RSS {row['peak_rss_ratio']:.2f}× transformers' "
        + fmt_target(f"≤ {PRETRAIN_PEAK_RSS_TARGET}×", row["peak_rss_ratio"] <= PRETRAIN_PEAK_RSS_TARGET)
    )
    if "bf16_speedup" in row:
        judged.append(
            f"bf16 {fmt_ratio(row['bf16_speedup'])} our fp32 "
            + fmt_target(f"≥ {PRETRAIN_BF16_TARGET}×", row["bf16_speedup"] >= PRETRAIN_BF16_TARGET)
        )
    return f"- {row['config']}: " + "; ".join(judged)


def profile_rows(record: Record) -> list[list[str]]:
    rows = []
    for row in record["rows"]:
        for variant, profile in row.get("profiles", {}).items():
            regions = profile["regions"]
            cells = [f"{regions[name]['share']:.0%}".replace("%", " %") for name in PROFILE_REGIONS]
            rest = regions["unmatched"]["share"] + regions["unattributed"]["share"]
            rows.append(
                [
                    row["config"],
                    variant,
                    f"{profile['step_ms']:,.0f}",
                    *cells,
                    f"{rest:.0%}".replace("%", " %"),
                ]
                + [f"{profile['backward_share']:.0%}".replace("%", " %")]
            )
    return rows


def pretrain_timing(record: Record) -> str:
    """How the steps were timed: interleaved across live workers, or worker after worker."""
    steps = f"{record['steps']} timed steps after\n{record['warmup']} warm-up"
    if record.get("interleaved"):
        return (
            f"{steps}, median step per worker; the variants' workers run side by side with their\n"
            f"timed steps interleaved (one step of each in turn), best of {record['rounds']} rounds "
            "of fresh workers."
        )
    return f"{steps}, best of {record['rounds']} alternating rounds."


def pretrain_section_with_profile(record: Record) -> str:
    variants = record["variants"]
    rows = []
    for row in record["rows"]:
        for variant in variants:
            rows.append(
                [
                    row["config"],
                    variant,
                    fmt_rate(row["tokens_per_second"][variant]),
                    fmt_rate(row["tokens_per_cpu_second"][variant]),
                    f"{row['peak_rss_mb'][variant]:,.0f}",
                    f"{row['train_rss_mb'][variant]:,.0f}",
                ]
            )
    header = [
        "config",
        "variant",
        "tokens/s",
        "tokens per CPU-second",
        "peak RSS MB",
        "training RSS growth MB",
    ]
    ratios = [
        [
            row["config"],
            fmt_ratio(row["speed_ratio"]),
            fmt_ratio(row["cpu_speed_ratio"]),
            f"{row['peak_rss_ratio']:.2f}×",
            f"{row['train_rss_ratio']:.2f}×",
            fmt_ratio(row["bf16_speedup"]) if "bf16_speedup" in row else "—",
            fmt_ratio(row["bf16_cpu_speedup"]) if "bf16_cpu_speedup" in row else "—",
        ]
        for row in record["rows"]
    ]
    ratio_header = ["config", "tokens/s ours / theirs", "per CPU-second", "peak RSS", "training RSS growth"]
    ratio_header += ["ours bf16 / ours fp32", "per CPU-second"]
    profile_header = ["config", "variant", "profiled step ms", *PROFILE_HEADER, "other", "backward part"]
    targets = "\n".join(pretrain_targets(row) for row in record["rows"])
    return f"""\
## Pretraining throughput and memory — `bench_pretrain.py`

Same config, batch, sequence length and optimiser ({record["optimizer"]}) for both; one step is
forward (MLM + SOP) + backward + clipping + optimiser step; {pretrain_timing(record)} Each (variant,
configuration) runs in its own subprocess so memory does not mix. `ours` and `hf` (transformers)
run in fp32; `ours_bf16` is ours under the bf16 autocast of `--precision bf16` (fp32 master
weights), compared with our own fp32. Each step is timed in wall-clock and in process CPU time
(steadier on a shared machine). Memory is given both ways: peak RSS of the whole process — which
on transformers' side includes importing transformers and on ours does not — and the growth of
RSS from just before the model is built (imports excluded on both sides: what training itself
takes). Ours computes MLM logits only at the masked positions.

{table(header, rows)}

{table(ratio_header, ratios)}

{targets}

Where the time goes: one more step per worker under torch.profiler (`benchmarks/step_profile.py`),
each op's time charged to the region of the module that ran it — backward ops to the region of
the forward op that created them — as a share of the profiled step; "loss" is the model's own
forward outside its modules (masked-position gather, cross-entropies — and in ours the vocabulary
projection at the masked positions, computed with the loss as one node), "other" the gradient
accumulation and the time between ops, "backward part" the share spent in the backward pass.

{table(profile_header, profile_rows(record))}

{machine_line(record)}
"""


def predict_section(record: Record) -> str:
    speed, seconds = record["texts_per_second"], record["seconds"]
    rows = [[name, f"{speed[name]:.1f}", f"{seconds[name]:.1f} s"] for name in speed]
    rows.append(
        ["ratio", fmt_ratio(record["ratio"]), f"predictions agree on {record['agreement'] * 100:.0f} %"]
    )
    words = record["words"]
    return f"""\
## Prediction throughput — `bench_predict.py`

Text classification over {record["texts"]:,} Rotten Tomatoes dev reviews ({words["min"]}–{words["max"]}
words, mean {words["mean"]}) with an albert-base-v2-geometry classifier, same weights for both,
batch size {record["batch_size"]}; best of {record["repeats"]}. Ours sorts inputs by length and
closes a batch when the next input would add padding; transformers' pipeline batches in input
order.

{table(["", "texts/s", "time"], rows)}

{machine_line(record)}
"""


def data_section(record: Record) -> str:
    rows = [
        [
            str(row["workers"]),
            f"{row['wall_s']:.1f}",
            f"{row['mb_per_s']:.2f}",
            f"{row['mb_per_s'] / row['workers']:.2f}",
            f"{row['cpu_s']:.1f}",
            f"{row['peak_rss_mb']:,.0f}",
            f"{row['speedup']:.2f}×",
        ]
        for row in record["rows"]
    ]
    reference = ", ".join(f"`{k}` {v:.2f}" for k, v in record["tokenizer_alone_mb_per_cpu_second"].items())
    identical = "byte-identical" if record["byte_identical"] else "NOT identical"
    header = ["workers", "wall s", "MB/s", "MB/s per worker", "CPU s", "peak RSS MB", "speed-up"]
    return f"""\
## Pretraining data — `bench_data.py`

`albert data` on {record["megabytes"]} MB of the shared English and Chinese pretraining text
(concatenated as often as needed), 8,000-piece tokenizer, `max_seq_length`
{record["max_seq_length"]}, dupe factor {record["dupe_factor"]}. Outputs for every worker count are
{identical}. Reference from the same run, the tokenizer alone in one process, MB per CPU-second:
{reference}.

{table(header, rows)}

{machine_line(record)}
"""


def gpu_section(record: Record) -> str:
    rows = []
    for row in record["rows"]:
        train = row["train"]
        rows.append(
            [
                row["precision"],
                " / ".join(f"{r['tokens_per_second']:,.0f}" for r in train),
                " / ".join(f"{r['loss']:.3f}" for r in train),
                " / ".join(f"{x:.3f}" for x in row["held_out_mlm_accuracy"]) or "—",
            ]
        )
    steps = " / ".join(str(r["step"]) for r in record["rows"][0]["train"])
    header = [
        "precision",
        f"tokens/s at steps {steps}",
        f"loss at steps {steps}",
        f"held-out MLM accuracy at {record['steps']}",
    ]
    return f"""\
## The CUDA path of pretraining — `gpu_pretrain_check.sh`

Not a CPU benchmark and not run in CI: `albert pretrain` on {record["device"]} (CUDA
{record["torch_cuda"]}) in every precision it selects, {record["model"]}, batch {record["batch"]},
{record["optimizer"]}, {record["steps"]} steps per precision.

{table(header, rows)}

{machine_line(record)}
"""


def precision_rows(workload: Record, targeted: bool) -> tuple[list[list[str]], list[str]]:
    """Rows of one bench_precision workload, and the targets judged on it (full length only)."""
    vs_ours, vs_theirs = workload["speedup_vs_ours_fp32"], workload["speedup_vs_transformers_fp32"]
    cosine, rows, targets = workload["min_cosine_vs_ours_fp32"], [], []
    for name, ms in workload["median_ms"].items():
        rows.append(
            [name, f"{ms:,.0f}", f"{vs_ours[name]:.2f}×", f"{vs_theirs[name]:.2f}×", f"{cosine[name]:.5f}"]
        )
    if targeted:
        bf16 = "ours bf16"
        targets.append(
            f"bf16 {fmt_ratio(vs_ours[bf16])} our fp32 {fmt_target('≥ 1.8×', vs_ours[bf16] >= 1.8)}"
        )
        good = cosine[bf16] >= 0.9995
        targets.append(f"bf16 min cosine **{cosine[bf16]:.5f}** {fmt_target('≥ 0.9995', good)}")
        for name in (n for n in vs_theirs if "int8" in n):
            met = vs_theirs[name] >= 3.0
            targets.append(f"{name} {fmt_ratio(vs_theirs[name])} transformers fp32 {fmt_target('≥ 3×', met)}")
    return rows, targets


def part_cpu(part: Record) -> str:
    """", on CPU (flags)" for a result measured separately from the rest of its file (which names
    the machine of its latest run); "" where the part did not record it."""
    cpu = part.get("cpu")
    return f", on {cpu['model']} ({', '.join(cpu['flags']) or 'no AVX'})" if cpu else ""


def precision_section(record: Record) -> str:
    speed, accuracy, hardware = record["speed"], record["accuracy"], record["hardware"]
    header = ["variant", "median ms", "vs our fp32", "vs transformers fp32", "min cosine vs our fp32"]
    tables, targets = [], []
    for name, workload in speed["workloads"].items():
        rows, judged = precision_rows(workload, name.startswith("full length"))
        targets += judged
        lengths = [shape[1] for shape in workload["batch_shapes"]]
        texts = sum(shape[0] for shape in workload["batch_shapes"])
        padding = (
            f"{texts} texts in file order, each batch padded to its longest (lengths "
            f"{min(lengths)}–{max(lengths)}; {workload['real_tokens']:,} real tokens in "
            f"{workload['padded_tokens']:,} positions)"
            if workload["real_tokens"] < workload["padded_tokens"]
            else "random ids, no padding"
        )
        tables.append(f"**{name}** — {padding}:\n\n{table(header, rows)}")
    geometry = accuracy.get("geometry", {})
    model = (
        f"an ALBERT (E {geometry['embedding_size']}, H {geometry['hidden_size']}, "
        f"{geometry['num_hidden_layers']} shared layers, {geometry['num_attention_heads']} heads, "
        f"FFN {geometry['intermediate_size']}, {geometry['vocab_size']:,}-piece tokenizer) fine-tuned "
        f"on the Rotten Tomatoes train split"
        + (f" from `{accuracy['fine_tuned_from']}`" if accuracy.get("fine_tuned_from") else "")
        if geometry
        else "a fine-tuned sequence classifier"
    )
    precisions, data = accuracy["precisions"], "/".join(Path(accuracy["data"]).parts[-2:])
    fp32 = precisions["fp32"]["accuracy"]
    rows = [
        [
            name,
            f"{100 * result['accuracy']:.2f}",
            f"{100 * (result['accuracy'] - fp32):+.2f}",
            f"{100 * result['agreement_with_fp32']:.2f} %",
        ]
        for name, result in precisions.items()
    ]
    full = next(w for n, w in speed["workloads"].items() if n.startswith("full length"))
    bf16_speed = full["speedup_vs_ours_fp32"]["ours bf16"]
    bf16_cost = 100 * (precisions["bf16"]["accuracy"] - fp32)
    int8_cost = max(abs(100 * (r["accuracy"] - fp32)) for n, r in precisions.items() if "int8" in n)
    units = ", ".join(hardware["bf16_units"]) or "none"
    native = "a CPU with native bf16," if hardware["native_bf16"] else "this CPU, which emulates bf16,"
    accuracy_header = ["precision", f"dev accuracy ({accuracy['examples']:,})", "vs fp32 (points)"]
    accuracy_header.append("same prediction as fp32")
    return f"""\
## Inference precision: bf16 and int8 against fp32 — `bench_precision.py`

{speed["model"]}, the same weights in every variant; bf16 units: {units}; VNNI:
{"yes" if hardware["vnni"] else "no"}. bf16 is `from_pretrained(..., dtype="bf16")`: bf16 weights
packed once for oneDNN, with the same fused GELU path as fp32 (LayerNorm statistics and the
attention softmax accumulate in fp32 inside the kernels); int8 (torch) is `albert.quantize`, int8
(ONNX) is `albert export --int8`. Variants run round-robin; every ratio is taken within one round
and the median over {speed["rounds"]} rounds is reported. Min cosine: the minimum over real
tokens of the last hidden states against our fp32. Command: `{speed["command"]}`.

{chr(10).join(f"{t}{chr(10)}" for t in tables)}
Targets at full length: {"; ".join(targets)}.

Accuracy cost on a real fine-tuned model: {model}, scored on `{data}` at sequence length
{accuracy["seq"]}{part_cpu(accuracy)}. Command: `{accuracy["command"]}`.

{table(accuracy_header, rows)}

On {native} bf16 inference runs at {bf16_speed:.2f}× our fp32 at full length for
{bf16_cost:+.2f} points of dev accuracy, which is why `--precision auto` (the CLI default) picks
bf16 where the CPU multiplies it natively. The int8 ONNX export keeps activations at the full 8
bits (`DynamicQuantizeLinear`, u8) and, exported on a CPU with VNNI like this one, weights int8
per output channel over the full [-127, 127] — the u8 × s8 layout VNNI multiplies without
saturation; exported on a CPU without VNNI the weights get 7 bits ([-64, 64]), because AVX2's
16-bit sums saturate (a test checks the quantisation recorded in the exported graph); int8 stays
within {int8_cost:.2f} points of fp32 on that model. On short padded
batches the GEMMs are small, so the bf16 units pay off far less than at full length.

{machine_line(record)}
"""


SERVE_TARGETS_AT = 32  # the concurrency where batching must pay off


def serve_targets(model: Record) -> list[str]:
    """bench_serve's targets for one model, each judged from the recorded runs."""
    runs = {name: {run["concurrency"]: run for run in model["runs"][name]} for name in model["runs"]}
    ours, lines = runs["batching"], []
    if SERVE_TARGETS_AT in ours:
        rate = ours[SERVE_TARGETS_AT]["texts_per_s"]
        for other, goal in (("no batching", 2.0), ("transformers", 3.0)):
            ratio = rate / runs[other][SERVE_TARGETS_AT]["texts_per_s"]
            target = fmt_target(f"≥ {goal:.0f}×", ratio >= goal)
            lines.append(f"batching / {other} at concurrency {SERVE_TARGETS_AT}: {fmt_ratio(ratio)} {target}")
    if 1 in ours:
        p50, direct = ours[1]["p50_ms"], model["in_process_p50_ms"]
        passive = model.get("in_process_passive_p50_ms")
        if passive is None:
            baseline, against = direct, f"{direct:,.1f} ms in process"
        else:  # judged against the faster way to call the model directly
            baseline = min(direct, passive)
            against = (
                f"{baseline:,.1f} ms in process (the faster of {direct:,.1f} ms with spinning threads "
                f"and {passive:,.1f} ms with sleeping ones)"
            )
        target = fmt_target("within 5 ms", p50 - baseline <= 5.0)
        lines.append(f"p50 at concurrency 1 {p50:,.1f} ms against {against} {target}")
    top = max(ours)
    failed = sum(runs[name][top]["failures"] for name in ("batching", "no batching"))
    lines.append(f"failed requests of ours at concurrency {top}: {failed} {fmt_target('0', failed == 0)}")
    if "rss" in model:
        rss = model["rss"]
        target = fmt_target("< 10 %", rss["growth"] < 0.10)
        lines.append(
            f"RSS {rss['before_mb']:,.0f} → {rss['after_mb']:,.0f} MB over {rss['requests']:,} requests "
            f"({100 * rss['growth']:+.1f} %) {target}"
        )
    return lines


def serve_section(record: Record) -> str:
    header = ["model", "server", "concurrency", "texts/s", "p50 ms", "p95 ms", "p99 ms"]
    header += ["server CPU ms/text", "texts/batch", "padded tokens/text", "failed"]
    rows, targets = [], []
    for preset, model in record["models"].items():
        for name, runs in model["runs"].items():
            rows += [
                [
                    preset,
                    name,
                    str(run["concurrency"]),
                    f"{run['texts_per_s']:.2f}",
                    f"{run['p50_ms']:,.0f}",
                    f"{run['p95_ms']:,.0f}",
                    f"{run['p99_ms']:,.0f}",
                    f"{run['server_cpu_ms_per_text']:.1f}",
                    f"{run['texts_per_batch']:.1f}" if "texts_per_batch" in run else "–",
                    f"{run['padded_tokens_per_text']:.1f}" if "padded_tokens_per_text" in run else "–",
                    str(run["failures"]),
                ]
                for run in runs
            ]
        targets += [f"- {preset}: {line}" for line in serve_targets(model)]
    precision = (
        f"Our servers and the in-process baseline run in {record['precision']}, transformers' server in fp32. "
        if "precision" in record
        else ""
    )
    title = "Serving over HTTP" if record.get("precision", "fp32") == "fp32" else "Serving over HTTP in bf16"
    return f"""\
## {title} — `bench_serve.py`

`albert serve` with batching, the same server with `--max-batch-size 1` ("no batching") and
transformers' `pipeline` behind the same FastAPI + uvicorn, one call per request, each in its own
process with {record["threads"]} torch threads, loaded over loopback by an async HTTP client with
one connection per concurrent request; {record["data"]}. Models have random weights (speed does not
depend on them). Server CPU per text is the CPU time the server process spent per answer, which
other processes on a shared machine distort far less than wall-clock rates; texts per batch and
padded tokens per text are what our servers' /metrics histograms counted under that load.
{precision}The whole
run took {record["seconds"] / 60:.0f} minutes.

{table(header, rows)}

Targets:

{chr(10).join(targets)}

{machine_line(record)}
"""


TF_RSS_TARGET = 1.5  # peak RSS of the conversion, in checkpoints: tensors are streamed, never all held


def tf_checkpoint_section(record: Record) -> str:
    rows = []
    for side, runs in record["runs"].items():
        if runs:
            rss = max(run["peak_rss_mb"] for run in runs)
            seconds = min(run["seconds"] for run in runs)
            ratio = rss / record["checkpoint_mb"]
            rows.append([side, f"{seconds:.1f}", f"{rss:,.0f}", f"{ratio:.2f}×", str(len(runs))])
    header = ["converter", "seconds (best)", "peak RSS MB (max)", "peak RSS / checkpoint", "runs"]
    over = max(run["peak_rss_mb"] for run in record["runs"]["albert"]) / record["checkpoint_mb"]
    targets = [
        f"peak RSS {over:.2f}× the checkpoint {fmt_target(f'≤ {TF_RSS_TARGET}×', over <= TF_RSS_TARGET)}"
    ]
    if "speedup" in record:
        speed = record["speedup"]
        targets.insert(0, f"speed-up {fmt_ratio(speed)} {fmt_target('> 1×', speed > 1)}")
        identical = "identical" if record["identical_weights"] else "NOT identical"
        targets.append(f"the two outputs' tensors are {identical}")
    return f"""\
## Converting a TF checkpoint ({record["size"]}) — `bench_tf_checkpoint.py`

A synthesised {record["size"]}-sized checkpoint ({record["checkpoint_mb"]:,.1f} MB, Google's
variable names, random values) converted to a safetensors directory by `albert convert-tf` and by
TensorFlow's reader + transformers' `load_tf_weights_in_albert` + `save_pretrained`, each side its
own process, interleaved: wall time and peak RSS from `wait4`. Peak RSS includes each process's
interpreter and libraries, which dominate for a small checkpoint.

{table(header, rows)}

Targets: {"; ".join(targets)}.

{machine_line(record)}
"""


def train_precision_section(record: Record) -> str:
    fp32, bf16 = record["final_eval"]["fp32"], record["final_eval"]["bf16"]
    rows = [
        [
            name,
            f"{gap['max_abs_diff']:.4f}",
            f"{gap['max_rel_diff']:.3%}".replace("%", " %"),
            f"{gap['mean_abs_diff']:.4f}",
        ]
        for name, gap in (("per step", record["per_step"]), ("10-step mean", record["moving_average_10"]))
    ]
    evals = [
        [name, f"{e['loss']:.4f}", f"{e['mlm_loss']:.4f}", f"{e['sop_loss']:.4f}", f"{e['mlm_accuracy']:.4f}"]
        for name, e in (("fp32", fp32), ("bf16", bf16))
    ]
    emulated = "" if record["bf16_native"] else " bf16 was emulated on this CPU (`ALBERT_NATIVE_BF16=1`)."
    speed = record["tokens_per_second"]
    first, last = record["train_loss_first_last"]["fp32"]
    eval_gap = f"{record['final_eval_rel_diff']:.3%}".replace("%", " %")
    return f"""\
## bf16 pretraining against fp32 — `bench_train_precision.py`

`albert pretrain` of {record["model"]} on `{record["corpus"]}`, batch {record["batch_size"]} x
{record["seq"]}, {record["steps"]} steps, seed {record["seed"]}, once with `--precision fp32` and
once with `--precision bf16` (autocast, fp32 master weights and optimizer state, LayerNorm and
losses in fp32): the same initial weights, data order and masks. The fp32 training loss went from
{first:.2f} to {last:.2f}; the gap between the two training-loss curves, step by step:{emulated}

{table(["training loss", "max abs difference", "max relative difference", "mean abs difference"], rows)}

Held-out evaluation at step {fp32["step"]} (relative difference of the loss: {eval_gap}):

{table(["precision", "eval loss", "MLM loss", "SOP loss", "MLM accuracy"], evals)}

Tokens/s (the runs were sequential, not interleaved: indicative only): fp32 {speed["fp32"]:,.0f},
bf16 {speed["bf16"]:,.0f}.

{machine_line(record)}
"""


SECTIONS: list[tuple[str, Callable[[Record], str]]] = [
    ("bench_model", model_section),
    ("bench_inference", inference_section),
    ("bench_inference_accuracy", accuracy_section),
    ("bench_tokenizer", tokenizer_section),
    ("bench_pretrain", pretrain_section),
    ("bench_predict", predict_section),
    ("bench_data", data_section),
    ("bench_precision", precision_section),
    ("bench_train_precision", train_precision_section),
    ("bench_serve", serve_section),
    ("bench_serve_bf16", serve_section),
    ("tf_checkpoint_base", tf_checkpoint_section),
    ("tf_checkpoint_xxlarge", tf_checkpoint_section),
    ("gpu_pretrain_check", gpu_section),
]


def render(results: Path = RESULTS) -> str:
    """The whole page from the JSON files in `results`; a benchmark without results is listed
    as not yet recorded, with nothing invented in its place."""
    parts, missing = [INTRO], []
    for name, section in SECTIONS:
        path = results / f"{name}.json"
        if path.is_file():
            parts.append(section(json.loads(path.read_text(encoding="utf-8"))))
        else:
            missing.append(name)
    if missing:
        names = ", ".join(f"`{name}`" for name in missing)
        parts.append(
            f"## Not recorded in this set of results\n\n{names}: run the benchmark to add its table.\n"
        )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the page differs")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
        if current != page:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run python benchmarks/make_tables.py")
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
