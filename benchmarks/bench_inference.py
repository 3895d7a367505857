"""CPU inference: ours (fp32, int8, ONNX fp32, ONNX int8) against transformers fp32, same weights.

    python benchmarks/bench_inference.py                      # albert-base-v2 geometry, batch 1 and 8, seq 128
    python benchmarks/bench_inference.py --accuracy MODEL_DIR DEV_CSV   # int8 accuracy cost

Speed: a transformers `AlbertModel` with random weights is saved and loaded by ours, so both run
the same weights; ours is then exported to ONNX (fp32 and int8). Inputs are full-length batches
(`--batch-sizes` x `--seq`) and padded, mixed-length batches of real Rotten Tomatoes dev reviews
(`--mixed`). The variants run in alternation (round-robin, several rounds of at least
`--min-seconds` each) so load from other processes hits them alike; each figure is the median
over rounds. Ratios are speed-ups over transformers fp32 and over our own fp32 (higher is
better). The fp32-against-transformers comparison itself is `bench_model.py`'s (its timing is
the one reported); here fp32 is the reference the deployment variants are measured against.

Accuracy: a fine-tuned sequence classifier (a model directory with its tokenizer) is evaluated
on a `label,text` CSV in fp32, PyTorch int8, ONNX fp32 and ONNX int8.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model, write_results
from workloads import describe, full_length_batch, mixed_length_batch, rotten_tomatoes_tokenizer

import albert
from albert.config import PRESETS
from albert.export import export_model_dir, export_onnx
from albert.onnx_runtime import OnnxModel

Runner = Callable[[dict[str, np.ndarray]], object]


def build_variants(workdir: Path, threads: int, engine: str | None) -> dict[str, Runner]:
    import transformers

    transformers.utils.logging.disable_progress_bar()
    preset = PRESETS["albert-base-v2"]
    torch.manual_seed(0)
    reference = transformers.AlbertModel(transformers.AlbertConfig(**preset)).eval()
    reference.save_pretrained(workdir / "hf")
    ours = albert.AlbertModel.from_pretrained(workdir / "hf").eval()
    int8 = albert.quantize(ours, engine=engine)
    export_onnx(ours, workdir / "model.onnx")
    export_onnx(ours, workdir / "model_int8.onnx", int8=True)
    ours.config.save_pretrained(workdir)
    onnx_fp32 = OnnxModel(workdir / "model.onnx", threads=threads)
    onnx_int8 = OnnxModel(workdir / "model_int8.onnx", threads=threads)

    def torch_runner(model: torch.nn.Module) -> Runner:
        def run(batch: dict[str, np.ndarray]) -> object:
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in batch.items()})[0]

        return run

    return {
        "transformers fp32": torch_runner(reference),
        "ours fp32": torch_runner(ours),
        "ours int8 (torch)": torch_runner(int8),
        "ours ONNX fp32": lambda batch: onnx_fp32(**batch),
        "ours ONNX int8": lambda batch: onnx_int8(**batch),
    }


def check_parity(variants: dict[str, Runner], batch: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Each variant's hidden states against transformers fp32, at the real (unpadded) positions."""
    real = batch["attention_mask"].reshape(-1).astype(bool)
    reference = np.asarray(variants["transformers fp32"](batch))
    reference = reference.reshape(-1, reference.shape[-1])[real]
    agreement = {}
    for name, run in variants.items():
        out = run(batch)
        value = np.asarray(out["last_hidden_state"] if isinstance(out, dict) else out)
        value = value.reshape(-1, value.shape[-1])[real]
        cosine = (
            (reference * value).sum(-1) / np.linalg.norm(reference, axis=-1) / np.linalg.norm(value, axis=-1)
        )
        agreement[name] = {
            "max_abs_diff": float(np.abs(reference - value).max()),
            "min_cosine": float(cosine.min()),
        }
        print(f"  {name:<20} max |diff| {agreement[name]['max_abs_diff']:.2e}  min cosine {cosine.min():.5f}")
    return agreement


def time_round(run: Runner, batch: dict[str, np.ndarray], min_seconds: float) -> float:
    """Seconds per call: at least 2 calls and `min_seconds` of work."""
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        run(batch)
        calls += 1
    return (time.perf_counter() - start) / calls


