"""`albert serve`: an HTTP inference server with dynamic batching (FastAPI on uvicorn).

    albert serve --model runs/sst --port 8080
    curl -s localhost:8080/predict -H 'content-type: application/json' -d '{"inputs": "a gem of a film"}'

One model, one task: the model's head picks the endpoint (`POST /predict` for a classifier,
`/token-classify`, `/fill-mask`, `/embed`); `/tokenize`, `/info`, `/health`, `/metrics` (Prometheus)
and `/docs` (OpenAPI) are always there. Request and response shapes follow
text-embeddings-inference where it has the endpoint, so its clients and habits carry over.

Why a batcher: a transformer on a CPU does far more work per second on a batch than on one text,
but HTTP clients send one text at a time. Texts are tokenised as their request arrives and wait in
one queue. Batching is continuous: whenever the model is free, the batcher takes the oldest waiting
text plus the waiting texts closest to it in length (so padding stays small), up to
`max_batch_tokens` padded tokens or `max_batch_size` texts, and runs them at once; while that batch
runs, new texts queue up and form the next one. So a lone request pays no wait, and under load
batches fill by themselves. (`max_wait_ms` > 0 makes an idle model wait that long for company.)
One model thread runs the batch (the model uses all cores), and each request gets exactly its
own results back; it also loaded the model, so the process has one OpenMP thread pool
(`model_thread`).

The server never goes down on bad input or overload: every error is a JSON body
``{"error": ..., "error_type": ...}`` (422 bad field, 413 too large, 429 queue full with
Retry-After, 400 wrong endpoint for the model, 500 the model failed, the server keeps serving).
SIGTERM stops accepting connections, answers every request already accepted, and exits 0.
The server's packages are the optional `serve` extra: ``pip install 'albert[serve]'``.
"""

import argparse
import asyncio
import ctypes
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from albert import __version__
from albert.errors import AlbertError
from albert.hardware import PRECISIONS, choose_precision, describe_choice
from albert.pipelines import HEAD_TASKS
from albert.predict import to_json
from albert.tasks.common import Feature, feature_length, run_batch

INSTALL_HINT = "pip install 'albert[serve]'"
SPIN_ROUNDS = 30_000  # OpenMP spin between operators before a thread sleeps (`share_cores_politely`)
TRIM_EVERY_S = 1.0  # seconds between two hand-backs of the heap's free memory (`heap_trimmer`)
ENV_SETTINGS = "ALBERT_SERVE_SETTINGS"  # how `--workers N` hands the settings to worker processes
# the task each saved head serves, and that task's endpoint
TASK_ENDPOINTS = {
    "text-classification": "/predict",
    "token-classification": "/token-classify",
    "fill-mask": "/fill-mask",
    "feature-extraction": "/embed",
}
ARCHITECTURE_TASKS = {head: task for head, task in HEAD_TASKS.items() if task in TASK_ENDPOINTS}
ROUTES = (*TASK_ENDPOINTS.values(), "/tokenize", "/info", "/health", "/metrics", "/docs", "/openapi.json")
log = logging.getLogger("albert.serve")


# the settings `/info` reports under "batching" (ServeSettings fields, in their order)
BATCHING_FIELDS = (
    "max_batch_tokens",
    "max_batch_size",
    "max_wait_ms",
    "max_padding",
    "pad_to_multiple_of",
    "max_queue",
    "max_input_length",
    "max_client_batch_size",
    "max_body_bytes",
)


@dataclass
class ServeSettings:
    """What to load and how to batch; `albert serve`'s options, one field each."""

    model: str = ""
    task: str | None = None  # None: from the model's head (config.json `architectures`)
    tokenizer: str | None = None
    runtime: str = "torch"
    int8: bool = False
    precision: str = "auto"  # the torch model's: auto (bf16 on CPUs with native bf16, else fp32), fp32, bf16
    max_batch_tokens: int = 16384  # padded tokens (texts x longest) of one batch
    max_batch_size: int = 64  # texts in one batch
    max_wait_ms: float = 0.0  # how long an idle model waits for company (0: run at once)
    max_padding: float = 0.2  # the share of a batch's tokens that may be padding
    pad_to_multiple_of: int = 8  # texts are padded to a multiple of this many tokens (1: no rounding)
    max_queue: int = 1024  # requests accepted and not yet answered; more get 429
    max_input_length: int | None = None  # tokens; default: the model's (its fine-tuning length)
    max_client_batch_size: int = 64  # texts in one request; more get 413
    max_body_bytes: int = 2 * 1024 * 1024  # request body; more get 413
    threads: int | None = None  # the model's CPU threads; None: all cores (divided among workers)

    def check(self) -> None:
        for name in (
            "max_batch_tokens",
            "max_batch_size",
            "max_queue",
            "max_client_batch_size",
            "max_body_bytes",
            "pad_to_multiple_of",
        ):
            if getattr(self, name) < 1:
                raise AlbertError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.max_padding < 1:
            raise AlbertError(f"--max-padding must be a fraction in [0, 1), not {self.max_padding}")
        if not (self.max_wait_ms >= 0 and math.isfinite(self.max_wait_ms)):
            raise AlbertError(f"--max-wait-ms must be a number >= 0, not {self.max_wait_ms}")
        if self.max_input_length is not None and self.max_input_length < 2:
            raise AlbertError(f"--max-input-length must be at least 2 tokens, not {self.max_input_length}")
        if self.threads is not None and self.threads < 1:
            raise AlbertError(f"--threads must be at least 1, not {self.threads}")
        if self.int8 and self.runtime != "torch":
            raise AlbertError(
                "--int8 quantises a PyTorch model; for ONNX serve an `albert export --int8` file"
            )
        if self.precision not in PRECISIONS:
            raise AlbertError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.precision == "bf16" and (self.int8 or self.runtime != "torch"):
            raise AlbertError(
                "--precision bf16 applies to a PyTorch model without --int8; drop one of them "
                "(an ONNX model runs in the precision it was exported in)"
            )
        if self.task is not None and self.task not in TASK_ENDPOINTS:
            raise AlbertError(f"--task must be one of: {', '.join(TASK_ENDPOINTS)}; not {self.task!r}")


