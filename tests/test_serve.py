"""`albert serve`: the real server in a subprocess on a loopback port, spoken to over HTTP.

Each endpoint against the in-process pipeline, 200 concurrent requests sharing batches, every bad
input and overload case (with `/health` answering 200 after each), SIGTERM under load, the ONNX
runtime without torch, and the CLI's one-line errors. Servers start in parallel once per module
and every load loop is bounded in count and time."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: E402, F401
    classifier_dir,
    one_thread,
    pretraining_dir,
    save_tiny,
    tiny_config,
    tokenizer,
    tokenizer_dir,
)

import albert  # noqa: E402
from albert.cli import main as cli_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition.",
    "Hello!",
    "In the beginning God created the heaven and the earth.",
    "She was the youngest of the two daughters of a most affectionate, indulgent father; and had, in "
    "consequence of her sister's marriage, been mistress of his house from a very early period.",
    "a wonderful, happy film",
    "我爱北京天安门。",
]
WORDS = "good bad film story the very quite awful happy dull was it and a this".split()
LONG_TEXT = " ".join(WORDS * 20)  # far over the 64-token limit the servers below run with


def mixed_texts(count: int) -> list[str]:
    """Texts of 1 to ~40 words, deterministic."""
    return [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(1 + (i * 13) % 40)) for i in range(count)]


# ----------------------------------------------------------------------------------------
# servers


class Server:
    """`albert serve ...` in a subprocess; `url` once it printed its address and /health is 200."""

    def __init__(self, model: Path, *options: str) -> None:
        argv = [
            sys.executable,
            "-m",
            "albert",
            "serve",
            "--model",
            str(model),
            "--port",
            "0",
            "--threads",
            "1",
            "--precision",  # what the in-process pipelines compute in; a later --precision wins
            "fp32",
        ]
        env = {**os.environ, "TQDM_DISABLE": "1"}
        self.process = subprocess.Popen(
            [*argv, *options], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.url = ""

    def wait_ready(self, timeout: float = 90.0) -> Server:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"http://[\d.]+:\d+", line)
        assert found, (
            f"no address printed: {line!r} {self.process.stderr.read() if self.process.poll() else ''}"
        )  # type: ignore[union-attr]
        self.url = found.group()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server at {self.url} never became healthy")

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return httpx.post(self.url + path, json=body, timeout=30, **kwargs)

    def healthy(self) -> bool:
        return httpx.get(self.url + "/health", timeout=10).status_code == 200

    def metric(self, name: str) -> float:
        """The sum of a Prometheus series' samples whose name and labels start with `name`."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            for stream in (self.process.stdout, self.process.stderr):
                stream.close()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def models(
    classifier_dir: Path, pretraining_dir: Path, tiny_config: Path, tokenizer_dir: Path, tmp_path_factory
) -> dict[str, Path]:
    from albert.export import export_model_dir

    root = tmp_path_factory.mktemp("serve-models")
    ner = save_tiny(
        "AlbertForTokenClassification",
        tiny_config,
        tokenizer_dir,
        root / "ner",
        id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
    )
    embedder = save_tiny("AlbertModel", tiny_config, tokenizer_dir, root / "embed")
    onnx_dir = export_model_dir(classifier_dir, root / "onnx")
    return {
        "classify": classifier_dir,
        "ner": ner,
        "fill": pretraining_dir,
        "embed": embedder,
        "onnx": Path(onnx_dir),
    }


@pytest.fixture(scope="module")
def servers(models: dict[str, Path]) -> Iterator[dict[str, Server]]:
    """Every server of this module, started together (start-up is mostly imports)."""
    limits = ("--max-input-length", "64")
    started = {
        "classify": Server(models["classify"], *limits, "--max-wait-ms", "5"),
        # large length buckets: texts padded far past their length still answer like the pipeline
        "ner": Server(models["ner"], *limits, "--pad-to-multiple-of", "24"),
        "fill": Server(models["fill"], *limits),
        "embed": Server(models["embed"], *limits, "--pad-to-multiple-of", "24"),
        "onnx": Server(models["onnx"], "--runtime", "onnx"),
        # a text waits up to 2 s for company, at most 3 requests may wait, 4 texts per request
        "strict": Server(
            models["classify"],
            *limits,
            "--max-wait-ms",
            "2000",
            "--max-queue",
            "3",
            "--max-client-batch-size",
            "4",
        ),
    }
    try:
        yield {name: server.wait_ready() for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="module")
