"""Text-classification throughput: `albert.pipeline` vs transformers' `pipeline`, same weights.

    python benchmarks/bench_predict.py [--limit 400] [--batch-size 32] [--threads 2]

Both pipelines run the same randomly initialised albert-base-v2-geometry
AlbertForSequenceClassification (saved once, with a SentencePiece tokenizer trained here on the
Rotten Tomatoes training texts; transformers' AlbertTokenizer loads our spiece.model) over the
Rotten Tomatoes dev reviews (real text, mixed lengths), with the same batch size and thread
count, in the same process, alternating which goes first. Ours tokenizes the whole input in one
call, sorts it by length and pads each batch only to its own longest member; transformers'
pipeline batches in input order. Prints texts/s for both and the ratio (target >= 2x), plus the
machine's load average, since the machine may be shared. Predictions are checked to agree.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from workloads import ROTTEN_TOMATOES as DATA
from workloads import read_texts, rotten_tomatoes_tokenizer


def build_model_dir(folder: Path) -> Path:
    """albert-base-v2 geometry, random weights, two labels, our tokenizer."""
    import torch

    from albert.config import AlbertConfig
    from albert.modeling import AlbertForSequenceClassification

    tokenizer_dir = rotten_tomatoes_tokenizer(folder)
    torch.manual_seed(0)
    config = AlbertConfig.from_preset("albert-base-v2", id2label={0: "rotten", 1: "fresh"})
    model_dir = folder / "model"
    AlbertForSequenceClassification(config).save_pretrained(model_dir)
    from albert.tokenization import AlbertTokenizer

    AlbertTokenizer.from_pretrained(tokenizer_dir).save_pretrained(model_dir)
    return model_dir


def timed(run, texts: list[str]) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    results = run(texts)
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=300, help="dev texts to classify (0 = all 1,275)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per pipeline (best is kept)")
    parser.add_argument("--name", default="bench_predict", help="results file: benchmarks/results/NAME.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers

    import albert

    torch.set_num_threads(args.threads)
    texts = read_texts(DATA / "dev.csv", args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(Path(tmp))
        ours = albert.pipeline("text-classification", model=model_dir, batch_size=args.batch_size)
        theirs_pipe = transformers.pipeline("text-classification", model=str(model_dir), device="cpu")
        runners = {
            "albert.pipeline": ours,
            "transformers.pipeline": lambda xs: theirs_pipe(xs, batch_size=args.batch_size),
        }
        for run in runners.values():  # warm-up
            run(texts[:8])
        best: dict[str, float] = {name: float("inf") for name in runners}
        outputs: dict[str, list[dict]] = {}
        for repeat in range(args.repeats):
            order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
            for name in order:
                seconds, outputs[name] = timed(runners[name], texts)
                best[name] = min(best[name], seconds)
    a, b = outputs["albert.pipeline"], outputs["transformers.pipeline"]
    agree = np.mean([x["label"] == y["label"] for x, y in zip(a, b, strict=True)])
    max_diff = max(
        abs(x["score"] - y["score"]) for x, y in zip(a, b, strict=True) if x["label"] == y["label"]
    )
    lengths = [len(t.split()) for t in texts]
    print(
        f"Rotten Tomatoes dev: {len(texts)} texts ({min(lengths)}-{max(lengths)} words, mean {np.mean(lengths):.1f}); "
        f"albert-base-v2 geometry; batch size {args.batch_size}; torch threads {args.threads}; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    for name, seconds in best.items():
        print(f"{name:<24}{len(texts) / seconds:8.1f} texts/s  ({seconds:.2f} s, best of {args.repeats})")
    ratio = best["transformers.pipeline"] / best["albert.pipeline"]
    print(
        f"speed-up: {ratio:.2f}x (target >= 2x); predictions agree on {agree:.1%}, max score diff {max_diff:.2e}"
    )
    from machine import write_results

    payload = {
        "transformers": transformers.__version__,
        "texts": len(texts),
        "words": {"min": min(lengths), "max": max(lengths), "mean": round(float(np.mean(lengths)), 1)},
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "seconds": best,
        "texts_per_second": {name: len(texts) / seconds for name, seconds in best.items()},
        "ratio": ratio,
        "agreement": float(agree),
        "max_score_diff": float(max_diff),
    }
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
