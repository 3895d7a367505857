"""Pretraining-data throughput and memory: `albert data` on a corpus of --mb megabytes, 1 and 2 workers.

The corpus is the shared pretraining text (KJV, Austen, fortunes, Botchan, People's Daily,
Chinese fortunes - every layout the builder detects) copied into a temporary directory until it
reaches --mb. Each run is a separate `python -m albert data` process; while it runs, the resident
memory of its whole process tree (the main process plus pool workers) is sampled from /proc.

Reported per worker count: wall time, MB/s of raw text, MB/s per worker, CPU seconds (all
processes) and MB per CPU-second - the last one hardly moves with machine load - peak RSS of the
tree, speed-up over one worker, the tokenising engine the build used, and whether the outputs are
byte-identical. The reference measured side by side is the tokenizer alone: each engine the
builder could use (`albert.data.encoders`: the tokenizer's own ``tokenizers`` engine, and
``sentencepiece`` where it is safe) over the same kind of text in this process, in MB per
CPU-second, i.e. the floor cost any builder pays; "x tok CPU" is the builder's MB per CPU-second
over that of the engine it used.

    .venv/bin/python benchmarks/bench_data.py [--mb 50] [--workers 1 2] [--tokenizer DIR]
        [--tokenizer-engine auto|sentencepiece|tokenizers]

Targets: >= 2 MB/s per worker, peak RSS < 2 GB whatever the corpus size, near-linear
speed-up from 1 to 2 workers. Without --tokenizer an 8000-piece vocabulary is trained first
(about 15 s). Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = [
    "pretrain/en/kjv.txt",
    "pretrain/en/austen.txt",
    "pretrain/zh/peoples_daily_199801.txt",
    "pretrain/en/fortunes.txt",
    "pretrain/zh/fortunes_zh.txt",
    "pretrain/en/botchan.txt",
]
PAGE = os.sysconf("SC_PAGE_SIZE")


def train_default_tokenizer(folder: Path) -> Path:
    from albert.tokenizer_train import train_tokenizer

    inputs = [DATA / "pretrain/en/austen.txt", DATA / "pretrain/zh/peoples_daily_199801.txt"]
    return train_tokenizer(inputs, 8000, folder, input_sentence_size=200_000)


def make_corpus(folder: Path, megabytes: float) -> int:
    """Copy the shared files round-robin into `folder` until it holds `megabytes`; return bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    total, copy = 0, 0
    while total < megabytes * 1e6:
        source = DATA / SOURCES[copy % len(SOURCES)]
        target = folder / f"{copy:04d}-{source.name}"
        shutil.copyfile(source, target)
        total += target.stat().st_size
        copy += 1
    return total


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total