def classify(models: dict[str, Path]) -> Any:
    return albert.pipeline("text-classification", model=models["classify"], max_seq_length=64)


def assert_same_labels(served: list[dict], expected: list[dict]) -> None:
    assert [r["label"] for r in served] == [r["label"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in served], [r["score"] for r in expected], atol=1e-5)


# ----------------------------------------------------------------------------------------
# each endpoint against the in-process pipeline


def test_predict_equals_the_pipeline(servers: dict[str, Server], classify: Any) -> None:
    server = servers["classify"]
    expected = classify(TEXTS, top_k=None)
    served = server.post("/predict", {"inputs": TEXTS})
    assert served.status_code == 200, served.text
    for ours, theirs in zip(served.json(), expected, strict=True):
        assert_same_labels(ours, theirs)
    one = server.post("/predict", {"inputs": TEXTS[0], "top_k": 1}).json()
    assert len(one) == 1 and one[0]["label"] == expected[0][0]["label"]
    pairs = server.post("/predict", {"inputs": [["a fine film", "I liked it"], ["dull", "boring"]]}).json()
    expected_pairs = classify(
        [{"text": "a fine film", "text_pair": "I liked it"}, {"text": "dull", "text_pair": "boring"}],
        top_k=None,
    )
    for ours, theirs in zip(pairs, expected_pairs, strict=True):
        assert_same_labels(ours, theirs)
    raw = server.post("/predict", {"inputs": TEXTS[1], "raw_scores": True}).json()
    logits = np.array([r["score"] for r in raw])
    probabilities = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probabilities, [r["score"] for r in expected[1]], atol=1e-5)
    tokens = server.post("/tokenize", {"inputs": "Hello world"}).json()
    assert [t["id"] for t in tokens] == classify.tokenizer("Hello world")["input_ids"]
    assert tokens[0]["special"] and tokens[0]["text"] == "[CLS]" and not tokens[1]["special"]
    info = httpx.get(server.url + "/info").json()
    assert info["task"] == "text-classification" and info["labels"] == ["neg", "pos", "mixed"]
    assert info["max_input_length"] == 64 and info["batching"]["max_wait_ms"] == 5.0
    assert info["runtime"] == "torch" and info["torch_imported"] is True and info["precision"] == "fp32"
    assert "/predict" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert "swagger" in httpx.get(server.url + "/docs").text.lower()
    wrong = server.post("/embed", {"inputs": "hello"})
    assert wrong.status_code == 400 and wrong.json() == {
        "error": "this model was fine-tuned for text-classification; it answers POST /predict, not /embed",
        "error_type": "WrongTask",
    }


