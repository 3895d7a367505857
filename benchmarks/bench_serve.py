"""Load test of `albert serve`: real HTTP traffic against real server processes over loopback.

    python benchmarks/bench_serve.py                      # the full run (albert-base and albert-tiny)
    python benchmarks/bench_serve.py --presets albert-tiny --requests 200 --rss-requests 2000

For each model geometry (random weights, two labels, a SentencePiece tokenizer trained here on
the Rotten Tomatoes training texts) three servers run side by side, each in its own process:

* `albert serve` with dynamic batching (its defaults);
* the same server with batching off (`--max-batch-size 1`);
* the server a user would otherwise write: transformers' `pipeline` behind the same framework
  (FastAPI on uvicorn), one pipeline call per request (`python bench_serve.py --transformers-server`).

An async client (aiohttp, one connection per concurrent request) sends Rotten Tomatoes dev reviews
(real text of mixed length), one text per request, at each concurrency level, server after server.
It records texts/s, p50/p95/p99 latency and failed requests; the c=1 latency is compared with a
direct in-process `albert.pipeline` call on the same texts. Finally the batching server answers
`--rss-requests` more requests and its resident memory is read before and after. Raw numbers go
to benchmarks/results/bench_serve.json (with the machine), a latency-vs-throughput plot to
docs/img/serve_latency_throughput.png, and a markdown table to stdout.

The client runs in this process, on the same cores as the servers, and takes CPU from whichever
server it measures: per request the same, so per second more from a faster server. Hence a light
client: aiohttp spends about 1 ms of CPU per request where httpx spent 7-8 ms (measured at
concurrency 32 against `albert serve` on albert-tiny), which on 2 cores had the client take half
the machine from the fastest server. Absolute numbers remain a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import DATA, read_texts  # noqa: E402
from pydantic import BaseModel  # noqa: E402

PLOT = REPO / "docs" / "img" / "serve_latency_throughput.png"
SERVERS = ("batching", "no batching", "transformers")


# ----------------------------------------------------------------------------------------
# the transformers server (what a user would write without `albert serve`)


class Body(BaseModel):
    inputs: str | list[str]


def transformers_app(model_dir: str, threads: int | None = None) -> Any:
    import torch
    import transformers
    from fastapi import FastAPI

    torch.set_num_threads(threads or torch.get_num_threads())
    classify = transformers.pipeline("text-classification", model=model_dir, device="cpu")
    app = FastAPI()

    @app.post("/predict")
    def predict(body: Body) -> Any:  # a plain def: FastAPI runs it on its thread pool
        return classify(body.inputs, top_k=None)

    @app.get("/health")
    def health() -> Any:
        return {"status": "ok"}

    return app


def run_transformers_server(model_dir: str, threads: int | None) -> None:
    import uvicorn

    from albert.serve import bind

    sock = bind("127.0.0.1", 0)
    app = transformers_app(model_dir, threads)
    print(f"transformers server on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


# ----------------------------------------------------------------------------------------
# models and server processes


def build_models(folder: Path, presets: list[str]) -> dict[str, Path]:
    """One randomly initialised two-label classifier per preset, sharing one trained tokenizer."""
    import torch

    from albert.config import AlbertConfig
    from albert.modeling import AlbertForSequenceClassification
    from albert.tokenization import AlbertTokenizer
    from albert.tokenizer_train import train_tokenizer

    corpus = folder / "train.txt"
    corpus.write_text("\n".join(read_texts(DATA / "train.csv", None)), encoding="utf-8")
    tokenizer = AlbertTokenizer.from_pretrained(train_tokenizer([corpus], 8000, folder / "tokenizer"))
    models = {}
    for preset in presets:
        torch.manual_seed(0)
        config = AlbertConfig.from_preset(preset, vocab_size=8000, id2label={0: "rotten", 1: "fresh"})
        models[preset] = folder / preset
        AlbertForSequenceClassification(config).save_pretrained(models[preset])
        tokenizer.save_pretrained(models[preset])
    return models


def start(argv: list[str]) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    found = re.search(r"http://[\d.]+:\d+", line)
    if not found:
        raise SystemExit(f"server did not start: {argv} printed {line!r}")
    return process, found.group()


def wait_healthy(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # refused while starting, or 503 while loading (HTTPError is an OSError)
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} never became healthy")


def start_servers(
    model_dir: Path, threads: int | None, precision: str
) -> dict[str, tuple[subprocess.Popen, str]]:
    thread_option = ["--threads", str(threads)] if threads else []
    serve = [
        sys.executable,
        "-m",
        "albert",
        "serve",
        "--model",
        str(model_dir),
        "--port",
        "0",
        "--precision",
        precision,
        *thread_option,
    ]
    servers = {
        "batching": start(serve),
        "no batching": start([*serve, "--max-batch-size", "1"]),
        "transformers": start(
            [sys.executable, __file__, "--transformers-server", str(model_dir), *thread_option]
        ),
    }
    for _, url in servers.values():
        wait_healthy(url)
    return servers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_counts(url: str) -> tuple[float, float, float]:
    """Our server's batches, texts and padded tokens so far, from its /metrics histograms."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    sums = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
    return (
        sums["albert_batch_size_count"],
        sums["albert_batch_size_sum"],
        sums["albert_batch_padded_tokens_sum"],
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ----------------------------------------------------------------------------------------
# load


async def load(url: str, texts: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    """`requests` POST /predict calls, `concurrency` at a time; throughput, latency, failures."""
    try:
        import aiohttp
    except ImportError:
        raise SystemExit("bench_serve.py's client is aiohttp: pip install -e '.[bench]'") from None

    latencies: list[float] = []
    failures: dict[str, int] = {}  # reason (status code or exception type) -> count

    async def client_loop(client: aiohttp.ClientSession, indices: Any) -> None:
        for i in indices:
            started = time.perf_counter()
            try:
                async with client.post("/predict", json={"inputs": texts[i % len(texts)]}) as response:
                    await response.read()
                    reason = None if response.status == 200 else str(response.status)
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                reason = type(e).__name__
            latencies.append(time.perf_counter() - started)
            if reason is not None:
                failures[reason] = failures.get(reason, 0) + 1

    # no warm-up phase: connections left idle while the slowest warm-up request finishes can pass
    # the server's keep-alive timeout and be closed under the client (a client-side race, not load)
    # one connection per concurrent request; idle ones are closed before the server's 5 s keep-alive
    connections = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(url, connector=connections, timeout=timeout) as client:
        indices = iter(range(requests))  # shared: each client takes the next text when it is free
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, indices) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "requests": requests,
        "failures": sum(failures.values()),
        "failure_reasons": failures,
        **summary(latencies, seconds),
    }


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)

    def percentile(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "texts_per_s": len(ordered) / seconds,
        "p50_ms": percentile(0.50),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
    }


