"""CPU inference: ours (fp32, int8, ONNX fp32, ONNX int8) against transformers fp32, same weights.

    python benchmarks/bench_inference.py                      # albert-base-v2 geometry, batch 1 and 8, seq 128
    python benchmarks/bench_inference.py --accuracy MODEL_DIR DEV_CSV   # int8 accuracy cost

Speed: a transformers `AlbertModel` with random weights is saved and loaded by ours, so both run
the same weights; ours is then exported to ONNX (fp32 and int8). The variants run in alternation
(round-robin, several rounds) so load from other processes hits them alike; each figure is the
median over rounds. Ratios are speed-ups over transformers fp32 (higher is better).

Accuracy: a fine-tuned sequence classifier (a model directory with its tokenizer) is evaluated
on a `label,text` CSV in fp32, PyTorch int8, ONNX fp32 and ONNX int8.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import albert  # noqa: E402
from albert.config import PRESETS  # noqa: E402
from albert.export import export_model_dir, export_onnx  # noqa: E402
from albert.onnx_runtime import OnnxModel  # noqa: E402

Runner = Callable[[dict[str, np.ndarray]], object]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


def check_parity(variants: dict[str, Runner], batch: dict[str, np.ndarray]) -> None:
    reference = np.asarray(variants["transformers fp32"](batch))
    for name, run in variants.items():
        out = run(batch)
        value = np.asarray(out["last_hidden_state"] if isinstance(out, dict) else out)
        flat_a, flat_b = reference.reshape(-1, reference.shape[-1]), value.reshape(-1, value.shape[-1])
        cosine = (flat_a * flat_b).sum(-1) / np.linalg.norm(flat_a, axis=-1) / np.linalg.norm(flat_b, axis=-1)
        print(f"  {name:<20} max |diff| {np.abs(reference - value).max():.2e}  min cosine {cosine.min():.5f}")


def time_round(run: Runner, batch: dict[str, np.ndarray], min_seconds: float) -> float:
    """Seconds per call: at least 2 calls and `min_seconds` of work."""
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < min_seconds:
        run(batch)
        calls += 1
    return (time.perf_counter() - start) / calls


def bench_speed(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores visible; threads={args.threads}")
    print(f"torch {torch.__version__}, load average at start {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        variants = build_variants(Path(tmp), args.threads, args.engine)
        print(f"quantized engine: {torch.backends.quantized.engine}")
        rng = np.random.default_rng(0)
        for batch_size in args.batch_sizes:
            shape = (batch_size, args.seq)
            batch = {
                "input_ids": rng.integers(5, 30000, shape, dtype=np.int64),
                "attention_mask": np.ones(shape, np.int64),
                "token_type_ids": np.zeros(shape, np.int64),
            }
            print(f"\nbatch {batch_size} x seq {args.seq}: agreement with transformers fp32")
            check_parity(variants, batch)
            for run in variants.values():  # warm-up
                run(batch)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, run in variants.items():
                    times[name].append(time_round(run, batch, args.min_seconds))
            reference = statistics.median(times["transformers fp32"])
            print(f"{'variant':<20} {'latency ms':>11} {'spread':>15} {'seq/s':>8} {'vs transformers':>16}")
            for name, samples in times.items():
                median = statistics.median(samples)
                spread = f"{min(samples) * 1e3:.0f}-{max(samples) * 1e3:.0f}"
                print(
                    f"{name:<20} {median * 1e3:>11.1f} {spread:>15} {batch_size / median:>8.1f} "
                    f"{reference / median:>15.2f}x"
                )
    print(f"\nload average at end {os.getloadavg()}")


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
    for name, parts in predictions.items():
        predicted = np.concatenate(parts)
        accuracy = float((predicted == labels).mean()) * 100
        agreement = float((predicted == reference).mean()) * 100
        print(
            f"{name:<14} accuracy {accuracy:6.2f}   vs fp32 {accuracy - baseline:+.2f} points   "
            f"same prediction as fp32 {agreement:6.2f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="timed work per variant per round")
    parser.add_argument("--engine", help="torch quantized engine (default: albert.quantize's choice)")
    parser.add_argument("--accuracy", nargs=2, metavar=("MODEL_DIR", "DEV_CSV"))
    parser.add_argument("--limit", type=int, help="accuracy: first N dev examples only")
    parser.add_argument("--eval-batch", type=int, default=32)
    args = parser.parse_args()
    if args.accuracy:
        bench_accuracy(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
