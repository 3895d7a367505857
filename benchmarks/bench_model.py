"""Forward-pass speed: our AlbertModel vs transformers' on the same albert-base-v2 weights.

Both models run alternately in one process (so machine load affects both alike), eval mode,
`torch.inference_mode()`, each call timed on its own, median of `--rounds` calls. Shapes are
full-length synthetic batches (`8x128`) and padded, mixed-length batches of real Rotten Tomatoes
dev reviews (`--mixed 8`: 8 reviews padded to the longest, as users' batches are). Precisions:
fp32, and bf16 (`torch.autocast` around both models) where the CPU multiplies bf16 natively.

MFU (model FLOP utilisation) = model FLOPs of the padded batch / time / the GEMM probe of the
same precision (`machine.gemm_peak`: the fastest kernel path, including the model's own packed
oneDNN linear). MFU above 100 % cannot be real; it is flagged, never clamped.

This is the project's one measurement of the fp32 forward against transformers;
`bench_inference.py` compares int8 and ONNX variants.

    python benchmarks/bench_model.py                       # (1,128), (8,128), (8,512), 8 mixed
    python benchmarks/bench_model.py --shapes 1x128 --mixed --rounds 30 --precisions fp32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import DTYPE_NAMES, gemm_peaks, probe_dtypes, write_results
from workloads import describe, full_length_batch, mixed_length_batch, rotten_tomatoes_tokenizer

import albert

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def model_flops(config: albert.AlbertConfig, batch: int, seq: int) -> float:
    """Forward FLOPs: projections + FFN GEMMs, attention score/context products, E->H, pooler."""
    tokens, hidden = batch * seq, config.hidden_size
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    per_layer += 2 * 2 * batch * seq * seq * hidden
    layers = config.num_hidden_layers * config.inner_group_num
    return layers * per_layer + 2 * tokens * config.embedding_size * hidden + 2 * batch * hidden * hidden


def time_call(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def precision_context(precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=PRECISIONS[precision])


def build_models(config: albert.AlbertConfig) -> tuple[torch.nn.Module, torch.nn.Module]:
    """transformers' AlbertModel with random weights, and ours loaded from its saved files."""
    import transformers

    hf_config = transformers.AlbertConfig(**{k: v for k, v in config.to_dict().items() if k != "share"})
    theirs = transformers.AlbertModel(hf_config).eval()
    with tempfile.TemporaryDirectory() as directory:
        theirs.save_pretrained(directory)
        ours = albert.AlbertModel.from_pretrained(directory).eval()
    return theirs, ours


def measure(
    models: dict[str, torch.nn.Module], batch: dict[str, np.ndarray], precision: str, rounds: int
) -> dict[str, float]:
    """Median seconds per forward of each model, calls alternating, after two warm-up calls."""
    inputs = {name: torch.from_numpy(value) for name, value in batch.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode(), precision_context(precision):
        for model in models.values():
            model(**inputs)
            model(**inputs)
        for _ in range(rounds):
            for name, model in models.items():
                times[name].append(time_call(lambda: model(**inputs)))  # noqa: B023
    return {name: statistics.median(samples) for name, samples in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", nargs="*", default=["1x128", "8x128", "8x512"])
    parser.add_argument(
        "--mixed", type=int, nargs="*", default=[8], help="batch sizes of padded Rotten Tomatoes batches"
    )
    parser.add_argument("--rounds", type=int, default=12, help="timed calls per model per shape")
    parser.add_argument("--threads", type=int, default=2)
    default_precisions = [DTYPE_NAMES[d] for d in probe_dtypes()]
    parser.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), default=default_precisions)
    parser.add_argument("--name", default="bench_model", help="results file: benchmarks/results/NAME.json")
    args = parser.parse_args()

    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = albert.AlbertConfig.from_preset("albert-base-v2")
    theirs, ours = build_models(config)
    models = {"transformers": theirs, "ours": ours}
    batches = {
        shape: full_length_batch(*(int(x) for x in shape.split("x")), config.vocab_size)
        for shape in args.shapes
    }
    if args.mixed:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = rotten_tomatoes_tokenizer(Path(tmp))
            for size in args.mixed:
                batches[f"{size} mixed"] = mixed_length_batch(tokenizer, size)

    peaks = gemm_peaks()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads")
    for name, peak in peaks.items():
        print(f"{name} GEMM probe: {peak['gflops']:.0f} GFLOP/s ({peak['path']}; all paths: {peak['paths']})")
    print(
        f"\n{'precision':>9} {'shape':>10} {'padded':>7} {'theirs seq/s':>13} {'ours seq/s':>11} "
        f"{'ratio':>7} {'their MFU':>10} {'our MFU':>8}"
    )
    rows = []
    for precision in args.precisions:
        peak = peaks.get(precision, {}).get("gflops")
        for shape, batch in batches.items():
            info = describe(batch)
            median = measure(models, batch, precision, args.rounds)
            flops = model_flops(config, info["batch"], info["padded_length"])
            mfu = {name: flops / seconds / 1e9 / peak if peak else None for name, seconds in median.items()}
            above = [name for name, value in mfu.items() if value is not None and value > 1.0]
            rows.append(
                {
                    "precision": precision,
                    "shape": shape,
                    **info,
                    "seconds": median,
                    "sequences_per_second": {name: info["batch"] / s for name, s in median.items()},
                    "ratio": median["transformers"] / median["ours"],
                    "mfu": mfu,
                    "mfu_above_peak": above,
                }
            )
            text = {name: f"{value:.0%}" if value is not None else "-" for name, value in mfu.items()}
            print(
                f"{precision:>9} {shape:>10} {info['padded_length']:>7} {info['batch'] / median['transformers']:>13.2f} "
                f"{info['batch'] / median['ours']:>11.2f} {median['transformers'] / median['ours']:>6.2f}x "
                f"{text['transformers']:>10} {text['ours']:>8}"
            )
            if above:
                print(f"WARNING: MFU above 100 % for {above}: the GEMM probe missed a faster kernel path")
    payload = {
        "model": "albert-base-v2 geometry, random weights",
        "transformers": transformers.__version__,
        "rounds": args.rounds,
        "rows": rows,
    }
    write_results(args.name, payload, peaks=peaks)


if __name__ == "__main__":
    main()