def bench_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores visible; threads={args.threads}")
    print(f"torch {torch.__version__}, load average at start {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variants = build_variants(Path(tmp), args.threads, args.engine)
        engine = torch.backends.quantized.engine
        print(f"quantized engine: {engine}")
        batches = {
            f"{size}x{args.seq}": full_length_batch(size, args.seq, 30000) for size in args.batch_sizes
        }
        if args.mixed:
            tokenizer = rotten_tomatoes_tokenizer(Path(tmp) / "tokenizer")
            for size in args.mixed:
                batches[f"{size} mixed"] = mixed_length_batch(tokenizer, size, args.seq)
        for shape, batch in batches.items():
            info = describe(batch)
            print(f"\n{shape} {info}: agreement with transformers fp32")
            agreement = check_parity(variants, batch)
            for run in variants.values():  # warm-up
                run(batch)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, run in variants.items():
                    times[name].append(time_round(run, batch, args.min_seconds))
            median = {name: statistics.median(samples) for name, samples in times.items()}
            print(
                f"{'variant':<20} {'latency ms':>11} {'spread':>15} {'vs transformers':>16} {'vs ours fp32':>13}"
            )
            for name, samples in times.items():
                spread = f"{min(samples) * 1e3:.0f}-{max(samples) * 1e3:.0f}"
                print(
                    f"{name:<20} {median[name] * 1e3:>11.1f} {spread:>15} "
                    f"{median['transformers fp32'] / median[name]:>15.2f}x {median['ours fp32'] / median[name]:>12.2f}x"
                )
            rows.append({"shape": shape, **info, "seconds": median, "samples": times, "agreement": agreement})
    print(f"\nload average at end {os.getloadavg()}")
    payload = {
        "model": "albert-base-v2 geometry, random weights",
        "quantized_engine": engine,
        "rounds": args.rounds,
        "min_seconds": args.min_seconds,
        "rows": rows,
    }
    write_results(args.name, payload)


# ----------------------------------------------------------------------------------------
# accuracy of the int8 models


def read_dev(path: Path, label2id: dict[str, int], limit: int | None) -> tuple[list[str], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    labels = [label2id[r["label"]] if r["label"] in label2id else int(r["label"]) for r in rows]
    return [r["text"] for r in rows], np.array(labels)


def bench_accuracy(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    model_dir, dev_csv = Path(args.accuracy[0]), Path(args.accuracy[1])
    model = albert.AlbertForSequenceClassification.from_pretrained(model_dir).eval()
    texts, labels = read_dev(dev_csv, model.config.label2id, args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_fp32 = OnnxModel(export_model_dir(model_dir, Path(tmp) / "fp32"), threads=args.threads)
        onnx_int8 = OnnxModel(
            export_model_dir(model_dir, Path(tmp) / "int8", int8=True), threads=args.threads
        )
        int8 = albert.quantize(model, engine=args.engine)

        def torch_logits(m: torch.nn.Module) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
            def run(batch: dict[str, np.ndarray]) -> np.ndarray:
                with torch.inference_mode():
                    return m(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()

            return run

        variants = {
            "fp32 (torch)": torch_logits(model),
            "int8 (torch)": torch_logits(int8),
            "ONNX fp32": lambda batch: onnx_fp32(**batch)["logits"],
            "ONNX int8": lambda batch: onnx_int8(**batch)["logits"],
        }
        predictions: dict[str, list[np.ndarray]] = {name: [] for name in variants}
        for start in range(0, len(texts), args.eval_batch):
            batch = onnx_fp32.encode(texts[start : start + args.eval_batch], max_length=args.seq)
            for name, run in variants.items():
                predictions[name].append(run(batch).argmax(-1))
    print(f"{dev_csv}: {len(texts)} examples, model {model_dir}")
    reference = np.concatenate(predictions["fp32 (torch)"])
    baseline = float((reference == labels).mean()) * 100
    rows = []
    for name, parts in predictions.items():
        predicted = np.concatenate(parts)
        accuracy = float((predicted == labels).mean()) * 100
        agreement = float((predicted == reference).mean()) * 100
        rows.append(
            {"variant": name, "accuracy": accuracy, "vs_fp32": accuracy - baseline, "agreement": agreement}
        )
        print(
            f"{name:<14} accuracy {accuracy:6.2f}   vs fp32 {accuracy - baseline:+.2f} points   "
            f"same prediction as fp32 {agreement:6.2f}%"
        )
    payload = {"model": str(model_dir), "dev": str(dev_csv), "examples": len(texts), "rows": rows}
    write_results(args.name + "_accuracy", payload)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq", type=int, default=128, help="full-length batches' length; mixed ones' limit")
    parser.add_argument(
        "--mixed", type=int, nargs="*", default=[8], help="batch sizes of padded Rotten Tomatoes batches"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="timed work per variant per round")
    parser.add_argument("--engine", help="torch quantized engine (default: albert.quantize's choice)")
    parser.add_argument("--accuracy", nargs=2, metavar=("MODEL_DIR", "DEV_CSV"))
    parser.add_argument("--limit", type=int, help="accuracy: first N dev examples only")
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument(
        "--name", default="bench_inference", help="results file: benchmarks/results/NAME.json"
    )
    args = parser.parse_args()
    if args.accuracy:
        bench_accuracy(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
