"""ONNX export: parity with PyTorch for every head, weights stored once, int8, the torch-free
runtime in a fresh process, and the errors a user can cause."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_export_fixtures import (  # noqa: F401
    parameter_bytes,
    tiny_config,
    tokenizer_dir,
    trained_like,
)

from albert.cli import main as cli_main
from albert.errors import AlbertError
from albert.export import TASKS, export_model_dir, export_onnx
from albert.modeling import MODEL_CLASSES, AlbertModel, AlbertPreTrainedModel
from albert.onnx_runtime import OnnxModel
from albert.tokenization import AlbertTokenizer

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "a short one",
    "a much longer sentence, with many more words in it than the other has",
    "mid size text",
]
PAIRS = ["b", "c d e", "the second segment of a pair"]


def saved_model(
    folder: Path, cls: type[AlbertPreTrainedModel], tokenizer: Path | None, **overrides: object
) -> AlbertPreTrainedModel:
    torch.manual_seed(0)
    model = trained_like(cls(tiny_config(**overrides)))
    model.save_pretrained(folder)
    if tokenizer is not None:
        AlbertTokenizer.from_pretrained(tokenizer).save_pretrained(folder)
    return model


def torch_outputs(model: AlbertPreTrainedModel, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
    return {k: out[k].numpy() for k in out.keys()}


def initializer_bytes(path: Path) -> int:
    return sum(numpy_helper.to_array(init).nbytes for init in onnx.load(str(path)).graph.initializer)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(((a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)).min())


# ----------------------------------------------------------------------------------------
# parity


@pytest.mark.parametrize("task", list(TASKS))
def test_every_head_matches_pytorch_with_padding_and_pairs(
    task: str, tmp_path: Path, tokenizer_dir: Path
) -> None:
    cls = MODEL_CLASSES[TASKS[task]]
    model = saved_model(
        tmp_path / "model", cls, tokenizer_dir, num_labels=3 if task != "question-answering" else 2
    )
    path = export_model_dir(tmp_path / "model", tmp_path / "onnx")  # task "auto": from architectures
    runtime = OnnxModel(path)
    assert runtime.architecture == cls.__name__
    for count in (3, 1):  # two batch sizes and sequence lengths: the axes are dynamic
        batch = runtime.encode(TEXTS[:count], PAIRS[:count])
        assert batch["attention_mask"].min() == 0 or count == 1
        assert batch["token_type_ids"].max() == 1
        if task == "multiple-choice":  # (batch, choices, seq): 2, then 5 candidates
            choices = 4 // count + 1
            batch = runtime.encode(TEXTS[:count] * choices, PAIRS[:count] * choices)
            batch = {k: v.reshape(choices, count, -1).transpose(1, 0, 2).copy() for k, v in batch.items()}
        expected = torch_outputs(model, batch)
        actual = runtime(**batch)
        declared = {o.name: o.shape for o in runtime.session.get_outputs()}
        for name, value in actual.items():  # fixed axes are the true sizes, the rest are named
            assert len(declared[name]) == value.ndim
            assert all(isinstance(d, str) or d == n for d, n in zip(declared[name], value.shape, strict=True))
        assert set(actual) == {k for k in expected if k not in ("loss", "mlm_loss", "sop_loss")}
        for name, value in actual.items():
            np.testing.assert_allclose(value, expected[name], atol=1e-4, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize(
    "overrides",
    [
        {"share": "all"},
        {"share": "attention"},
        {"share": "ffn"},
        {"share": "none"},
        {"num_hidden_layers": 4, "num_hidden_groups": 2, "inner_group_num": 2},
    ],
    ids=["all", "attention", "ffn", "none", "groups"],
)
def test_each_weight_stored_once_for_every_sharing_mode(overrides: dict, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = trained_like(MODEL_CLASSES["AlbertForMaskedLM"](tiny_config(**overrides)))
    path = export_onnx(model, tmp_path / "model.onnx")
    # trained-like weights are all distinct, so stored bytes == parameter bytes means each once
    # (the tied decoder included: it is a Transpose node of the embedding table)
    assert initializer_bytes(path) == parameter_bytes(model)
    assert path.stat().st_size < parameter_bytes(model) + 200_000  # graph overhead only
    batch = {"input_ids": np.array([[2, 50, 60, 3, 0]]), "attention_mask": np.array([[1, 1, 1, 1, 0]])}
    np.testing.assert_allclose(_run(path, batch)["logits"], torch_outputs(model, batch)["logits"], atol=1e-4)


def _run(path: Path, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Plain onnxruntime on a bare .onnx file (no config.json beside it)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"token_type_ids": np.zeros_like(batch["input_ids"]), **batch}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))


@pytest.mark.slow
def test_albert_base_file_sizes(tmp_path: Path) -> None:
    """albert-base-v2 geometry (30000 vocab, 12 layers sharing one block): 47 MB of fp32
    parameters. The fp32 file is that size, not 12x; int8 is about a quarter."""
    torch.manual_seed(0)
    model = AlbertModel.from_preset("albert-base-v2").eval()
    fp32 = export_onnx(model, tmp_path / "model.onnx")
    int8 = export_onnx(model, tmp_path / "model_int8.onnx", int8=True)
    params = parameter_bytes(model)
    assert 0.99 < fp32.stat().st_size / params < 1.02
    assert 0.24 < int8.stat().st_size / params < 0.30
    batch = {
        "input_ids": np.random.default_rng(0).integers(5, 30000, (2, 20)),
        "attention_mask": np.ones((2, 20)),
    }
    batch["attention_mask"][1, 12:] = 0
    batch = {k: v.astype(np.int64) for k, v in batch.items()}
    expected = torch_outputs(model, batch)["last_hidden_state"]
    np.testing.assert_allclose(_run(fp32, batch)["last_hidden_state"], expected, atol=1e-4)
    assert min_cosine(_run(int8, batch)["last_hidden_state"], expected) >= 0.99


def test_fused_qkv_is_concatenated_once(tmp_path: Path) -> None:
    """With constant folding the Q/K/V concatenation becomes one stored weight used by all layers."""
    torch.manual_seed(0)
    model = trained_like(AlbertModel(tiny_config(num_hidden_layers=4)))
    graph = onnx.load(str(export_onnx(model, tmp_path / "m.onnx"))).graph
    hidden = model.config.hidden_size
    qkv = [init.name for init in graph.initializer if list(init.dims) == [hidden, 3 * hidden]]
    assert len(qkv) == 1
    assert sum(node.input[1] == qkv[0] for node in graph.node if node.op_type == "MatMul") == 4
    assert not [n for n in graph.node if n.op_type == "Identity"]


def test_int8_onnx_is_close_to_fp32_and_keeps_weights_shared(tmp_path: Path, tokenizer_dir: Path) -> None:
    saved_model(
        tmp_path / "model",
        AlbertModel,
        tokenizer_dir,
        vocab_size=1000,
        embedding_size=64,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        num_hidden_layers=6,
    )
    fp32 = OnnxModel(export_model_dir(tmp_path / "model", tmp_path / "out"))
    int8 = OnnxModel(export_model_dir(tmp_path / "model", tmp_path / "out", int8=True))
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.path.stat().st_size < 0.3 * fp32.path.stat().st_size
    batch = fp32.encode(TEXTS, PAIRS)
    reference, quantized = fp32(**batch), int8(**batch)
    assert min_cosine(quantized["last_hidden_state"], reference["last_hidden_state"]) >= 0.99
    assert min_cosine(quantized["pooler_output"], reference["pooler_output"]) >= 0.99
    graph = onnx.load(str(int8.path)).graph
    weights = [n.input[1] for n in graph.node if n.op_type == "MatMulInteger"]
    # 6 layers share 3 int8 weights (output projection, FFN in and out); plus the embedding
    # projection and the pooler
    assert len(weights) == 6 * 3 + 2 and len(set(weights)) == 3 + 2
    # onnxruntime's fused kernels: add + LayerNorm in each block's two halves and the embeddings; the
    # GELU; and each layer's whole attention, its Q|K|V product int8 with one shared weight
    ops = [n.op_type for n in graph.node]
    assert ops.count("SkipLayerNormalization") == 6 * 2 + 1 and ops.count("FastGelu") == 6
    attention = [n for n in graph.node if n.op_type == "QAttention"]
    assert len(attention) == 6 and len({n.input[1] for n in attention}) == 1
    assert not {"MatMul", "Softmax", "Where"} & set(ops)  # nothing of the traced attention is left


def test_int8_mlm_decoder_is_quantised_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = trained_like(MODEL_CLASSES["AlbertForMaskedLM"](tiny_config(vocab_size=2000, hidden_size=64)))
    path = export_onnx(model, tmp_path / "m.onnx", int8=True)
    batch = {"input_ids": np.array([[2, 50, 60, 70, 3, 0]]), "attention_mask": np.array([[1, 1, 1, 1, 1, 0]])}
    assert min_cosine(_run(path, batch)["logits"], torch_outputs(model, batch)["logits"]) >= 0.99
    tables = [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer if 2000 in i.dims]
    # the lookup table (uint8) and the decoder (int8, per channel): no fp32 copy of either
    assert sorted(str(t.dtype) for t in tables if t.ndim == 2) == ["int8", "uint8"]


# ----------------------------------------------------------------------------------------
# the lean runtime


RUNTIME_SCRIPT = """
import json, sys
sys.modules["torch"] = None  # any `import torch` on the runtime's path now fails
from albert.onnx_runtime import main
status = main(sys.argv[1:])
assert not any(name == "torch" or name.startswith("torch.") for name, m in sys.modules.items() if m is not None)
sys.exit(status)
"""


def run_fresh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUNTIME_SCRIPT, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_exported_classifier_runs_in_a_fresh_process_without_torch(
    tmp_path: Path, tokenizer_dir: Path
) -> None:
    model = saved_model(tmp_path / "model", MODEL_CLASSES["AlbertForSequenceClassification"], tokenizer_dir)
    model.config.id2label = {0: "negative", 1: "positive"}
    model.save_pretrained(tmp_path / "model")
    export_model_dir(tmp_path / "model", tmp_path / "served")
    texts = ["a fine film", "dull and far too long", "ok"]
    done = run_fresh(str(tmp_path / "served"), *(a for t in texts for a in ("--text", t)), "--stats")
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    stats = json.loads(done.stderr.strip().splitlines()[-1])
    assert stats["torch_imported"] is False and stats["rss_mb"] > 0
    tokens = AlbertTokenizer.from_pretrained(tokenizer_dir)(texts, padding=True, return_tensors="np")
    probs = torch_outputs(model, {k: v.astype(np.int64) for k, v in tokens.items()})["logits"]
    probs = np.exp(probs) / np.exp(probs).sum(-1, keepdims=True)
    assert [r["label"] for r in results] == [model.config.id2label[int(i)] for i in probs.argmax(-1)]
    np.testing.assert_allclose([r["score"] for r in results], probs.max(-1), atol=1e-5)
    assert [r["text"] for r in results] == texts


def test_feature_extraction_in_a_fresh_process(tmp_path: Path, tokenizer_dir: Path) -> None:
    model = saved_model(tmp_path / "model", AlbertModel, tokenizer_dir)
    export_model_dir(tmp_path / "model", tmp_path / "served", int8=True)
    texts = tmp_path / "texts.txt"
    texts.write_text("first line\n\nsecond, longer line of text\n", encoding="utf-8")
    done = run_fresh(str(tmp_path / "served"), "--input", str(texts), "--pooling", "mean")
    assert done.returncode == 0, done.stderr
    vectors = np.array([json.loads(line)["embedding"] for line in done.stdout.splitlines()])
    tokens = AlbertTokenizer.from_pretrained(tokenizer_dir)(
        ["first line", "second, longer line of text"], padding=True, return_tensors="np"
    )
    hidden = torch_outputs(model, {k: v.astype(np.int64) for k, v in tokens.items()})["last_hidden_state"]
    mask = tokens["attention_mask"][..., None]
    expected = (hidden * mask).sum(1) / mask.sum(1)
    assert vectors.shape == expected.shape and min_cosine(vectors, expected) >= 0.99


def test_batched_classification_is_independent_of_batch_size(tmp_path: Path, tokenizer_dir: Path) -> None:
    saved_model(tmp_path / "model", MODEL_CLASSES["AlbertForSequenceClassification"], tokenizer_dir)
    path = export_model_dir(tmp_path / "model", tmp_path / "served" / "classifier.onnx")
    model = OnnxModel(path, threads=1)
    texts = [f"text number {i} " * (i % 5 + 1) for i in range(7)]
    one_batch, small_batches = model.classify(texts, batch_size=8), model.classify(texts, batch_size=2)
    assert [r["label"] for r in one_batch] == [r["label"] for r in small_batches]
    np.testing.assert_allclose(
        [r["score"] for r in one_batch], [r["score"] for r in small_batches], atol=1e-5
    )
    with pytest.raises(AlbertError, match="not a sequence classifier|feature extraction"):
        model.embed(texts)


# ----------------------------------------------------------------------------------------
# the CLI and its errors


def test_cli_export_int8_end_to_end(
    tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    saved_model(tmp_path / "model", MODEL_CLASSES["AlbertForTokenClassification"], tokenizer_dir)
    (tmp_path / "model" / "finetune_args.json").write_text('{"task_options": {"max_seq_length": 32}}')
    argv = [
        "export",
        "--format",
        "onnx",
        "--model",
        str(tmp_path / "model"),
        "--output",
        str(tmp_path / "out"),
    ]
    assert cli_main([*argv, "--int8", "--task", "base"]) == 0
    assert "model_int8.onnx" in capsys.readouterr().out
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {
        "model_int8.onnx",
        "config.json",
        "spiece.model",
        "tokenizer_config.json",
        "finetune_args.json",
    } <= files
    model = OnnxModel(tmp_path / "out")
    assert model.architecture == "AlbertModel" and model.precision == "int8"
    assert set(model(**model.encode(["hello there"]))) == {"last_hidden_state", "pooler_output"}


def test_cli_errors(tmp_path: Path, tokenizer_dir: Path, capsys: pytest.CaptureFixture) -> None:
    out = str(tmp_path / "out.onnx")
    assert cli_main(["export", "--model", str(tmp_path / "missing"), "--output", out]) == 2
    assert "does not exist" in capsys.readouterr().err
    saved_model(tmp_path / "model", AlbertModel, None)
    assert cli_main(["export", "--model", str(tmp_path / "model"), "--output", out, "--task", "ner"]) == 2
    assert "unknown task 'ner'" in capsys.readouterr().err
    assert cli_main(["export", "--model", str(tmp_path / "model"), "--output", out, "--tokenizer", out]) == 2
    assert "no spiece.model" in capsys.readouterr().err
    assert not Path(out).exists()  # checked before exporting: nothing written


def test_missing_onnxruntime_or_onnx_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(AlbertError, match=r"pip install 'albert\[export\]'"):
        OnnxModel(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(AlbertError, match=r"pip install 'albert\[export\]'"):
        export_onnx(AlbertModel(tiny_config()), tmp_path / "m.onnx")


def test_runtime_errors(tmp_path: Path) -> None:
    with pytest.raises(AlbertError, match="no ONNX model"):
        OnnxModel(tmp_path / "nothing")
    torch.manual_seed(0)
    path = export_onnx(AlbertModel(tiny_config()).eval(), tmp_path / "m.onnx")
    with pytest.raises(AlbertError, match="config.json is missing"):
        OnnxModel(path)
    tiny_config().save_pretrained(tmp_path)
    model = OnnxModel(tmp_path)
    with pytest.raises(AlbertError, match="no tokenizer"):
        model.tokenizer  # noqa: B018
    with pytest.raises(AlbertError, match="max_position_embeddings=64"):
        model(np.ones((1, 65), np.int64))
    with pytest.raises(AlbertError, match="token ids must lie in"):
        model(np.array([[2, 320]]))
    with pytest.raises(AlbertError, match="shape"):
        model(np.array([2, 3]))
    (tmp_path / "m.onnx").write_bytes(b"not a model")
    with pytest.raises(AlbertError, match="not a loadable ONNX model"):
        OnnxModel(tmp_path / "m.onnx")


@pytest.mark.parametrize("share", ["all", "none"])
def test_attention_fusion_alone_keeps_fp32_outputs(share: str, tmp_path: Path) -> None:
    """`fuse_attention` (applied before int8 quantisation) replaces every layer's traced attention
    by one onnxruntime `Attention` node, reading the shared Q|K|V weight, without changing the
    fp32 outputs, padded positions and pairs included."""
    from albert.export import fuse_attention, share_initializers, trace_to_onnx

    torch.manual_seed(0)
    model = trained_like(AlbertModel(tiny_config(share=share))).eval()
    trace_to_onnx(model, tmp_path / "traced.onnx")
    proto = onnx.load(str(tmp_path / "traced.onnx"))
    share_initializers(proto)
    assert fuse_attention(proto, model.config.num_attention_heads) == 3
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Attention") == 3 and not {"Softmax", "Where"} & set(ops)
    weights = {n.input[1] for n in proto.graph.node if n.op_type == "Attention"}
    assert len(weights) == (1 if share == "all" else 3)
    read = {name for n in proto.graph.node for name in n.input} | {o.name for o in proto.graph.output}
    assert all(i.name in read for i in proto.graph.initializer)  # nothing left of the replaced ops
    assert all(any(o in read for o in n.output) for n in proto.graph.node)
    onnx.save(proto, str(tmp_path / "fused.onnx"))
    batch = {
        "input_ids": np.array([[2, 50, 60, 70, 3, 80, 90, 3], [2, 40, 3, 0, 0, 0, 0, 0]]),
        "attention_mask": np.array([[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]]),
        "token_type_ids": np.array([[0, 0, 0, 0, 0, 1, 1, 1], [0] * 8]),
    }
    fused, expected = _run(tmp_path / "fused.onnx", batch), torch_outputs(model, batch)
    np.testing.assert_allclose(
        fused["last_hidden_state"], expected["last_hidden_state"], atol=2e-5, rtol=1e-4
    )
