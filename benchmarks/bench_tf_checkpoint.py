"""Converting an albert-xxlarge-sized TF checkpoint to a safetensors directory: this package
(`albert convert-tf`, no TensorFlow) against TensorFlow's reader + transformers' converter.

The checkpoint is synthesised here in TF's tensor-bundle format (Google's variable names,
random values) by a small writer, so no download is needed; TensorFlow itself reading it back is
the check that the writer is right. Each side runs as its own process, timed by wall clock, with
its peak RSS from `wait4`; the sides are interleaved so shared-machine noise hits both alike.

    python benchmarks/bench_tf_checkpoint.py --size xxlarge --tf-python /tmp/tfenv/bin/python

`--tf-python` is a Python with `tensorflow-cpu`, `torch` and `transformers<5` (the last
transformers with `load_tf_weights_in_albert`), e.g. a throwaway venv; without it only this
package's side runs. Raw JSON goes to benchmarks/results/tf_checkpoint_<size>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from albert.tf_checkpoint import TABLE_MAGIC, crc32c, mask_crc  # noqa: E402
from benchmarks.machine import write_results  # noqa: E402

SIZES = {  # (hidden, layers, heads), ALBERT's published shapes; E = 128, vocab 30k, FFN = 4H
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "xxlarge": (4096, 12, 64),
}


def tf_config(size: str) -> dict:
    hidden, layers, heads = SIZES[size]
    return {
        "vocab_size": 30000,
        "embedding_size": 128,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_hidden_groups": 1,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
        "inner_group_num": 1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
    }


def google_variables(config: dict) -> dict[str, tuple[int, ...]]:
    """Every variable google-research/albert's modeling.py + run_pretraining.py create."""
    v, e, h, i = (
        config["vocab_size"],
        config["embedding_size"],
        config["hidden_size"],
        config["intermediate_size"],
    )
    block = "bert/encoder/transformer/group_0/inner_group_0/"
    shapes: dict[str, tuple[int, ...]] = {
        "bert/embeddings/word_embeddings": (v, e),
        "bert/embeddings/position_embeddings": (config["max_position_embeddings"], e),
        "bert/embeddings/token_type_embeddings": (config["type_vocab_size"], e),
        "bert/embeddings/LayerNorm/gamma": (e,),
        "bert/embeddings/LayerNorm/beta": (e,),
        "bert/encoder/embedding_hidden_mapping_in/kernel": (e, h),
        "bert/encoder/embedding_hidden_mapping_in/bias": (h,),
        "bert/pooler/dense/kernel": (h, h),
        "bert/pooler/dense/bias": (h,),
        "cls/predictions/transform/dense/kernel": (h, e),
        "cls/predictions/transform/dense/bias": (e,),
        "cls/predictions/transform/LayerNorm/gamma": (e,),
        "cls/predictions/transform/LayerNorm/beta": (e,),
        "cls/predictions/output_bias": (v,),
        "cls/seq_relationship/output_weights": (2, h),
        "cls/seq_relationship/output_bias": (2,),
    }
    for part in ("query", "key", "value"):
        shapes[f"{block}attention_1/self/{part}/kernel"] = (h, h)
        shapes[f"{block}attention_1/self/{part}/bias"] = (h,)
    shapes[f"{block}attention_1/output/dense/kernel"] = (h, h)
    shapes[f"{block}attention_1/output/dense/bias"] = (h,)
    shapes[f"{block}ffn_1/intermediate/dense/kernel"] = (h, i)
    shapes[f"{block}ffn_1/intermediate/dense/bias"] = (i,)
    shapes[f"{block}ffn_1/intermediate/output/dense/kernel"] = (i, h)
    shapes[f"{block}ffn_1/intermediate/output/dense/bias"] = (h,)
    for norm in ("LayerNorm", "LayerNorm_1"):
        shapes[f"{block}{norm}/gamma"] = (h,)
        shapes[f"{block}{norm}/beta"] = (h,)
    return shapes