def in_process_p50(model_dir: Path, texts: list[str], threads: int | None, precision: str) -> float:
    """p50 of a direct `albert.pipeline` call on one text (no HTTP), in the servers' precision:
    the c=1 baseline."""
    import torch

    import albert

    torch.set_num_threads(threads or os.cpu_count() or 1)
    classify = albert.pipeline("text-classification", model=model_dir, dtype=precision)
    classify(texts[:4])
    times = []
    for text in texts:
        started = time.perf_counter()
        classify(text, top_k=None)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def in_process_p50_passive(model_dir: Path, texts: list[str], args: argparse.Namespace) -> float:
    """The same direct call in a process whose OpenMP threads sleep at once between operators
    (OMP_WAIT_POLICY=PASSIVE, the server's setting for a machine shared with other busy work;
    by default it spins briefly): what the threads' wait policy alone costs a lone text."""
    command = [sys.executable, __file__, "--in-process-p50", str(model_dir), "--precision", args.precision]
    command += ["--direct-texts", str(len(texts))] + (
        ["--threads", str(args.threads)] if args.threads else []
    )
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return float(
        subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()[-1]
    )


def bench_model(preset: str, model_dir: Path, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    servers = start_servers(model_dir, args.threads, args.precision)
    try:
        direct = texts[: args.direct_texts]
        result: dict[str, Any] = {
            "in_process_p50_ms": in_process_p50(model_dir, direct, args.threads, args.precision),
            "in_process_passive_p50_ms": in_process_p50_passive(model_dir, direct, args),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
        for level, concurrency in enumerate(args.concurrency):
            requests = max(args.requests, concurrency)
            order = SERVERS if level % 2 == 0 else tuple(reversed(SERVERS))  # alternate who goes first
            for name in order:
                process, url = servers[name]
                ours = name != "transformers"
                counts_before = batch_counts(url) if ours else None
                cpu_before = cpu_seconds(process.pid)
                run = asyncio.run(load(url, texts, concurrency, requests))
                # CPU per text: how much work a server does per answer, which a shared machine
                # (other processes taking turns on the cores) does not distort the way it does wall time
                run["server_cpu_ms_per_text"] = 1000 * (cpu_seconds(process.pid) - cpu_before) / requests
                if counts_before is not None:  # the batches the server formed under this load
                    batches, batched, padded = (
                        b - a for a, b in zip(counts_before, batch_counts(url), strict=True)
                    )
                    run["texts_per_batch"], run["padded_tokens_per_text"] = (
                        batched / batches,
                        padded / batched,
                    )
                runs[name].append(run)
                print(
                    f"{preset:<14}{name:<14}c={concurrency:<4}{run['texts_per_s']:8.1f} texts/s  p50 "
                    f"{run['p50_ms']:7.1f}  p95 {run['p95_ms']:7.1f}  p99 {run['p99_ms']:7.1f} ms  "
                    f"cpu/text {run['server_cpu_ms_per_text']:6.1f} ms  texts/batch {run.get('texts_per_batch', 0):4.1f}  failed {run['failures']} {run['failure_reasons']}  "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
        result["runs"] = runs
        if args.rss_requests and preset in args.rss_presets:
            process, url = servers["batching"]
            before = rss_mb(process.pid)
            run = asyncio.run(load(url, texts, 32, args.rss_requests))
            result["rss"] = {
                "requests": args.rss_requests,
                "before_mb": before,
                "after_mb": rss_mb(process.pid),
                "failures": run["failures"],
            }
            result["rss"]["growth"] = result["rss"]["after_mb"] / before - 1
            print(
                f"{preset}: RSS {before:.0f} -> {result['rss']['after_mb']:.0f} MB over {args.rss_requests} requests"
            )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    return result


# ----------------------------------------------------------------------------------------
# reporting


def table(results: dict[str, Any]) -> str:
    """The markdown table of a results file, printed by `--report` (docs/benchmarks.md has its own)."""
    lines = [
        "| model | server | concurrency | texts/s | p50 ms | p95 ms | p99 ms | server CPU ms/text | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for preset, model in results["models"].items():
        for name in SERVERS:
            for run in model["runs"][name]:
                lines.append(
                    f"| {preset} | {name} | {run['concurrency']} | {run['texts_per_s']:.1f} | {run['p50_ms']:.1f} "
                    f"| {run['p95_ms']:.1f} | {run['p99_ms']:.1f} | {run['server_cpu_ms_per_text']:.1f} | {run['failures']} |"
                )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> str:
    """The targets, judged exactly as docs/benchmarks.md judges them (`make_tables.serve_targets`)."""
    from make_tables import serve_targets

    return "\n".join(
        f"{preset}: {line}" for preset, model in results["models"].items() for line in serve_targets(model)
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(results["models"])
    figure, axes = plt.subplots(1, len(presets), figsize=(6 * len(presets), 4.5), squeeze=False)
    for axis, preset in zip(axes[0], presets, strict=True):
        for name, marker in zip(SERVERS, "os^", strict=True):
            runs = results["models"][preset]["runs"][name]
            axis.plot(
                [r["texts_per_s"] for r in runs], [r["p50_ms"] for r in runs], marker=marker, label=name
            )
            for r in runs:
                axis.annotate(f"c={r['concurrency']}", (r["texts_per_s"], r["p50_ms"]), fontsize=7)
        axis.set(xlabel="throughput (texts/s)", ylabel="p50 latency (ms)", yscale="log", title=preset)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("albert serve over loopback HTTP: latency vs throughput at concurrency 1-128")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["albert-base-v2", "albert-tiny"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument(
        "--requests", type=int, default=512, help="requests per level (at least the concurrency)"
    )
    parser.add_argument(
        "--rss-requests", type=int, default=10000, help="requests of the memory check (0: skip)"
    )
    parser.add_argument("--rss-presets", nargs="+", default=["albert-base-v2", "albert-tiny"])
    parser.add_argument("--direct-texts", type=int, default=100, help="texts of the in-process c=1 baseline")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of every server and the in-process baseline (default: all cores)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "auto"),
        default="fp32",
        help="our servers' and the in-process baseline's precision (transformers' server runs fp32)",
    )
    parser.add_argument("--name", default="bench_serve", help="results file: benchmarks/results/NAME.json")
    parser.add_argument(
        "--report", action="store_true", help="print the table of the last results file; run nothing"
    )
    parser.add_argument("--transformers-server", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--in-process-p50", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.transformers_server:
        run_transformers_server(args.transformers_server, args.threads)
        return
    if args.in_process_p50:
        texts = read_texts(DATA / "dev.csv", None)[: args.direct_texts]
        print(in_process_p50(Path(args.in_process_p50), texts, args.threads, args.precision))
        return
    from machine import RESULTS_DIR, write_results

    if args.report:
        results = json.loads((RESULTS_DIR / f"{args.name}.json").read_text(encoding="utf-8"))
        print(f"{table(results)}\n\n{targets(results)}")
        return
    if not DATA.is_dir():
        raise SystemExit(f"shared data not found at {DATA}")

    texts = read_texts(DATA / "dev.csv", None)
    started = time.time()
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_serve.py " + " ".join(sys.argv[1:]),
        "data": f"Rotten Tomatoes dev ({len(texts)} reviews), one text per request",
        "threads": args.threads or os.cpu_count(),
        "precision": args.precision,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp), args.presets)
        for preset in args.presets:  # results are written after each model, so a long run keeps its part
            results["models"][preset] = bench_model(preset, models[preset], texts, args)
            results["seconds"], results["load_average"] = time.time() - started, os.getloadavg()[0]
            path = write_results(args.name, results)
    figure = PLOT if args.name == "bench_serve" else PLOT.with_name(f"{args.name}.png")
    plot(results, figure)
    print(f"\nwrote {path} and {figure}\n\n{table(results)}\n\n{targets(results)}")


if __name__ == "__main__":
    main()
