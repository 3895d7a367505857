"""Inference precision on this CPU: bf16 and int8 against fp32, the same weights, side by side.

    python benchmarks/bench_precision.py --tokenizer runs/tok-en-8k          # speed, albert-base-v2 geometry
    python benchmarks/bench_precision.py --accuracy MODEL_DIR DEV_CSV        # dev accuracy per precision

Speed: a transformers `AlbertModel` with random albert-base-v2 weights is saved and loaded by ours
in fp32 and bf16 (`dtype="bf16"`: bf16 weights packed once for oneDNN, the same fused path as fp32),
quantised (`albert.quantize`) and exported to int8 ONNX. Two workloads: full-length 8 x 128 random
ids, and padded mixed-length batches of 8 real Rotten Tomatoes dev texts (file order, each batch
padded to its longest). Variants run round-robin so load from other processes hits them alike;
every ratio is taken within one round and the median over rounds is reported. Agreement: the
minimum cosine of the last hidden states (real tokens only) against our fp32.

Accuracy: a fine-tuned sequence classifier is scored on a `label,text` CSV in fp32, bf16, torch
int8 and ONNX int8, with how often each agrees with fp32.

Both write `benchmarks/results/bench_precision.json` (the machine recorded beside the figures);
an existing file keeps the other part's results.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import albert  # noqa: E402
from albert.config import PRESETS  # noqa: E402
from albert.export import export_model_dir, export_onnx  # noqa: E402
from albert.hardware import bf16_units, cpu_has_vnni, native_bf16  # noqa: E402
from albert.onnx_runtime import OnnxModel  # noqa: E402
from albert.tokenization import AlbertTokenizer  # noqa: E402
from benchmarks.machine import RESULTS_DIR, command_line, cpu_flags, cpu_model, write_results  # noqa: E402

Batch = dict[str, np.ndarray]
Runner = Callable[[Batch], np.ndarray]
RT_DEV = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "classify"
    / "en"
    / "rotten_tomatoes"
    / "dev.csv"
)
NAME = "bench_precision"
# the shape of the fine-tuned model, recorded so the docs can describe it
GEOMETRY = (
    "vocab_size",
    "embedding_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


def torch_runner(model: torch.nn.Module, output: str) -> Runner:
    def run(batch: Batch) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return out[output].float().numpy()

    return run


def onnx_runner(model: OnnxModel, output: str) -> Runner:
    return lambda batch: model(**batch)[output]


def read_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))[:limit]


def padded_batches(tokenizer: AlbertTokenizer, texts: list[str], size: int, max_length: int) -> list[Batch]:
    """`texts` in order, `size` at a time, each batch padded to its own longest member."""
    return [
        {
            k: np.asarray(v, dtype=np.int64)
            for k, v in tokenizer(
                texts[i : i + size], padding=True, truncation=True, max_length=max_length, return_tensors="np"
            ).items()
        }
        for i in range(0, len(texts), size)
    ]


def min_cosine(reference: np.ndarray, other: np.ndarray, mask: np.ndarray) -> float:
    keep = mask.reshape(-1).astype(bool)
    a = reference.reshape(-1, reference.shape[-1])[keep]
    b = other.reshape(-1, other.shape[-1])[keep]
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())


def seconds(run: Runner, batches: list[Batch], min_seconds: float) -> float:
    """Seconds per pass over `batches`: at least 2 passes and `min_seconds` of work."""
    passes, start = 0, time.perf_counter()
    while passes < 2 or time.perf_counter() - start < min_seconds:
        for batch in batches:
            run(batch)
        passes += 1
    return (time.perf_counter() - start) / passes


def speed_variants(workdir: Path, threads: int) -> dict[str, Runner]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    reference = transformers.AlbertModel(transformers.AlbertConfig(**PRESETS["albert-base-v2"])).eval()
    reference.save_pretrained(workdir / "hf")
    ours = albert.AlbertModel.from_pretrained(workdir / "hf", dtype="fp32").eval()
    bf16 = albert.AlbertModel.from_pretrained(workdir / "hf", dtype=torch.bfloat16).eval()
    ours.config.save_pretrained(workdir)  # the ONNX runtime reads it next to the .onnx file
    onnx_int8 = OnnxModel(export_onnx(ours, workdir / "model_int8.onnx", int8=True), threads=threads)
    return {
        "transformers fp32": torch_runner(reference, "last_hidden_state"),
        "ours fp32": torch_runner(ours, "last_hidden_state"),
        "ours bf16": torch_runner(bf16, "last_hidden_state"),
        "ours int8 (torch)": torch_runner(albert.quantize(ours), "last_hidden_state"),
        "ours int8 (ONNX)": onnx_runner(onnx_int8, "last_hidden_state"),
    }


def bench_workload(
    variants: dict[str, Runner], batches: list[Batch], rounds: int, min_seconds: float
) -> dict[str, Any]:
    reference = [variants["ours fp32"](b) for b in batches]
    cosines = {
        name: min(min_cosine(r, run(b), b["attention_mask"]) for r, b in zip(reference, batches, strict=True))
        for name, run in variants.items()
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(seconds(run, batches, min_seconds))

    def ratio(slow: str, fast: str) -> float:
        return statistics.median(s / f for s, f in zip(times[slow], times[fast], strict=True))

    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].size for b in batches)
    return {
        "batches": len(batches),
        "batch_shapes": [list(b["input_ids"].shape) for b in batches],
        "real_tokens": tokens,
        "padded_tokens": padded,
        "median_ms": {name: statistics.median(t) * 1e3 for name, t in times.items()},
        "speedup_vs_ours_fp32": {name: ratio("ours fp32", name) for name in variants},
        "speedup_vs_transformers_fp32": {name: ratio("transformers fp32", name) for name in variants},
        "min_cosine_vs_ours_fp32": cosines,
    }


def bench_speed(args: argparse.Namespace) -> dict[str, Any]:
    tokenizer = AlbertTokenizer.from_pretrained(args.tokenizer)
    texts = [row["text"] for row in read_rows(args.texts, args.batch * args.mixed_batches)]
    rng = np.random.default_rng(0)
    shape = (args.batch, args.seq)
    full = {
        "input_ids": rng.integers(5, 30000, shape, dtype=np.int64),
        "attention_mask": np.ones(shape, np.int64),
        "token_type_ids": np.zeros(shape, np.int64),
    }
    workloads = {
        f"full length {args.batch}x{args.seq}": [full],
        f"Rotten Tomatoes dev, {args.mixed_batches} padded batches of {args.batch}": padded_batches(
            tokenizer, texts, args.batch, args.seq
        ),
    }
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variants = speed_variants(Path(tmp), args.threads)
        results = {}
        for name, batches in workloads.items():
            results[name] = bench_workload(variants, batches, args.rounds, args.min_seconds)
            print(f"\n{name}")
            table = results[name]
            for variant in variants:
                print(
                    f"  {variant:<20} {table['median_ms'][variant]:9.1f} ms"
                    f"  x{table['speedup_vs_ours_fp32'][variant]:5.2f} vs ours fp32"
                    f"  x{table['speedup_vs_transformers_fp32'][variant]:5.2f} vs transformers fp32"
                    f"  min cosine {table['min_cosine_vs_ours_fp32'][variant]:.5f}"
                )
    return {"model": "albert-base-v2 geometry, random weights", "rounds": args.rounds, "workloads": results}


def bench_accuracy(args: argparse.Namespace) -> dict[str, Any]:
    model_dir, dev_csv = Path(args.accuracy[0]), Path(args.accuracy[1])
    fp32 = albert.AlbertForSequenceClassification.from_pretrained(model_dir, dtype="fp32").eval()
    bf16 = albert.AlbertForSequenceClassification.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    rows = read_rows(dev_csv)
    labels = np.array([fp32.config.label2id.get(r["label"], r["label"]) for r in rows], dtype=np.int64)
    tokenizer = AlbertTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_int8 = OnnxModel(
            export_model_dir(model_dir, Path(tmp) / "int8", int8=True), threads=args.threads
        )
        variants = {
            "fp32": torch_runner(fp32, "logits"),
            "bf16": torch_runner(bf16, "logits"),
            "int8 (torch)": torch_runner(albert.quantize(fp32), "logits"),
            "int8 (ONNX)": onnx_runner(onnx_int8, "logits"),
        }
        batches = padded_batches(tokenizer, [r["text"] for r in rows], 64, args.seq)
        predicted = {
            name: np.concatenate([run(b).argmax(-1) for b in batches]) for name, run in variants.items()
        }
    results = {
        name: {
            "accuracy": float((p == labels).mean()),
            "agreement_with_fp32": float((p == predicted["fp32"]).mean()),
        }
        for name, p in predicted.items()
    }
    print(f"{dev_csv}: {len(rows)} examples, model {model_dir}")
    for name, r in results.items():
        print(
            f"  {name:<13} accuracy {r['accuracy']:.4f}  same prediction as fp32 {r['agreement_with_fp32']:.2%}"
        )
    geometry = {name: getattr(fp32.config, name) for name in GEOMETRY}
    recorded = model_dir / "finetune_args.json"  # what `albert finetune` started from, if it made the model
    start = json.loads(recorded.read_text(encoding="utf-8")).get("model") if recorded.is_file() else None
    return {
        "model": str(model_dir),
        "fine_tuned_from": start,
        "data": str(dev_csv),
        "examples": len(rows),
        "seq": args.seq,
        "geometry": geometry,
        "precisions": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenizer", default="runs/tok-en-8k", help="tokenizer for the real-text batches")
    parser.add_argument("--texts", type=Path, default=RT_DEV, help="label,text CSV of real texts")
    parser.add_argument("--accuracy", nargs=2, metavar=("MODEL_DIR", "DEV_CSV"))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--mixed-batches", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hardware = {"native_bf16": native_bf16(), "bf16_units": bf16_units(), "vnni": cpu_has_vnni()}
    part = {"accuracy": bench_accuracy(args)} if args.accuracy else {"speed": bench_speed(args)}
    # each part keeps the command and the CPU that produced it: the file's top-level command and
    # machine are the last run's, which may have been the other part on another machine
    next(iter(part.values())).update(command=command_line(), cpu={"model": cpu_model(), "flags": cpu_flags()})
    previous_path = RESULTS_DIR / f"{NAME}.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() else {}
    kept = {k: v for k, v in previous.items() if k in ("speed", "accuracy")}
    path = write_results(NAME, {**kept, "hardware": hardware, **part})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