# ----------------------------------------------------------------------------------------
# a minimal tensor-bundle writer (one shard, float32), the inverse of albert/tf_checkpoint.py


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _entry_proto(shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    dims = b"".join(_field(2, _varint(1 << 3) + _varint(d)) for d in shape)
    proto = _varint(1 << 3) + _varint(1)  # dtype: DT_FLOAT
    proto += _field(2, dims)
    proto += _varint(4 << 3) + _varint(offset) + _varint(5 << 3) + _varint(size)
    return proto + _varint(6 << 3 | 5) + mask_crc(crc).to_bytes(4, "little")


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A table block, every entry a restart point (no prefix sharing: valid, simplest)."""
    body, restarts = bytearray(), []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    for r in restarts or [0]:
        body += r.to_bytes(4, "little")
    return bytes(body) + len(restarts or [0]).to_bytes(4, "little")


def _write_block(f, contents: bytes) -> bytes:  # noqa: ANN001
    offset = f.tell()
    f.write(contents + b"\0" + mask_crc(crc32c(contents + b"\0")).to_bytes(4, "little"))
    return _varint(offset) + _varint(len(contents))


def write_bundle(prefix: Path, tensors: Iterator[tuple[str, np.ndarray]]) -> None:
    """`prefix.index` + `prefix.data-00000-of-00001` from (name, array) in sorted name order."""
    entries = [(b"", _field(3, _varint(1 << 3) + _varint(1)) + _varint(1 << 3) + _varint(1))]
    with open(f"{prefix}.data-00000-of-00001", "wb") as data:
        for name, array in tensors:
            raw = np.ascontiguousarray(array, dtype="<f4")
            offset = data.tell()
            data.write(memoryview(raw).cast("B"))
            entries.append((name.encode(), _entry_proto(raw.shape, offset, raw.nbytes, crc32c(raw))))
    with open(f"{prefix}.index", "wb") as f:
        index = []
        for start in range(0, len(entries), 32):
            chunk = entries[start : start + 32]
            index.append((chunk[-1][0], _write_block(f, _block(chunk))))
        meta = _write_block(f, _block([]))
        top = _write_block(f, _block(index))
        footer = meta + top
        f.write(footer + b"\0" * (40 - len(footer)) + TABLE_MAGIC.to_bytes(8, "little"))


def synthesise(directory: Path, size: str) -> Path:
    config = tf_config(size)
    prefix = directory / "model.ckpt-best"
    if not Path(f"{prefix}.index").is_file():
        directory.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        shapes = google_variables(config)
        write_bundle(
            prefix, ((n, rng.standard_normal(shapes[n], dtype=np.float32) * 0.02) for n in sorted(shapes))
        )
        (directory / "albert_config.json").write_text(json.dumps(config, indent=2))
    return prefix


# ----------------------------------------------------------------------------------------
# the two sides


TRANSFORMERS_SIDE = """
import sys, torch
from transformers import AlbertConfig, AlbertForPreTraining, load_tf_weights_in_albert
prefix, config_file, output = sys.argv[1:]
config = AlbertConfig.from_json_file(config_file)
config.hidden_act = "gelu_new"
model = AlbertForPreTraining(config)
load_tf_weights_in_albert(model, config, prefix)
model.save_pretrained(output)
"""


def measure(command: list[str], env: dict[str, str] | None = None) -> dict:
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read() if process.stderr else b""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{command[0]} failed:\n{stderr.decode(errors='replace')[-2000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def same_weights(ours: Path, theirs: Path) -> bool:
    """Every tensor of our safetensors equals transformers' (tied decoder copies aside)."""
    from safetensors import safe_open

    with safe_open(ours / "model.safetensors", "np") as a, safe_open(theirs / "model.safetensors", "np") as b:
        common = set(a.keys()) & set(b.keys())
        return len(common) == len(a.keys()) and all(
            np.array_equal(a.get_tensor(k), b.get_tensor(k)) for k in common
        )


def markdown_table(result: dict) -> str:
    """The docs' table, generated from the raw JSON (best of the interleaved runs per side)."""
    lines = [
        f"{result['size']}-sized checkpoint, {result['checkpoint_mb']} MB:",
        "",
        "| converter | seconds (best) | peak RSS MB | peak RSS / checkpoint |",
        "|---|---|---|---|",
    ]
    for side, runs in result["runs"].items():
        if runs:
            rss = max(r["peak_rss_mb"] for r in runs)
            seconds = min(r["seconds"] for r in runs)
            lines.append(f"| {side} | {seconds} | {rss} | {rss / result['checkpoint_mb']:.2f}x |")
    if "speedup" in result:
        lines += ["", f"Speed-up: {result['speedup']}x; identical tensors: {result['identical_weights']}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="xxlarge")
    parser.add_argument("--tf-python", help="a Python with tensorflow-cpu, torch and transformers<5")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_tf_checkpoint"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--table", type=Path, help="print the markdown table of a results JSON and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    started = time.perf_counter()
    prefix = synthesise(args.workdir / args.size, args.size)
    synth_seconds = time.perf_counter() - started
    config = prefix.parent / "albert_config.json"
    checkpoint_mb = (
        Path(f"{prefix}.data-00000-of-00001").stat().st_size + Path(f"{prefix}.index").stat().st_size
    ) / 2**20
    runs: dict[str, list[dict]] = {"albert": [], "tensorflow+transformers": []}
    out = args.workdir / "out"
    for _ in range(args.repeats):
        for side in runs:
            if side != "albert" and not args.tf_python:
                continue
            shutil.rmtree(out / side, ignore_errors=True)
            if side == "albert":
                command = [sys.executable, "-m", "albert", "convert-tf", "--checkpoint", str(prefix)]
                command += ["--config", str(config), "--output", str(out / side)]
                env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
            else:
                command = [args.tf_python, "-c", TRANSFORMERS_SIDE, str(prefix), str(config), str(out / side)]
                env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
            runs[side].append(measure(command, env))
            print(side, runs[side][-1], flush=True)
    result = {
        "size": args.size,
        "checkpoint_mb": round(checkpoint_mb, 1),
        "synthesis_seconds": round(synth_seconds, 1),
        "runs": runs,
        "note": "2 shared CPU cores, other jobs running: ratios from interleaved runs",
    }
    if runs["tensorflow+transformers"]:
        ours = min(r["seconds"] for r in runs["albert"])
        theirs = min(r["seconds"] for r in runs["tensorflow+transformers"])
        result["speedup"] = round(theirs / ours, 2)
        result["identical_weights"] = same_weights(out / "albert", out / "tensorflow+transformers")
    result["peak_rss_over_checkpoint"] = round(
        max(r["peak_rss_mb"] for r in runs["albert"]) / checkpoint_mb, 3
    )
    print(json.dumps(result, indent=2))
    print(write_results(f"tf_checkpoint_{args.size}", result))


if __name__ == "__main__":
    main()
