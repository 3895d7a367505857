"""Forward-pass speed: our AlbertModel vs transformers' on the same albert-base-v2 weights.

Both models run alternately in one process (so machine load affects both alike), fp32, eval
mode, no grad. Prints sequences/s, our/their ratio, and model FLOP utilisation against a
GEMM probe measured in the same run.

    python benchmarks/bench_model.py                       # (1,128), (8,128), (8,512)
    python benchmarks/bench_model.py --shapes 1x128 --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

import albert


def gemm_peak_gflops(seconds: float = 2.0) -> float:
    """Best sustained fp32 GEMM rate on a transformer-shaped product (1024x768 @ 768x3072)."""
    a, b = torch.randn(1024, 768), torch.randn(768, 3072)
    flops = 2 * 1024 * 768 * 3072
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b)
        best = max(best, 5 * flops / (time.perf_counter() - start) / 1e9)
    return best


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shapes", nargs="+", default=["1x128", "8x128", "8x512"])
    parser.add_argument("--rounds", type=int, default=12, help="timed calls per model per shape")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import transformers

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = albert.AlbertConfig.from_preset("albert-base-v2")
    hf_config = transformers.AlbertConfig(**{k: v for k, v in config.to_dict().items() if k != "share"})
    theirs = transformers.AlbertModel(hf_config).eval()
    with tempfile.TemporaryDirectory() as directory:
        theirs.save_pretrained(directory)
        ours = albert.AlbertModel.from_pretrained(directory).eval()

    peak = gemm_peak_gflops()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} threads")
    print(f"fp32 GEMM probe: {peak:.0f} GFLOP/s\n")
    print(
        f"{'shape':>8} {'theirs seq/s':>13} {'ours seq/s':>11} {'ratio':>7} {'their MFU':>10} {'our MFU':>8}"
    )
    for shape in args.shapes:
        batch, seq = (int(x) for x in shape.split("x"))
        ids = torch.randint(5, config.vocab_size, (batch, seq))
        inputs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
        }
        times: dict[str, list[float]] = {"theirs": [], "ours": []}
        with torch.inference_mode():
            for model in (theirs, ours):  # warm-up
                model(**inputs)
                model(**inputs)
            for _ in range(args.rounds):
                times["theirs"].append(time_call(lambda: theirs(**inputs)))  # noqa: B023
                times["ours"].append(time_call(lambda: ours(**inputs)))  # noqa: B023
        flops = model_flops(config, batch, seq)
        med = {k: statistics.median(v) for k, v in times.items()}
        mfu = {k: flops / t / 1e9 / peak for k, t in med.items()}
        print(
            f"{shape:>8} {batch / med['theirs']:>13.2f} {batch / med['ours']:>11.2f} "
            f"{med['theirs'] / med['ours']:>6.2f}x {mfu['theirs']:>9.0%} {mfu['ours']:>8.0%}"
        )


if __name__ == "__main__":
    main()