# ----------------------------------------------------------------------------------------
# errors


def _import_server() -> tuple[Any, Any]:
    try:
        import fastapi
        import uvicorn
    except ImportError as e:
        raise AlbertError(f"the server needs {e.name}; install it with `{INSTALL_HINT}`") from None
    return fastapi, uvicorn


def serve_error(
    status: int, error_type: str, message: str, headers: dict[str, str] | None = None
) -> Exception:
    """An HTTP error the handlers turn into ``{"error": message, "error_type": error_type}``."""
    from starlette.exceptions import HTTPException

    error = HTTPException(status, message, headers)
    error.error_type = error_type  # type: ignore[attr-defined]
    return error


def error_response(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message, "error_type": error_type}, status, headers)


class ModelFailed(Exception):
    """The model (or decoding) raised on a batch; every request in the batch gets a 500."""


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


# ----------------------------------------------------------------------------------------
# metrics


class Metrics:
    """The Prometheus series, in a registry of their own (several apps can share a process)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "albert_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "albert_request_duration_seconds",
            "time from request to response, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.queue_depth = Gauge("albert_queue_depth", "texts waiting for a batch", registry=r)
        self.batch_size = Histogram(
            "albert_batch_size",
            "texts per model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.batch_tokens = Histogram(
            "albert_batch_padded_tokens",
            "padded tokens (texts x longest) per model batch",
            buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
            registry=r,
        )
        self.texts = Counter("albert_texts", "texts run through the model (rate() = texts/s)", registry=r)
        self.dropped_texts = Counter(
            "albert_dropped_texts", "queued texts dropped because their client disconnected", registry=r
        )
        self.heap_trims = Counter(
            "albert_heap_trims", "times freed heap memory was handed back to the OS", registry=r
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes, CPU seconds, open files


# ----------------------------------------------------------------------------------------
# the batcher


@dataclass
class Job:
    """One request's texts on their way through the batcher."""

    items: list[Any]
    features: list[Feature]
    options: dict[str, Any]  # decoding options of this request (top_k, pooling...)
    future: asyncio.Future
    results: list[Any] = field(default_factory=list)
    remaining: int = 0


@dataclass
class Waiting:
    """One text in the queue."""

    job: Job
    index: int  # position in its request
    length: int  # tokens it takes in a batch: its own, rounded up to its length bucket
    arrived: float


