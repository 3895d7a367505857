"""Batch-encoding throughput: albert's AlbertTokenizer vs transformers' AlbertTokenizer, same spiece.model.

Workloads: the Rotten Tomatoes training snippets (short English) and 10,000 People's Daily
paragraphs (long Chinese). Each is encoded as one batch, as lists and as padded int64 numpy
arrays, with and without character offsets; both tokenizers return the same fields
(input_ids, token_type_ids, attention_mask[, offset_mapping]) and the outputs are checked to be
identical before timing. Reported: texts/s (best of --repeats) and ours/transformers.

    .venv/bin/python benchmarks/bench_tokenizer.py [--tokenizer DIR] [--repeats 5]

Without --tokenizer, a 8000-piece vocabulary is trained first (ALBERT recipe, ~4 MB of the
shared English and Chinese text, about 15 s) in a temporary directory.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_workloads(limit_zh: int = 10_000) -> dict[str, list[str]]:
    with (DATA / "classify/en/rotten_tomatoes/train.csv").open(encoding="utf-8", newline="") as handle:
        english = [row["text"] for row in csv.DictReader(handle)]
    lines = (DATA / "pretrain/zh/peoples_daily_199801.txt").read_text(encoding="utf-8").splitlines()
    chinese = [line for line in lines if line.strip()][:limit_zh]
    return {"rotten_tomatoes train (en)": english, "peoples_daily 10k (zh)": chinese}


def train_default_tokenizer(folder: Path) -> Path:
    from albert.tokenizer_train import train_tokenizer

    inputs = [DATA / "pretrain/en/austen.txt", DATA / "pretrain/zh/peoples_daily_199801.txt"]
    return train_tokenizer(inputs, 8000, folder, input_sentence_size=200_000)


def best_rates(
    ours: Callable[[], Any], theirs: Callable[[], Any], count: int, repeats: int
) -> tuple[float, float]:
    """Texts/s of each, best of `repeats`; runs alternate so both see the same machine load."""
    ours(), theirs()  # warm-up (thread pool, caches)
    times = [(_timed(ours), _timed(theirs)) for _ in range(repeats)]
    return count / min(t[0] for t in times), count / min(t[1] for t in times)


def _timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _same(mine: dict, theirs: dict) -> bool:
    def plain(value: Any) -> Any:
        return np.asarray(value).tolist() if isinstance(value, np.ndarray) else value

    return all(plain(mine[k]) == plain(v) for k, v in theirs.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="directory with spiece.model (default: train one)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--name", default="bench_tokenizer", help="results file: benchmarks/results/NAME.json"
    )
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 2
    import transformers

    from albert.tokenization import AlbertTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.tokenizer or train_default_tokenizer(Path(scratch))
        ours = AlbertTokenizer.from_pretrained(folder)
        theirs = transformers.AlbertTokenizer.from_pretrained(folder)
    modes: dict[str, dict[str, Any]] = {
        "lists": {},
        "lists + offsets": {"return_offsets_mapping": True},
        "numpy padded": {"padding": True, "truncation": True, "max_length": 512, "return_tensors": "np"},
        "numpy padded + offsets": {
            "padding": True,
            "truncation": True,
            "max_length": 512,
            "return_tensors": "np",
            "return_offsets_mapping": True,
        },
    }
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"vocab {len(ours)}, {os.cpu_count()} CPUs (load average {load}), transformers {transformers.__version__}"
    )
    print(f"best of {args.repeats} alternating runs per row")
    print(f"{'workload':28} {'mode':24} {'ours texts/s':>13} {'transformers':>13} {'ratio':>6}")
    rows = []
    for workload, texts in load_workloads().items():
        for mode, kwargs in modes.items():
            theirs_kwargs = {
                **kwargs,
                "return_token_type_ids": True,
            }  # transformers' Albert omits them by default
            assert _same(ours(texts[:500], **kwargs), theirs(texts[:500], **theirs_kwargs)), (workload, mode)
            mine, reference = best_rates(
                lambda: ours(texts, **kwargs),  # noqa: B023
                lambda: theirs(texts, **theirs_kwargs),  # noqa: B023
                len(texts),
                args.repeats,
            )
            print(f"{workload:28} {mode:24} {mine:13,.0f} {reference:13,.0f} {mine / reference:5.2f}x")
            rows.append(
                {
                    "workload": workload,
                    "texts": len(texts),
                    "mode": mode,
                    "texts_per_second": {"ours": mine, "transformers": reference},
                    "ratio": mine / reference,
                }
            )
    from machine import write_results

    write_results(
        args.name,
        {
            "transformers": transformers.__version__,
            "vocab_size": len(ours),
            "repeats": args.repeats,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
