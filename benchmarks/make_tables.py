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


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(record: Record) -> str:
    """One paragraph naming the machine and the command behind a table."""
    machine = record["machine"]
    load = machine.get("load_average", [])
    busy = load and load[0] > machine["cores"]
    probes = "; ".join(
        f"{name} {probe['gflops']:,.0f} GFLOP/s ({probe['path']})"
        for name, probe in machine["gemm_peak"].items()
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


def pretrain_section(record: Record) -> str:
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


SECTIONS: list[tuple[str, Callable[[Record], str]]] = [
    ("bench_model", model_section),
    ("bench_inference", inference_section),
    ("bench_inference_accuracy", accuracy_section),
    ("bench_tokenizer", tokenizer_section),
    ("bench_pretrain", pretrain_section),
    ("bench_predict", predict_section),
    ("bench_data", data_section),
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