def test_token_classify_fill_mask_and_embed_equal_the_pipeline(
    servers: dict[str, Server], models: dict[str, Path]
) -> None:
    ner = albert.pipeline("token-classification", model=models["ner"], max_seq_length=64)
    served = servers["ner"].post("/token-classify", {"inputs": TEXTS}).json()
    expected = ner(TEXTS)
    assert len(served) == len(TEXTS) and any(served)
    for ours, theirs in zip(served, expected, strict=True):
        assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in ours] == [
            (e["entity_group"], e["start"], e["end"], e["word"]) for e in theirs
        ]
        np.testing.assert_allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-5)

    fill = albert.pipeline("fill-mask", model=models["fill"], max_seq_length=64)
    masked = ["Emma was [MASK] happy.", "In the [MASK] God [MASK] the heaven."]
    served = servers["fill"].post("/fill-mask", {"inputs": masked, "top_k": 3}).json()
    expected = fill(masked, top_k=3)
    assert [c["token"] for c in served[0]] == [c["token"] for c in expected[0]]
    assert [[c["token_str"] for c in mask] for mask in served[1]] == [
        [c["token_str"] for c in mask] for mask in expected[1]
    ]
    np.testing.assert_allclose([c["score"] for c in served[0]], [c["score"] for c in expected[0]], atol=1e-5)
    no_mask = servers["fill"].post("/fill-mask", {"inputs": "no mask here"})
    assert no_mask.status_code == 422 and "[MASK]" in no_mask.json()["error"]

    embed = albert.pipeline("feature-extraction", model=models["embed"], max_seq_length=64)
    for pooling in ("mean", "cls"):
        body = {"inputs": TEXTS, "pooling": pooling, "normalize": False}
        vectors = np.array(servers["embed"].post("/embed", body).json())
        np.testing.assert_allclose(vectors, np.stack(embed(TEXTS, pooling=pooling)), atol=1e-5)
    unit = np.array(servers["embed"].post("/embed", {"inputs": TEXTS[0]}).json())
    assert unit.ndim == 1 and np.linalg.norm(unit) == pytest.approx(1.0, abs=1e-5)


def test_onnx_runtime_serves_without_torch(servers: dict[str, Server], models: dict[str, Path]) -> None:
    server = servers["onnx"]
    info = httpx.get(server.url + "/info").json()
    assert info["runtime"] == "onnx" and info["torch_imported"] is False and info["precision"] == "fp32"
    expected = albert.pipeline("text-classification", model=models["onnx"], runtime="onnx")(TEXTS, top_k=None)
    for ours, theirs in zip(server.post("/predict", {"inputs": TEXTS}).json(), expected, strict=True):
        assert_same_labels(ours, theirs)
    assert httpx.get(server.url + "/info").json()["torch_imported"] is False


# ----------------------------------------------------------------------------------------
# many requests sharing batches


async def post_all(url: str, bodies: list[dict[str, Any]], timeout: float = 60.0) -> list[Any]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        return await asyncio.gather(*(client.post("/predict", json=body) for body in bodies))


def test_200_concurrent_requests_each_get_their_own_answer(servers: dict[str, Server], classify: Any) -> None:
    server = servers["classify"]
    texts = mixed_texts(260)
    # most requests send one text, every fifth sends three; all are in flight at once
    bodies = [{"inputs": texts[i]} if i % 5 else {"inputs": texts[i : i + 3]} for i in range(200)]
    requests_before, batches_before = (
        server.metric('albert_requests_total{endpoint="/predict",status="200"}'),
        (server.metric("albert_batch_size_count")),
    )
    texts_before = server.metric("albert_texts_total")
    responses = asyncio.run(post_all(server.url, bodies))
    expected = {t: r for t, r in zip(texts, classify(texts, top_k=None), strict=True)}
    sent = 0
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, response.text
        if isinstance(body["inputs"], str):
            assert_same_labels(response.json(), expected[body["inputs"]])
            sent += 1
        else:
            for text, result in zip(body["inputs"], response.json(), strict=True):
                assert_same_labels(result, expected[text])
                sent += 1
    assert server.metric('albert_requests_total{endpoint="/predict",status="200"}') - requests_before == 200
    assert server.metric("albert_texts_total") - texts_before == sent
    batches = server.metric("albert_batch_size_count") - batches_before
    assert batches < sent / 2, f"{sent} texts took {batches} batches: the requests were not batched"
    assert server.metric("albert_queue_depth") == 0


# ----------------------------------------------------------------------------------------
# bad input and overload