def run_build(
    tokenizer: Path, corpus: Path, output: Path, workers: int, extra: list[str]
) -> dict[str, float]:
    command = [sys.executable, "-m", "albert", "data", "--tokenizer", str(tokenizer), "--input", str(corpus)]
    command += ["--output", str(output), "--workers", str(workers), *extra]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(process.pid))
            stop.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = process.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        raise SystemExit(f"albert data failed ({process.returncode}):\n{out}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "peak": peak, "summary": out}


def tokenizer_reference(tokenizer: Path, corpus: Path, limit_bytes: int = 20_000_000) -> dict[str, float]:
    """MB per CPU-second of tokenising the corpus's lines (one batch per file) in this process, per
    engine the builder can use (`albert.data.encoders`): the floor cost any builder pays."""
    from albert.data.encoders import choose_engine, make_encoder
    from albert.tokenization import AlbertTokenizer

    loaded = AlbertTokenizer.from_pretrained(tokenizer)
    files, size = [], 0
    for path in sorted(corpus.iterdir()):
        files.append([line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()])
        size += path.stat().st_size
        if size >= limit_bytes:
            break
    engines = ["tokenizers"] + (
        ["sentencepiece"] if choose_engine(loaded, tokenizer) == "sentencepiece" else []
    )
    rates = {}
    for engine in engines:
        encode = make_encoder(loaded, tokenizer, engine)
        start = time.process_time()
        for lines in files:
            encode(lines)
        rates[engine] = size / 1e6 / (time.process_time() - start)
    return rates


def digest(directory: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=50.0, help="corpus size in MB (default 50)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default: 1 2)")
    parser.add_argument(
        "--tokenizer", type=Path, help="tokenizer directory (default: train an 8000-piece one)"
    )
    parser.add_argument("--max-seq-length", type=int, default=512)
    parser.add_argument("--name", default="bench_data", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--dupe-factor", type=int, default=5)
    parser.add_argument("--dynamic-masking", action="store_true")
    parser.add_argument(
        "--tokenizer-engine",
        choices=["auto", "sentencepiece", "tokenizers"],
        default="auto",
        help="passed to `albert data` (tokenizers = the engine used before the sentencepiece fast path)",
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}")
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        root = Path(tmp)
        print(f"load average before: {os.getloadavg()} on {os.cpu_count()} CPUs")
        tokenizer = args.tokenizer or train_default_tokenizer(root / "tokenizer")
        size = make_corpus(root / "corpus", args.mb)
        megabytes = size / 1e6
        print(
            f"corpus: {megabytes:.1f} MB in {len(list((root / 'corpus').iterdir()))} files; tokenizer {tokenizer}"
        )
        reference = tokenizer_reference(tokenizer, root / "corpus")
        rates = ", ".join(f"{engine} {rate:.2f}" for engine, rate in reference.items())
        print(f"reference: tokenizer alone, 1 process, MB per CPU-second: {rates}")
        extra = ["--max-seq-length", str(args.max_seq_length), "--dupe-factor", str(args.dupe_factor)]
        extra += ["--tokenizer-engine", args.tokenizer_engine]
        extra += ["--dynamic-masking"] if args.dynamic_masking else []
        results, digests = {}, {}
        for workers in args.workers:
            output = root / f"out-{workers}"
            results[workers] = run_build(tokenizer, root / "corpus", output, workers, extra)
            digests[workers] = digest(output)
            manifest = json.loads((output / "manifest.json").read_text())
            results[workers]["engine"] = manifest["tokenizer_engine"]
            shutil.rmtree(output)
        print(results[args.workers[0]]["summary"].rstrip())
        print()
        header = (
            f"{'workers':>7} {'wall s':>7} {'MB/s':>6} {'MB/s/wk':>7} {'CPU s':>6} {'MB/CPU-s':>8} "
            f"{'peak RSS':>9} {'speed-up':>8} {'engine':>13} {'x tok CPU':>9} {'output':>16}"
        )
        print(header)
        base = results[args.workers[0]]["wall"]
        for workers, r in results.items():
            rate = megabytes / r["wall"]
            print(
                f"{workers:>7} {r['wall']:>7.1f} {rate:>6.2f} {rate / workers:>7.2f} {r['cpu']:>6.1f} "
                f"{megabytes / r['cpu']:>8.2f} {r['peak'] / 2**20:>7.0f}MB {base / r['wall']:>7.2f}x "
                f"{r['engine']:>13} {megabytes / r['cpu'] / reference[r['engine']]:>8.2f}x {digests[workers]:>16}"
            )
        same = len(set(digests.values())) == 1
        print(f"\noutputs byte-identical across worker counts: {same}")
        worst_peak = max(r["peak"] for r in results.values()) / 2**30
        best_per_worker = min(megabytes / r["wall"] / w for w, r in results.items())
        print(
            f"targets: >= 2 MB/s per worker: {best_per_worker:.2f} (ratio {best_per_worker / 2:.2f}); "
            f"peak < 2 GB: {worst_peak:.2f} GB (ratio {worst_peak / 2:.2f})"
        )
        print(f"load average after: {os.getloadavg()}")
    from machine import write_results

    payload = {
        "megabytes": round(megabytes, 1),
        "max_seq_length": args.max_seq_length,
        "dupe_factor": args.dupe_factor,
        "summary": results[args.workers[0]]["summary"].rstrip(),
        "tokenizer_alone_mb_per_cpu_second": reference,
        "byte_identical": same,
        "rows": [
            {
                "workers": workers,
                "wall_s": r["wall"],
                "cpu_s": r["cpu"],
                "peak_rss_mb": r["peak"] / 2**20,
                "engine": r["engine"],
                "mb_per_s": megabytes / r["wall"],
                "speedup": base / r["wall"],
            }
            for workers, r in results.items()
        ],
    }
    write_results(args.name, payload)


if __name__ == "__main__":
    main()