def length_bucket(length: int, multiple: int, longest: int | None) -> int:
    """`length` rounded up to a multiple of `multiple`, but not past `longest` (the max input
    length: the model has no positions beyond it) unless `length` itself is longer.

    Why round: PyTorch's oneDNN kernels are built, and cached, per input shape, and building one
    costs about as much as running a small model on a short text. A server capped at a few cached
    shapes (to keep its memory flat) that meets every length from 1 to 512 builds kernels on
    almost every request; lengths rounded to a few buckets hit the cache every time."""
    rounded = -(-length // multiple) * multiple
    return max(length, min(rounded, longest)) if longest is not None else rounded


class Batcher:
    """Groups waiting texts from all requests into batches and runs them on one executor thread.

    Lives on the server's event loop: `submit` and `drop` are called from request handlers, `run`
    is one long-lived task. `decode(items, features, outputs, options)` turns a request's share of
    a batch into its results (on the executor thread, next to the model)."""

    def __init__(
        self,
        runner: Callable[..., dict[str, np.ndarray]],
        decode: Callable[[list[Any], list[Feature], list[dict[str, np.ndarray]], dict[str, Any]], list[Any]],
        pad_id: int,
        outputs: tuple[tuple[str, ...], tuple[str, ...]],  # (sequence outputs, wanted outputs)
        settings: ServeSettings,
        metrics: Metrics,
        longest: int | None = None,  # the max input length (no bucket goes past it)
        executor: ThreadPoolExecutor | None = None,  # the model's thread (`model_thread`); None: a new one
    ) -> None:
        self.runner, self.decode, self.pad_id, self.outputs = runner, decode, pad_id, outputs
        self.settings, self.metrics, self.longest = settings, metrics, longest
        self.waiting: list[Waiting] = []  # in arrival order
        self.unanswered = 0  # accepted requests not yet answered
        self.arrival = asyncio.Event()
        self.executor = executor or model_thread()
        self.trim_heap = heap_trimmer()
        self.trimmed = time.monotonic()  # when freed heap memory was last handed back

    def submit(self, items: list[Any], features: list[Feature], options: dict[str, Any]) -> Job:
        if self.unanswered >= self.settings.max_queue:
            raise serve_error(
                429,
                "Overloaded",
                f"the queue is full ({self.settings.max_queue} requests waiting); retry shortly",
                {"Retry-After": "1"},
            )
        job = Job(items, features, options, asyncio.get_running_loop().create_future())
        job.results, job.remaining = [None] * len(items), len(items)
        now = time.monotonic()
        multiple = self.settings.pad_to_multiple_of
        self.waiting.extend(
            Waiting(job, i, length_bucket(feature_length(f), multiple, self.longest), now)
            for i, f in enumerate(features)
        )
        self.unanswered += 1
        job.future.add_done_callback(self._answered)
        self.metrics.queue_depth.set(len(self.waiting))
        self.arrival.set()
        return job

    def _answered(self, future: asyncio.Future) -> None:
        self.unanswered -= 1

    def drop(self, job: Job) -> None:
        """Forget a request whose client went away: its texts leave the queue unrun."""
        kept = [w for w in self.waiting if w.job is not job]
        self.metrics.dropped_texts.inc(len(self.waiting) - len(kept))
        self.waiting = kept
        self.metrics.queue_depth.set(len(self.waiting))
        if not job.future.done():
            job.future.cancel()

    def select(self) -> tuple[list[Waiting], bool]:
        """The next batch: the oldest text plus the waiting texts nearest to it in length, as many
        as the limits allow; and whether a limit was reached (the batch cannot grow). Lengths are
        length buckets, so texts of one bucket always batch together (up to the size limits).

        On a CPU a batch saves work only if it is not mostly padding (a padded token costs as
        much as a real one), so a text that would make more than `max_padding` of the batch's
        tokens padding stays for a later batch of its own length."""
        oldest = self.waiting[0]
        ordered = sorted(self.waiting, key=lambda w: w.length)
        low = next(i for i, w in enumerate(ordered) if w is oldest)
        high, longest, real = low + 1, oldest.length, oldest.length
        while high - low < self.settings.max_batch_size:
            left = ordered[low - 1] if low > 0 else None
            right = ordered[high] if high < len(ordered) else None
            if left is None and right is None:
                return ordered[low:high], False
            take_right = left is None or (
                right is not None and right.length - oldest.length < oldest.length - left.length
            )
            candidate: Waiting = right if take_right else left  # type: ignore[assignment]
            padded = max(longest, candidate.length) * (high - low + 1)
            if padded > self.settings.max_batch_tokens or padded - real - candidate.length > (
                self.settings.max_padding * padded
            ):
                return ordered[low:high], True
            longest, real = max(longest, candidate.length), real + candidate.length
            low, high = (low, high + 1) if take_right else (low - 1, high)
        return ordered[low:high], True

    def company_wait(self) -> float:
        """Seconds the model, free now, should still wait for more texts before running a batch
        that could grow: none by default (continuous batching: a lone request runs at once, and
        under load the texts that queue while a batch runs form the next one); with
        `max_wait_ms` > 0, until the oldest text has waited that long."""
        return self.waiting[0].arrived + self.settings.max_wait_ms / 1000 - time.monotonic()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.waiting:
                self.arrival.clear()
                await self.arrival.wait()
                continue
            batch, full = self.select()
            delay = 0.0 if full else self.company_wait()
            if delay > 0:
                self.arrival.clear()
                try:
                    await asyncio.wait_for(self.arrival.wait(), delay)
                except asyncio.TimeoutError:  # (not the builtin TimeoutError before Python 3.11)
                    pass
                continue  # look again: more company, or the wait is over
            chosen = {id(w) for w in batch}
            self.waiting = [w for w in self.waiting if id(w) not in chosen]
            self.metrics.queue_depth.set(len(self.waiting))
            try:
                answers = await loop.run_in_executor(self.executor, self.compute, batch)
            except Exception as e:  # the model's failure is the batch's requests' answer, not ours
                log.exception("the model failed on a batch of %d texts", len(batch))
                for job in {id(w.job): w.job for w in batch}.values():
                    if not job.future.done():
                        job.future.set_exception(ModelFailed(f"{type(e).__name__}: {e}"))
                self.waiting = [w for w in self.waiting if not w.job.future.done()]  # their other texts
                self.metrics.queue_depth.set(len(self.waiting))
                continue
            for waiting, answer in zip(batch, answers, strict=True):
                job = waiting.job
                if job.future.done():  # dropped, or failed in another batch
                    continue
                job.results[waiting.index] = answer
                job.remaining -= 1
                if job.remaining == 0:
                    job.future.set_result(job.results)
            self.trim_now_and_then()

    def trim_now_and_then(self) -> None:
        """At most once every `TRIM_EVERY_S`, after a batch's answers went out, have the model
        thread hand the heap's free pages back to the OS (see `heap_trimmer`)."""
        if self.trim_heap is None or time.monotonic() - self.trimmed < TRIM_EVERY_S:
            return
        self.trimmed = time.monotonic()
        self.executor.submit(self.trim_heap)
        self.metrics.heap_trims.inc()

    def compute(self, batch: list[Waiting]) -> list[Any]:
        """On the executor thread: one padded model call, then each request's decoding."""
        features = [w.job.features[w.index] for w in batch]
        width = max(w.length for w in batch)  # the batch's longest bucket
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_tokens.observe(width * len(batch))
        outputs = run_batch(self.runner, features, self.pad_id, *self.outputs, pad_to=width)
        self.metrics.texts.inc(len(batch))
        return [
            self.decode([w.job.items[w.index]], [feature], [output], w.job.options)[0]
            for w, feature, output in zip(batch, features, outputs, strict=True)
        ]


# ----------------------------------------------------------------------------------------
# HTTP plumbing


class RequestGuard:
    """ASGI middleware: refuses bodies over the limit (413) before they are read, and counts
    every response by endpoint and status with its latency."""

    def __init__(self, app: Any, metrics: Metrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ROUTES else "other"
        started, status = time.perf_counter(), [500]

        async def send_counting(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        too_large = self.refuse_large_body(scope)
        try:
            if too_large is not None:
                await too_large(scope, receive, send_counting)
            else:
                await self.app(scope, self.limit_body(receive), send_counting)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def refuse_large_body(self, scope: dict[str, Any]) -> Any:
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return error_response(413, "PayloadTooLarge", self._too_large_message(int(length)))
        return None

    def limit_body(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> Callable:
        received = [0]

        async def receive_limited() -> dict[str, Any]:
            message = await receive()
            received[0] += len(message.get("body", b""))
            if received[0] > self.max_body_bytes:  # a chunked body without a Content-Length
                raise serve_error(413, "PayloadTooLarge", self._too_large_message(received[0]))
            return message

        return receive_limited

    def _too_large_message(self, size: int) -> str:
        return f"request body of {size} bytes is over the limit of {self.max_body_bytes}; send fewer or shorter texts"


# ----------------------------------------------------------------------------------------
# loading


def model_thread() -> ThreadPoolExecutor:
    """The one thread that makes every torch call of the server: loading, warm-up, batches.

    Why one: each thread that runs a parallel torch operator gets an OpenMP pool of its own, and
    OpenMP counts the pools' threads together. A model loaded on the main thread and run on
    another left two pools, three OpenMP threads for two cores (seen in a debugger), which OpenMP
    takes for an oversubscribed machine: its threads then cut their spin between operators
    (`share_cores_politely`) to about 100 rounds and sleep, paying a wake-up per operator."""
    return ThreadPoolExecutor(1, thread_name_prefix="albert-model")


def model_task(settings: ServeSettings) -> str:
    """The task to serve: --task, else the one the saved head does (config.json architectures)."""
    if settings.task is not None:
        return settings.task
    path = Path(settings.model)
    if settings.runtime == "onnx":
        from albert.onnx_runtime import resolve_onnx_file

        directory = resolve_onnx_file(path).parent
    else:
        from albert.hub import weights_directory

        directory = weights_directory(path)
    try:
        architectures = (
            json.loads((directory / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        )
    except (OSError, json.JSONDecodeError) as e:
        raise AlbertError(
            f"cannot read {directory / 'config.json'} ({e}); is {path} a saved model?"
        ) from None
    for architecture in architectures:
        if architecture in ARCHITECTURE_TASKS:
            return ARCHITECTURE_TASKS[architecture]
    raise AlbertError(
        f"{path} is a {', '.join(architectures) or 'model without a recorded head'}; the server serves "
        f"{', '.join(ARCHITECTURE_TASKS)} models - pass --task ({', '.join(TASK_ENDPOINTS)}) to pick one"
    )


def share_cores_politely() -> None:
    """Let the model's threads spin briefly between operators, then sleep; no tokenizer pool.

    Between two operators of one forward pass PyTorch's OpenMP threads wait for the next one. A
    sleeping thread pays a wake-up per operator (albert-base-v2 runs hundreds per text); a
    spinning one holds a core the server's event loop (HTTP, JSON, tokenising) and, on a shared
    machine, other processes need; OpenMP's own default spins about 3 ms after every operator.
    The server spins 30,000 rounds (a fraction of a millisecond: enough to catch the next operator
    of a running batch) and never while OpenMP sees more of its threads than cores
    (`OMP_WAIT_POLICY=PASSIVE` with `GOMP_SPINCOUNT`). Measured served on a 2-core AMD EPYC, in
    alternating runs: albert-tiny's lone request 10.3-12.8 ms p50 with sleeping threads, 8.1-8.8 ms
    with this spin; OpenMP's 3 ms spin was 0-3 ms faster for a lone request and level at
    concurrency 32 (albert-tiny fp32 180-246 texts/s against 208-241, albert-base-v2 bf16 45-61
    against 48-56), and it gives the cores back later. A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT
    wins (`OMP_WAIT_POLICY=PASSIVE` alone: sleep at once, for a machine shared with other busy
    processes). OpenMP reads these when torch loads it: call before torch is imported."""
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"], os.environ["GOMP_SPINCOUNT"] = "PASSIVE", str(SPIN_ROUNDS)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one request's texts: no pool needed


def bound_allocator_memory() -> None:
    """Keep a long-running server's memory flat although every batch has a new shape.

    PyTorch's oneDNN bridge (ideep) caches a computation, with its buffers, for every input shape
    it meets, up to `LRU_CACHE_CAPACITY` (default 1,024) of them, and a server meets a new
    (batch, length) shape on almost every batch. Measured on albert-tiny over 240 batches of random
    shapes (1-32 texts of 5-70 tokens) on one model thread: resident memory grew 316 -> 429 -> 489
    -> 544 -> 599 MB, with periodic `malloc_trim` exactly the same, and with the cache at 16
    entries 316 -> 368 and flat from there. oneDNN's own primitive cache (the built kernels, four
    per sequence shape on ALBERT) grows the same way, to 729 MB over 400 random shapes at its
    default 1,024 entries. It gets 32: with lengths rounded to buckets (`length_bucket`) that holds
    every bucket a lone text can have up to 64 tokens, so one text at a time rarely rebuilds a
    kernel (at 16 entries a lone text paid about 4 ms more CPU). Served at concurrency 32 after a
    warm-up, albert-tiny's memory grew 5 % over the next 1,000 requests and was flat after them
    with 32 entries, 11 % with 64. glibc gets one malloc arena; free memory goes back to the OS
    through `heap_trimmer`. glibc's thresholds are left alone: setting one (a 64 KiB trim
    threshold was tried) freezes its mmap threshold at 128 KiB, so every activation above it is a
    fresh mmap whose pages fault in on first touch. Measured on albert-base-v2 served at
    concurrency 32 (2-core AMD EPYC): 4,907 minor page faults per text with the frozen threshold, 667 without;
    66.3 -> 51.5 ms of CPU per text. Must run before torch is imported; an environment variable
    the user set wins."""
    os.environ.setdefault("LRU_CACHE_CAPACITY", "16")
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "32")
    if sys.platform.startswith("linux") and "MALLOC_ARENA_MAX" not in os.environ:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-8, 1)  # M_ARENA_MAX
        except (OSError, AttributeError):  # not glibc: its allocator has its own policy
            pass


def prepare_process(runtime: str) -> None:
    """The process settings the server needs before torch is imported (OpenMP and the oneDNN
    caches read theirs when torch loads them), in one place for both ways in: `albert serve`,
    which imports torch early to resolve `--precision auto`, and `create_app` on a model path."""
    share_cores_politely()
    if runtime == "torch":
        bound_allocator_memory()


def heap_trimmer() -> Callable[[], Any] | None:
    """glibc's `malloc_trim(0)`, which hands every whole free page inside the heap back to the OS;
    None where the C library is not glibc (other allocators have their own policy).

    Why: with every batch a new shape, the model's activations and the requests' small objects
    leave free holes between live blocks of the heap. glibc only returns free memory at the top
    of the heap, so the holes stay resident. Measured on albert-tiny at concurrency 32 (glibc
    counters): memory in use stayed at 112 MB over 5,000 requests while free-but-kept heap memory
    grew 17 -> 44 MB in the first 1,000 and resident memory 326 -> 354 MB with it; one
    `malloc_trim(0)` then brought it to 314 MB. A trim costs under 1 ms, so the batcher runs one
    at most once a second."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


def torch_precision(settings: ServeSettings) -> str:
    """The precision the torch model loads in: --precision with "auto" resolved from the CPU
    (`albert.hardware`); fp32 under --int8, which quantises the fp32 model's linear layers."""
    return "fp32" if settings.int8 else choose_precision(settings.precision)


def describe_precision(settings: ServeSettings, requested: str) -> str:
    """One line for stderr: the precision that serves, and why."""
    if settings.int8:
        return "albert serve: precision int8 (--int8: int8 linear layers, the rest in fp32)"
    return f"albert serve: {describe_choice(requested, torch_precision(settings))}"


def model_precision(pipe: Any, settings: ServeSettings) -> str:
    """What the served model computes in: int8, bf16 or fp32 (an ONNX model: as exported)."""
    runner = pipe.loaded.runner
    if settings.int8 or type(runner).__name__ == "OnnxModel":
        return "int8" if settings.int8 else runner.precision
    dtype = next(runner.model.parameters()).dtype
    return {"torch.bfloat16": "bf16", "torch.float32": "fp32"}.get(str(dtype), str(dtype))


def load_pipeline(settings: ServeSettings) -> Any:
    """The `albert.pipeline` the server runs, in `torch_precision(settings)` (int8-quantised with
    --int8)."""
    from albert import pipeline

    if settings.runtime not in ("torch", "onnx"):
        raise AlbertError(f"--runtime must be torch or onnx, not {settings.runtime!r}")
    prepare_process(settings.runtime)
    if settings.runtime == "torch":
        import torch

        torch.set_num_threads(settings.threads or torch.get_num_threads())
    pipe = pipeline(
        model_task(settings),
        settings.model,
        settings.tokenizer,
        settings.runtime,
        max_seq_length=settings.max_input_length,
        dtype=torch_precision(settings) if settings.runtime == "torch" else None,
    )
    if settings.int8:
        from albert import quantize

        pipe.loaded.runner.model = quantize(pipe.loaded.runner.model)
    return pipe


# ----------------------------------------------------------------------------------------
# request bodies


def _request_models() -> dict[str, Any]:
    from pydantic import BaseModel, Field

    Inputs = str | list[str] | list[list[str]]
    inputs_help = "a text, a list of texts or (for /predict) a list of [text, text_pair] pairs"

    class Common(BaseModel):
        inputs: Inputs = Field(description=inputs_help)
        truncate: bool = Field(
            True, description="cut long inputs to the max input length; false: 413 instead"
        )

    class Predict(Common):
        raw_scores: bool = Field(False, description="logits instead of probabilities")
        top_k: int | None = Field(None, ge=1, description="labels per text, best first (null: all)")

    class Embed(Common):
        normalize: bool = Field(True, description="unit-length vectors")
        pooling: str = Field("mean", pattern="^(mean|cls)$", description="mean over tokens, or [CLS]")

    class FillMask(Common):
        top_k: int = Field(5, ge=1, description="candidates per [MASK]")

    class Tokenize(BaseModel):
        inputs: Inputs = Field(description=inputs_help)
        add_special_tokens: bool = True

    return {"predict": Predict, "embed": Embed, "token": Common, "fill": FillMask, "tokenize": Tokenize}


def check_inputs(inputs: Any, pairs_allowed: bool) -> tuple[list[Any], bool]:
    """The request's texts as pipeline items, and whether it sent one text (one result back)."""
    single = isinstance(inputs, str)
    items = [inputs] if isinstance(inputs, str) else list(inputs)
    if not items:
        raise serve_error(422, "Validation", "inputs: empty list; send at least one text")
    checked: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, list):
            if not pairs_allowed:
                raise serve_error(
                    422, "Validation", f"inputs[{i}]: expected a text, got a list (pairs only for /predict)"
                )
            if len(item) != 2:
                raise serve_error(
                    422, "Validation", f"inputs[{i}]: a pair is [text, text_pair], got {len(item)} items"
                )
            item = {"text": item[0], "text_pair": item[1]}
        text = item if isinstance(item, str) else item["text"]
        if not text.strip():
            raise serve_error(422, "Validation", f"inputs[{i}]: empty text")
        checked.append(item)
    return checked, single


def too_long(pipe: Any, item: Any, feature: Feature) -> bool:
    """Whether truncation cut `item` to fit the max input length."""
    limit = pipe.options.max_seq_length
    if feature_length(feature) < limit:
        return False
    if "words" in feature:  # token classification: was every word kept?
        return max((w for w in feature["word_ids"] if w is not None), default=-1) + 1 < len(feature["words"])
    text, pair = (item, None) if isinstance(item, str) else (item["text"], item["text_pair"])
    return len(pipe.tokenizer(text, pair, truncation=False)["input_ids"]) > limit


def decoder(
    pipe: Any,
) -> Callable[[list[Any], list[Feature], list[dict[str, np.ndarray]], dict[str, Any]], list[Any]]:
    """`pipe.results` plus the server's own options (raw scores, normalised embeddings)."""
    id2label = pipe.loaded.id2label

    def decode(
        items: list[Any],
        features: list[Feature],
        outputs: list[dict[str, np.ndarray]],
        options: dict[str, Any],
    ) -> list[Any]:
        options = dict(options)
        if options.pop("raw_scores", False):
            top_k = options.get("top_k")
            return [
                [
                    {"label": id2label[int(i)], "score": float(o["logits"][i])}
                    for i in np.argsort(-o["logits"], kind="stable")[:top_k]
                ]
                for o in outputs
            ]
        normalize = options.pop("normalize", False)
        results = pipe.results(items, features, outputs, **options)
        if pipe.task == "text-classification":  # a list of labels per text, even for top_k=1
            results = [r if isinstance(r, list) else [r] for r in results]
        if normalize:
            results = [v / max(float(np.linalg.norm(v)), 1e-12) for v in results]
        return results

    return decode


# ----------------------------------------------------------------------------------------
# the app


def create_app(model: str | Path | Any, settings: ServeSettings | None = None) -> Any:
    """The FastAPI app serving `model` (a model directory or .onnx export, or a ready pipeline).

    Mount it in your own ASGI app or run it with any ASGI server; the batcher starts with the
    app's lifespan (a warm-up batch runs before it answers `/health` with 200)."""
    fastapi, _ = _import_server()
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response

    settings = settings or ServeSettings()
    executor = model_thread()
    if isinstance(model, (str, Path)):
        settings.model = str(model)
        settings.check()
        pipe = executor.submit(load_pipeline, settings).result()
    else:
        pipe = model
    task = pipe.task
    if task not in TASK_ENDPOINTS:
        raise AlbertError(f"the server serves {', '.join(TASK_ENDPOINTS)} pipelines, not {task!r}")
    metrics = Metrics()
    state: dict[str, Any] = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher = Batcher(
            pipe.loaded.runner,
            decoder(pipe),
            pipe.tokenizer.pad_token_id,
            (pipe.sequence_outputs, pipe.model_outputs),
            settings,
            metrics,
            pipe.options.max_seq_length,
            executor,
        )
        runner = asyncio.create_task(batcher.run())
        state["batcher"] = batcher
        warm_up = "hello [MASK] world" if task == "fill-mask" else "hello world"
        items = [warm_up.replace("[MASK]", pipe.tokenizer.mask_token)]
        await batcher.submit(items, pipe.features(items), {}).future
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            runner.cancel()  # nothing is in flight: the server answered every request first

    app = fastapi.FastAPI(
        title="albert serve",
        version=__version__,
        description=f"{task} with an ALBERT model ({settings.model or 'in-process pipeline'})",
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, metrics=metrics, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        error_type = getattr(error, "error_type", None) or {404: "NotFound", 405: "MethodNotAllowed"}.get(
            error.status_code, "HTTPError"
        )
        return error_response(error.status_code, error_type, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            message = f"body: not valid JSON ({first.get('ctx', {}).get('error', first['msg'])})"
        elif location[:1] == ["inputs"]:
            message = "inputs: expected a text, a list of texts or a list of [text, text_pair] pairs"
        else:
            field_name = location[0] if location else "body"
            message = f"{field_name}: {first['msg']}"
        return error_response(422, "Validation", message)

    async def infer(
        request: Request, endpoint: str, inputs: Any, truncate: bool, options: dict[str, Any]
    ) -> Any:
        if endpoint != TASK_ENDPOINTS[task]:
            raise serve_error(
                400,
                "WrongTask",
                f"this model was fine-tuned for {task}; it answers POST {TASK_ENDPOINTS[task]}, not {endpoint}",
            )
        items, single = check_inputs(inputs, pairs_allowed=endpoint == "/predict")
        if len(items) > settings.max_client_batch_size:
            raise serve_error(
                413,
                "PayloadTooLarge",
                f"{len(items)} texts in one request; the limit is {settings.max_client_batch_size} "
                "(--max-client-batch-size): split the request",
            )
        try:
            features = pipe.features(items)
        except AlbertError as e:
            raise serve_error(422, "Validation", f"inputs: {e}") from None
        if not truncate:
            for i, (item, feature) in enumerate(zip(items, features, strict=True)):
                if too_long(pipe, item, feature):
                    raise serve_error(
                        413,
                        "PayloadTooLarge",
                        f"inputs[{i}] is longer than the max input length of {pipe.options.max_seq_length} tokens; "
                        'shorten it or send "truncate": true',
                    )
        batcher: Batcher = state["batcher"]
        job = batcher.submit(items, features, options)
        try:
            results = await answer_or_disconnect(job, request)
        except ClientGone:
            batcher.drop(job)
            return JSONResponse({"error": "client disconnected", "error_type": "ClientClosed"}, 499)
        except ModelFailed as e:
            raise serve_error(500, "Backend", f"the model failed on this request's batch ({e})") from None
        return JSONResponse(to_json(results[0] if single else results))

    models = _request_models()
    Predict, Embed, TokenClassify, FillMask, Tokenize = (
        models[k] for k in ("predict", "embed", "token", "fill", "tokenize")
    )

    @app.post("/predict", summary="text classification: labels with scores, best first")
    async def predict(body: Predict, request: Request) -> Any:
        options = {"top_k": body.top_k, "raw_scores": body.raw_scores}
        return await infer(request, "/predict", body.inputs, body.truncate, options)

    @app.post("/embed", summary="sentence embeddings (mean or [CLS] pooling)")
    async def embed(body: Embed, request: Request) -> Any:
        options = {"pooling": body.pooling, "normalize": body.normalize}
        return await infer(request, "/embed", body.inputs, body.truncate, options)

    @app.post("/token-classify", summary="named entities with character offsets")
    async def token_classify(body: TokenClassify, request: Request) -> Any:
        return await infer(request, "/token-classify", body.inputs, body.truncate, {})

    @app.post("/fill-mask", summary="the likeliest tokens for each [MASK]")
    async def fill_mask(body: FillMask, request: Request) -> Any:
        return await infer(request, "/fill-mask", body.inputs, body.truncate, {"top_k": body.top_k})

    @app.post("/tokenize", summary="token ids and pieces, as the model sees them")
    async def tokenize(body: Tokenize) -> Any:
        items, single = check_inputs(body.inputs, pairs_allowed=False)
        encoded = [pipe.tokenizer(t, add_special_tokens=body.add_special_tokens)["input_ids"] for t in items]
        special = set(pipe.tokenizer.all_special_ids)
        results = [
            [{"id": i, "text": pipe.tokenizer.convert_ids_to_tokens(i), "special": i in special} for i in ids]
            for ids in encoded
        ]
        return results[0] if single else results

    @app.get("/info", summary="the model, its task and the server's settings")
    async def info() -> Any:
        return {
            "model": settings.model or None,
            "task": task,
            "endpoint": TASK_ENDPOINTS[task],
            "labels": [pipe.loaded.id2label[i] for i in sorted(pipe.loaded.id2label)]
            if task.endswith("classification")
            else None,
            "max_input_length": pipe.options.max_seq_length,
            "runtime": "onnx" if type(pipe.loaded.runner).__name__ == "OnnxModel" else "torch",
            "int8": settings.int8,
            "precision": model_precision(pipe, settings),
            "batching": {name: getattr(settings, name) for name in BATCHING_FIELDS},
            "version": __version__,
            "pid": os.getpid(),
            "torch_imported": "torch" in sys.modules,
        }

    @app.get("/health", summary="200 once the model is loaded and a warm-up batch ran")
    async def health() -> Any:
        if not state["ready"]:
            return error_response(503, "Unhealthy", "the model is loading")
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Any:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def answer_or_disconnect(job: Job, request: Any) -> list[Any]:
    """The job's results; ClientGone as soon as the client hangs up (so its texts can be dropped)."""

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({job.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not job.future.done():
        raise ClientGone
    return job.future.result()


def app_from_environment() -> Any:
    """The app of one `--workers N` worker process (settings come in `ALBERT_SERVE_SETTINGS`)."""
    settings = ServeSettings(**json.loads(os.environ[ENV_SETTINGS]))
    return create_app(settings.model, settings)


# ----------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServeSettings()
    parser.add_argument(
        "--model", required=True, help="model directory (or `albert export` folder/.onnx with --runtime onnx)"
    )
    parser.add_argument("--task", choices=list(TASK_ENDPOINTS), help="default: the model's head")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the model's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all interfaces)")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port (printed at start)")
    parser.add_argument(
        "--runtime", choices=["torch", "onnx"], default="torch", help="onnx runs without torch"
    )
    parser.add_argument(
        "--int8", action="store_true", help="serve an int8 copy (albert.quantize) of a torch model"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults.precision,
        help="torch runtime: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
    )
    parser.add_argument(
        "--max-batch-tokens", type=int, default=defaults.max_batch_tokens, help="padded tokens per batch"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=defaults.max_batch_size, help="texts per batch (1: no batching)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="how long an idle model waits for more texts to batch with (0: runs at once)",
    )
    parser.add_argument(
        "--max-padding",
        type=float,
        default=defaults.max_padding,
        help="share of a batch's tokens that may be padding (higher: bigger batches, more wasted work)",
    )
    parser.add_argument(
        "--pad-to-multiple-of",
        type=int,
        default=defaults.pad_to_multiple_of,
        help="pad each text to a multiple of this many tokens, so a few cached kernel shapes serve "
        "every length (1: pad only to the batch's longest)",
    )
    parser.add_argument(
        "--max-queue", type=int, default=defaults.max_queue, help="requests waiting; more get 429"
    )
    parser.add_argument("--max-input-length", type=int, help="tokens per text (default: the model's)")
    parser.add_argument(
        "--max-client-batch-size",
        type=int,
        default=defaults.max_client_batch_size,
        help="texts per request; more get 413",
    )
    parser.add_argument("--threads", type=int, help="CPU threads of the model (default: all cores / workers)")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes, each with its own model and batcher"
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so a taken port is a one-line error, not a traceback."""
    if not 0 <= port <= 65535:
        raise AlbertError(f"--port must be between 0 and 65535, not {port}")
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise AlbertError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    _, uvicorn = _import_server()
    if args.workers < 1:
        raise AlbertError(f"--workers must be at least 1, not {args.workers}")
    if not Path(args.model).exists():
        raise AlbertError(
            f"no model at {args.model}; pass a directory written by `albert finetune`/`albert export`"
        )
    cores = os.cpu_count() or 1
    # every option named like a settings field is that field
    settings = ServeSettings(
        **{f.name: getattr(args, f.name) for f in fields(ServeSettings) if hasattr(args, f.name)}
    )
    if args.workers > 1 and settings.threads is None:
        settings.threads = max(1, cores // args.workers)
    settings.check()
    requested = settings.precision
    prepare_process(settings.runtime)  # before resolving "auto" imports torch to ask about the CPU
    if settings.runtime == "torch":  # resolved once here: every worker loads the same precision
        settings.precision = torch_precision(settings)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    logging.basicConfig(level=logging.INFO, format="albert serve: %(message)s")
    common = dict(log_level="warning", timeout_graceful_shutdown=None, lifespan="on")
    # SIGTERM: uvicorn drains, then re-raises the signal with our handler back in place
    signal.signal(
        signal.SIGTERM, lambda *_: log.info("stopped (SIGTERM): every accepted request was answered")
    )
    if args.workers > 1:
        from uvicorn.supervisors import Multiprocess

        os.environ[ENV_SETTINGS] = json.dumps(asdict(settings))
        config = uvicorn.Config(
            "albert.serve:app_from_environment", factory=True, workers=args.workers, **common
        )
        if settings.runtime == "torch":
            print(describe_precision(settings, requested), file=sys.stderr, flush=True)
        print(f"albert serve: {args.workers} workers on http://{host}:{port}", flush=True)
        Multiprocess(config, sockets=[sock]).run()
        return 0
    app = create_app(args.model, settings)
    if settings.runtime == "torch":
        print(describe_precision(settings, requested), file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, **common))
    print(f"albert serve: {app.description} on http://{host}:{port}", flush=True)
    server.run(sockets=[sock])
    return 0 if server.started else 1