BAD_REQUESTS = [
    ("/predict", b'{"inputs": ', 422, "body: not valid JSON"),
    ("/predict", {"inputs": 5}, 422, "inputs: expected a text"),
    ("/predict", {"text": "hi"}, 422, "inputs: expected a text"),
    ("/predict", {"inputs": []}, 422, "inputs: empty list"),
    ("/predict", {"inputs": ["fine", "  "]}, 422, "inputs[1]: empty text"),
    ("/predict", {"inputs": [["a", "b", "c"]]}, 422, "inputs[0]: a pair is [text, text_pair]"),
    ("/predict", {"inputs": "hi", "top_k": "three"}, 422, "top_k: "),
    ("/predict", {"inputs": "hi", "top_k": 0}, 422, "top_k: "),
    ("/predict", {"inputs": ["a"] * 5}, 413, "5 texts in one request; the limit is 4"),
    ("/predict", {"inputs": LONG_TEXT, "truncate": False}, 413, "longer than the max input length of 64"),
    ("/predict", {"inputs": "x" * (3 * 1024 * 1024)}, 413, "over the limit of 2097152"),
    ("/embed", {"inputs": "hi"}, 400, "fine-tuned for text-classification"),
    ("/nowhere", {"inputs": "hi"}, 404, "Not Found"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS, ids=[str(i) for i in range(13)])
def test_bad_input_gets_a_json_error_and_the_server_stays_healthy(
    servers: dict[str, Server], path: str, body: Any, status: int, message: str
) -> None:
    server = servers["strict"]
    if isinstance(body, bytes):
        response = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    else:
        response = server.post(path, body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "error_type"} and message in response.json()["error"]
    assert server.healthy()


def test_long_input_is_truncated_by_default(servers: dict[str, Server], classify: Any) -> None:
    response = servers["strict"].post("/predict", {"inputs": LONG_TEXT})
    assert response.status_code == 200
    assert_same_labels(response.json(), classify(LONG_TEXT, top_k=None))


def test_full_queue_answers_429_with_retry_after(servers: dict[str, Server]) -> None:
    server = servers["strict"]

    async def overload() -> list[Any]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            waiting = [
                asyncio.create_task(client.post("/predict", json={"inputs": f"text {i}"})) for i in range(3)
            ]
            deadline = time.monotonic() + 10
            while server.metric("albert_queue_depth") < 3:  # the three wait 2 s for company
                assert time.monotonic() < deadline, "the three requests never queued together"
                await asyncio.sleep(0.01)
            refused = await client.post("/predict", json={"inputs": "one too many"})
            return [refused, *await asyncio.gather(*waiting)]

    refused, *answered = asyncio.run(overload())
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["error_type"] == "Overloaded" and "queue is full" in refused.json()["error"]
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert server.healthy()


def test_disconnected_client_has_its_texts_dropped(servers: dict[str, Server]) -> None:
    server = servers["strict"]
    dropped_before = server.metric("albert_dropped_texts_total")
    host, port = server.url.removeprefix("http://").split(":")
    body = json.dumps({"inputs": ["first text", "second text"]}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 10
        while server.metric("albert_queue_depth") < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    deadline = time.monotonic() + 10  # the batch would close at 2 s; the texts must go first
    while server.metric("albert_dropped_texts_total") - dropped_before < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.metric("albert_dropped_texts_total") - dropped_before == 2
    assert server.metric("albert_queue_depth") == 0 and server.healthy()


@contextmanager
def served_in_process(app: Any) -> Iterator[tuple[str, int | None]]:
    """`app` on uvicorn in a thread of this process, on a free loopback port: (its URL, the event
    loop's thread id); stopped (drained) on exit."""
    import uvicorn

    from albert.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", thread.ident
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_model_exception_answers_500_and_the_server_keeps_serving(classifier_dir: Path) -> None:
    """A model that fails on long batches, served in-process by uvicorn on a loopback port."""
    from albert.serve import ServeSettings, create_app

    pipe = albert.pipeline("text-classification", model=classifier_dir, max_seq_length=64)
    model = pipe.loaded.runner

    def failing_on_long_batches(**batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch["input_ids"].shape[1] > 30:
            raise RuntimeError("out of memory (simulated)")
        return model(**batch)

    pipe.loaded.runner = failing_on_long_batches
    with served_in_process(create_app(pipe, ServeSettings())) as (url, _):
        failed = httpx.post(url + "/predict", json={"inputs": LONG_TEXT}, timeout=30)
        assert failed.status_code == 500 and failed.json()["error_type"] == "Backend"
        assert "out of memory (simulated)" in failed.json()["error"]
        fine = httpx.post(url + "/predict", json={"inputs": "a short text"}, timeout=30)
        assert fine.status_code == 200 and fine.json()[0]["label"] in ("neg", "pos", "mixed")
        assert httpx.get(url + "/health").status_code == 200


def test_the_model_loads_and_runs_on_one_thread(
    classifier_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading, the warm-up and every batch run on the model thread, never on the event loop's:
    a thread that runs torch operators gets an OpenMP pool of its own, and a second pool makes
    OpenMP treat a 2-core machine as oversubscribed (its threads then never spin)."""
    import albert.serve as serve

    threads: dict[str, set[int]] = {"load": set(), "run": set()}
    real_load = serve.load_pipeline

    def recording_load(settings: serve.ServeSettings) -> object:
        threads["load"].add(threading.get_ident())
        pipe = real_load(settings)
        model = pipe.loaded.runner

        def recording_runner(**batch: np.ndarray) -> dict[str, np.ndarray]:
            threads["run"].add(threading.get_ident())
            return model(**batch)

        pipe.loaded.runner = recording_runner
        return pipe

    monkeypatch.setattr(serve, "load_pipeline", recording_load)
    with served_in_process(serve.create_app(classifier_dir, serve.ServeSettings())) as (url, loop_thread):
        for text in ("a short text", LONG_TEXT):
            assert httpx.post(url + "/predict", json={"inputs": text}, timeout=30).status_code == 200
    assert len(threads["load"]) == 1 and threads["run"] == threads["load"]
    assert threads["load"].isdisjoint({threading.get_ident(), loop_thread})


def test_bf16_server_answers_like_the_bf16_pipeline(
    models: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--precision auto` on a CPU with native bf16 (forced, so this runs anywhere) loads the model
    in bf16, says so in one stderr line and in /info, and answers what the in-process bf16 pipeline
    answers (the same bf16 weights and kernels, batched differently)."""
    monkeypatch.setenv("ALBERT_NATIVE_BF16", "1")
    server = Server(models["classify"], "--max-input-length", "64", "--precision", "auto").wait_ready()
    try:
        served = server.post("/predict", {"inputs": TEXTS})
        info = httpx.get(server.url + "/info").json()
    finally:
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
        err = server.process.stderr.read()  # type: ignore[union-attr]
        server.stop()
    assert served.status_code == 200, served.text
    assert info["precision"] == "bf16"
    said = [line for line in err.splitlines() if "precision" in line]
    assert len(said) == 1 and said[0].startswith(
        "albert serve: precision bf16 (auto: this CPU has native bf16"
    ), err
    bf16 = albert.pipeline("text-classification", model=models["classify"], max_seq_length=64, dtype="bf16")
    for ours, theirs in zip(served.json(), bf16(TEXTS, top_k=None), strict=True):
        assert [r["label"] for r in ours] == [r["label"] for r in theirs]
        np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in theirs], atol=1e-3)


# ----------------------------------------------------------------------------------------
# shutdown and the command line


def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(
    models: dict[str, Path], classify: Any
) -> None:
    server = Server(models["classify"], "--max-input-length", "64", "--max-wait-ms", "2000").wait_ready()
    texts = mixed_texts(40)

    async def load_then_terminate() -> list[Any]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            pending = [asyncio.create_task(client.post("/predict", json={"inputs": t})) for t in texts]
            deadline = time.monotonic() + 10
            while server.metric("albert_queue_depth") < len(texts) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)  # all 40 are queued, none answered yet
            return await asyncio.gather(*pending)

    responses = asyncio.run(load_then_terminate())
    assert [r.status_code for r in responses] == [200] * len(texts)
    for text, response in zip(texts, responses, strict=True):
        assert_same_labels(response.json(), classify(text, top_k=None))
    assert server.process.wait(timeout=60) == 0  # (a second SIGTERM during exit would be fatal)
    server.stop()


def test_cli_errors_are_one_line_with_exit_status_2(
    classifier_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = str(taken.getsockname()[1])
    cases = [
        (["--model", str(tmp_path / "missing")], "no model at"),
        (["--model", str(classifier_dir), "--port", port], f"cannot listen on 127.0.0.1:{port}"),
        (["--model", str(classifier_dir), "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
        (
            ["--model", str(classifier_dir), "--pad-to-multiple-of", "0"],
            "--pad-to-multiple-of must be at least 1",
        ),
        (["--model", str(classifier_dir), "--max-wait-ms", "nan"], "--max-wait-ms must be a number >= 0"),
        (["--model", str(classifier_dir), "--port", "70000"], "--port must be between 0 and 65535"),
        (["--model", str(classifier_dir), "--runtime", "onnx", "--int8"], "--int8 quantises a PyTorch model"),
    ]
    try:
        for argv, message in cases:
            assert cli_main(["serve", *argv]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and message in err, err
    finally:
        taken.close()


def test_importing_albert_does_not_import_the_server() -> None:
    code = (
        "import sys, albert, albert.cli; assert not {'fastapi', 'uvicorn', 'albert.serve'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_batches_group_texts_of_similar_length_within_the_limits() -> None:
    from albert.serve import Batcher, Job, Metrics, ServeSettings, Waiting

    def batcher(**limits: Any) -> Batcher:
        return Batcher(lambda **batch: {}, lambda *args: [], 0, ((), ()), ServeSettings(**limits), Metrics())

    def queue(b: Batcher, lengths: list[int]) -> None:
        job = Job([], [], {}, None)  # type: ignore[arg-type]
        b.waiting = [Waiting(job, i, length, float(i)) for i, length in enumerate(lengths)]

    loose = batcher(max_batch_size=8, max_padding=0.2)
    queue(loose, [10, 50, 11, 12, 49, 9, 30])
    chosen, full = loose.select()
    assert sorted(w.length for w in chosen) == [9, 10, 11, 12] and full  # 30 would make it mostly padding
    queue(loose, [10, 11, 12])
    assert [w.length for w in loose.select()[0]] == [10, 11, 12] and not loose.select()[1]  # may wait
    small = batcher(max_batch_size=2)
    queue(small, [20, 20, 20])
    assert len(small.select()[0]) == 2 and small.select()[1]
    budget = batcher(max_batch_tokens=100, max_padding=0.9)
    queue(budget, [30, 30, 30, 30])
    assert len(budget.select()[0]) == 3 and budget.select()[1]  # 4 x 30 > 100 padded tokens
    queue(budget, [400])
    assert len(budget.select()[0]) == 1  # a text over the budget still runs, alone


def leaves(result: Any) -> list[Any]:
    """The strings and numbers of a nested pipeline result, in order."""
    if isinstance(result, dict):
        return [leaf for key in sorted(result) for leaf in [key, *leaves(result[key])]]
    if isinstance(result, (list, tuple, np.ndarray)):
        return [leaf for item in result for leaf in leaves(item)]
    return [result]


def test_padding_to_a_length_bucket_changes_no_answer(models: dict[str, Path]) -> None:
    """Texts padded far past their own length, as the server's length buckets pad them, get the
    same answers as unpadded ones from every endpoint's pipeline: pad positions are masked, and
    per-token outputs are cut back to each text's own tokens before token classification
    (character offsets) or mean pooling reads them."""
    from albert.tasks.common import run_batch

    masked = ["Emma was [MASK] happy.", "In the [MASK] God [MASK] the heaven."]
    cases = [
        ("text-classification", "classify", TEXTS, {"top_k": None}),
        ("token-classification", "ner", TEXTS, {}),
        ("fill-mask", "fill", masked, {"top_k": 3}),
        ("feature-extraction", "embed", TEXTS, {"pooling": "mean"}),
    ]
    for task, name, items, options in cases:
        pipe = albert.pipeline(task, model=models[name], max_seq_length=64)
        features = pipe.features(items)
        outputs = [  # one text at a time, unpadded: what `albert predict` computes
            run_batch(pipe.loaded.runner, [f], pipe.tokenizer.pad_token_id, pipe.sequence_outputs)[0]
            for f in features
        ]
        padded = run_batch(
            pipe.loaded.runner, features, pipe.tokenizer.pad_token_id, pipe.sequence_outputs, pad_to=64
        )
        expected, served = (leaves(pipe.results(items, features, o, **options)) for o in (outputs, padded))
        assert [x for x in served if isinstance(x, str)] == [x for x in expected if isinstance(x, str)], task
        numbers = [(a, b) for a, b in zip(served, expected, strict=True) if not isinstance(a, str)]
        np.testing.assert_allclose([a for a, _ in numbers], [b for _, b in numbers], atol=1e-5, err_msg=task)


def test_texts_wait_in_length_buckets_and_batches_pad_to_the_longest_bucket() -> None:
    from albert.serve import Batcher, Metrics, ServeSettings, length_bucket

    assert [length_bucket(n, 8, 64) for n in (1, 8, 9, 57, 64)] == [8, 8, 16, 64, 64]
    assert length_bucket(62, 16, 63) == 63  # no bucket past the max input length
    assert length_bucket(13, 1, 64) == 13  # 1: no rounding
    shapes: list[tuple[int, ...]] = []

    def runner(**batch: np.ndarray) -> dict[str, np.ndarray]:
        shapes.append(batch["input_ids"].shape)
        return {"logits": np.zeros((len(batch["input_ids"]), 2))}

    async def queue_and_run() -> list[int]:
        settings = ServeSettings(pad_to_multiple_of=16)
        batcher = Batcher(runner, lambda *args: [None], 0, ((), ("logits",)), settings, Metrics(), 40)
        features = [{"input_ids": [5] * n, "token_type_ids": [0] * n} for n in (3, 17, 20, 39)]
        batcher.submit([None] * 4, features, {})
        lengths = [w.length for w in batcher.waiting]
        batcher.compute(batcher.select()[0])
        return lengths

    assert asyncio.run(queue_and_run()) == [16, 32, 32, 40]
    assert shapes == [(1, 16)]  # the oldest text alone: a bucket of 32 would make the batch half padding


def test_an_idle_model_runs_a_lone_text_at_once_unless_told_to_wait() -> None:
    """Continuous batching: by default a text that finds the model free is not held back for
    company (under load, texts queued while a batch runs form the next one); `--max-wait-ms`
    makes an idle model wait that long after the oldest text arrived."""
    from albert.serve import Batcher, Job, Metrics, ServeSettings, Waiting

    def waiting_for(settings: ServeSettings) -> float:
        batcher = Batcher(lambda **batch: {}, lambda *args: [], 0, ((), ()), settings, Metrics())
        batcher.waiting = [Waiting(Job([], [], {}, None), 0, 12, time.monotonic())]  # type: ignore[arg-type]
        batch, full = batcher.select()
        assert len(batch) == 1 and not full  # the batch could still grow...
        return batcher.company_wait()

    assert ServeSettings().max_wait_ms == 0
    assert waiting_for(ServeSettings()) <= 0  # ...but it runs now
    assert waiting_for(ServeSettings(max_wait_ms=2000)) > 1.0


def test_the_server_keeps_idle_threads_and_shape_caches_in_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before torch loads, the server bounds how long the model's idle threads spin (the event
    loop shares their cores), turns off the tokenizer's thread pool, and caps the per-shape
    caches; a value the user set in the environment wins."""
    from albert.serve import bound_allocator_memory, share_cores_politely

    for name in (
        "OMP_WAIT_POLICY",
        "GOMP_SPINCOUNT",
        "TOKENIZERS_PARALLELISM",
        "ONEDNN_PRIMITIVE_CACHE_CAPACITY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "64")  # the user's choice
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")  # (leaves this test process's malloc settings alone)
    share_cores_politely()
    bound_allocator_memory()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["GOMP_SPINCOUNT"] == "30000"
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"
    assert os.environ["LRU_CACHE_CAPACITY"] == "64"
    # a user who asks for sleeping threads gets them: no spin is added to their policy
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT")
    share_cores_politely()
    assert "GOMP_SPINCOUNT" not in os.environ


ALLOCATION_CHURN = """
import resource
from albert.serve import bound_allocator_memory
bound_allocator_memory()
import torch

def churn(times):
    for _ in range(times):
        activation = torch.empty(1 << 20)  # 4 MiB, as an albert-base activation of a small batch
        activation.fill_(1.0)
        del activation

churn(5)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(50)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def test_the_allocator_settings_reuse_freed_activations() -> None:
    """A freed activation's memory serves the next one: the server's malloc settings leave glibc's
    mmap threshold free to grow. (A trim threshold froze it at 128 KiB: every activation was a
    fresh mmap, 1,024 page faults per 4 MiB tensor, and batches paid for it in CPU.)"""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator")
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", ALLOCATION_CHURN], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) < 256  # page faults per 4 MiB tensor (1,024 if each were new)


THREAD_SETTINGS_AT_TORCH_IMPORT = """
import builtins, json, os, sys

real_import = builtins.__import__

def stop_at_torch(name, *args, **kwargs):
    if name.split(".")[0] == "torch":  # the first import of torch: report what OpenMP would read
        print(json.dumps({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}))
        raise SystemExit(0)
    return real_import(name, *args, **kwargs)

builtins.__import__ = stop_at_torch
from albert.cli import main

main(["serve", "--model", sys.argv[1], "--port", "0"])
"""


def test_the_thread_settings_are_in_place_before_torch_loads(classifier_dir: Path) -> None:
    """`albert serve` with its default `--precision auto` asks torch about the CPU before loading
    the model; OpenMP reads its wait settings once, when torch loads it, so they must be set
    before that first import (they were not: the server ran with OpenMP's defaults)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [sys.executable, "-c", THREAD_SETTINGS_AT_TORCH_IMPORT, str(classifier_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "GOMP_SPINCOUNT": "30000",
    }


def test_heap_trimmer_hands_free_heap_memory_back() -> None:
    """The batcher's `malloc_trim`: free holes between live heap blocks leave resident memory."""
    from albert.serve import heap_trimmer

    trim = heap_trimmer()
    if trim is None:
        pytest.skip("not glibc: its allocator has its own policy")

    def resident_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    blocks = [bytearray(100_000) for _ in range(800)]  # 80 MB of heap blocks (under the mmap threshold)
    kept = blocks[19::20]  # one live block in twenty, the last one among them: the heap's top stays
    del blocks
    before = resident_mb()
    trim()
    assert before - resident_mb() > 40, "the free holes between live blocks stayed resident"
    assert all(len(block) == 100_000 for block in kept)


def test_the_server_trims_its_heap_while_serving_and_reports_its_memory(servers: dict[str, Server]) -> None:
    server = servers["classify"]
    assert server.metric("process_resident_memory_bytes") > 10 * 2**20
    trims = server.metric("albert_heap_trims_total")
    deadline = time.monotonic() + 10
    while server.metric("albert_heap_trims_total") == trims and time.monotonic() < deadline:
        assert server.post("/predict", {"inputs": "a wonderful, happy film"}).status_code == 200
        time.sleep(0.1)
    assert server.metric("albert_heap_trims_total") > trims, "no trim within 10 s of requests"
