"""Inference precision: bf16 through the packed oneDNN path agrees with fp32 for every head, the
hardware-chosen default can be forced either way (``ALBERT_NATIVE_BF16``), and asking for bf16 where
the CPU has no native bf16 is one clear error. bf16 correctness is checked on every CPU (emulated
bf16 is slow but exact to its format); speed lives in benchmarks/bench_precision.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    classifier_dir,
    cli_json,
    finetune_tiny,
    one_thread,
    sentiment_rows,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_csv,
)

import albert
from albert import fastpath
from albert.cli import main
from albert.config import AlbertConfig
from albert.errors import AlbertError
from albert.hardware import OVERRIDE, choose_precision, native_bf16
from albert.modeling import MODEL_CLASSES

CONFIG = dict(
    vocab_size=120,
    embedding_size=32,
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=128,
    hidden_act="gelu_new",
)


def _batch(cls_name: str) -> dict[str, torch.Tensor]:
    """Three sequences of mixed length, padded in the batch (multiple choice: two questions)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, CONFIG["vocab_size"], (3, 20), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 13:] = 0
    mask[2, 6:] = 0
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": (torch.arange(20) >= 10).long().expand(3, -1),
    }
    if cls_name == "AlbertForMultipleChoice":
        batch = {k: v.reshape(1, 3, 20).repeat(2, 1, 1) for k, v in batch.items()}
    return batch


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().flatten(0, -2), b.float().flatten(0, -2)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()


@pytest.mark.parametrize("cls_name", sorted(MODEL_CLASSES))
def test_bf16_inference_agrees_with_fp32_for_every_head(cls_name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    MODEL_CLASSES[cls_name](AlbertConfig(**CONFIG, num_labels=2)).save_pretrained(tmp_path)
    fp32 = MODEL_CLASSES[cls_name].from_pretrained(tmp_path, dtype="fp32").eval()
    bf16 = MODEL_CLASSES[cls_name].from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    batch = _batch(cls_name)
    with torch.inference_mode():
        expected = fp32(**batch, output_hidden_states=True)
        got = bf16(**batch, output_hidden_states=True)
    keep = batch["attention_mask"].reshape(-1).bool()  # padded positions carry no meaning
    hidden = [h.flatten(0, -2)[keep] for h in (expected.hidden_states[-1], got.hidden_states[-1])]
    assert got.hidden_states[-1].dtype == torch.bfloat16
    assert _cosine(*hidden) >= 0.999
    for key in expected.keys():
        if key != "hidden_states" and "logits" in key:  # every head's scores, as one vector
            assert _cosine(expected[key].reshape(1, -1), got[key].reshape(1, -1)) >= 0.999, key
    # where oneDNN has a bf16 GEMM the bf16 model took the packed path (bf16 weights packed once),
    # not a plain bf16 matmul; on a CPU without one (AVX2 only) it took the plain ops
    ffn = bf16.base_model.encoder.albert_layer_groups[0].albert_layers[0].ffn
    packed = ffn.__dict__.get("_packed_cache")
    packs_bf16 = fastpath.ENABLED and torch.bfloat16 in fastpath.PACKED_DTYPES
    assert (packed is not None and packed[1].dtype == torch.bfloat16) == packs_bf16


def test_precision_follows_the_hardware_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OVERRIDE, raising=False)
    detected = native_bf16()
    assert detected == bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert choose_precision("auto") == ("bf16" if detected else "fp32")
    assert choose_precision("fp32") == "fp32"
    monkeypatch.setenv(OVERRIDE, "0")
    assert choose_precision("auto") == "fp32"
    with pytest.raises(AlbertError, match="no native bf16.*fp32"):
        choose_precision("bf16")
    monkeypatch.setenv(OVERRIDE, "1")
    assert choose_precision("auto") == choose_precision("bf16") == "bf16"
    with pytest.raises(AlbertError, match="unknown precision"):
        choose_precision("fp16")
    monkeypatch.setenv(OVERRIDE, "yes")
    with pytest.raises(AlbertError, match="must be 0 or 1"):
        native_bf16()


@pytest.fixture(scope="module")
def sentiment_model(
    tiny_config: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A tiny classifier fine-tuned a few epochs (past chance, not confident: close calls are where
    bf16 could flip a label), and its dev file."""
    folder = tmp_path_factory.mktemp("sentiment")
    train = write_csv(folder / "train.csv", ["label", "text"], sentiment_rows(96, seed=3))
    dev = write_csv(folder / "dev.csv", ["label", "text"], sentiment_rows(48, seed=4))
    finetune_tiny(
        "text-classification",
        train,
        dev,
        tiny_config,
        tokenizer_dir,
        folder / "model",
        epochs=4,
        max_steps=48,
    )
    return folder / "model", dev


def test_a_fine_tuned_classifier_predicts_the_same_in_bf16(
    sentiment_model: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, dev = sentiment_model
    texts = [line.split(",", 1)[1] for line in dev.read_text(encoding="utf-8").splitlines()[1:]]
    fp32 = albert.pipeline("text-classification", model=model, dtype="fp32")(texts, top_k=None)
    bf16 = albert.pipeline("text-classification", model=model, dtype=torch.bfloat16)(texts, top_k=None)
    assert [r[0]["label"] for r in bf16] == [r[0]["label"] for r in fp32]
    assert max(abs(a[0]["score"] - b[0]["score"]) for a, b in zip(fp32, bf16, strict=True)) < 0.02
    # the CLIs, with the detection forced each way: bf16 where "native", fp32 where not
    monkeypatch.setenv(OVERRIDE, "1")
    scored = {"bf16": cli_json(capsys, "evaluate", "--model", str(model), "--data", str(dev))}
    monkeypatch.setenv(OVERRIDE, "0")
    scored["fp32"] = cli_json(capsys, "evaluate", "--model", str(model), "--data", str(dev))
    assert scored["bf16"]["accuracy"] == scored["fp32"]["accuracy"] > 0.6  # chance: 0.5


def test_auto_says_what_it_chose_and_forced_fp32_gives_the_fp32_answers(
    classifier_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = ["a fine film", "dull and far too long", "ok"]
    argv = ["predict", "--task", "text-classification", "--model", str(classifier_dir), *texts]
    monkeypatch.setenv(OVERRIDE, "0")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == "albert predict: precision fp32 (auto: this CPU has no native bf16)\n"
    as_stored = albert.pipeline("text-classification", model=classifier_dir)(texts)
    assert [json.loads(line) for line in captured.out.splitlines()] == as_stored
    monkeypatch.setenv(OVERRIDE, "1")
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("albert predict: precision bf16 (auto: ") and err.count("\n") == 1


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_bf16_without_native_bf16_is_one_line_offering_fp32(
    command: str,
    classifier_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OVERRIDE, "0")
    data = write_csv(tmp_path / "dev.csv", ["label", "text"], [("neg", "dull")])
    argv = {
        "predict": ["predict", "--task", "text-classification", "--model", str(classifier_dir), "x"],
        "evaluate": ["evaluate", "--model", str(classifier_dir), "--data", str(data)],
    }[command]
    assert main([*argv, "--precision", "bf16"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"albert {command}: error: this CPU has no native bf16")
    assert "--precision fp32" in captured.err


def test_onnx_runtime_refuses_a_torch_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["predict", "--task", "text-classification", "--runtime", "onnx", "--model", str(tmp_path), "x"]
    assert main([*argv, "--precision", "bf16"]) == 2
    assert "applies to the torch runtime" in capsys.readouterr().err


def test_int8_onnx_weights_use_8_bits_with_vnni_and_7_without(tmp_path: Path) -> None:
    """The int8 export is u8 x s8: activations quantised at run time over [0, 255]
    (`DynamicQuantizeLinear`), weights int8 per output channel. With VNNI each channel uses the
    full [-127, 127] (32-bit sums, no saturation; `reduce_range` would cost accuracy for nothing);
    without it (AVX2's 16-bit sums saturate) each channel uses the 7-bit [-64, 64]."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from albert.export import export_onnx
    from albert.hardware import cpu_has_vnni

    torch.manual_seed(0)
    path = export_onnx(
        MODEL_CLASSES["AlbertModel"](AlbertConfig(**CONFIG)).eval(), tmp_path / "m.onnx", int8=True
    )
    graph = onnx.load(str(path)).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    products = [node for node in graph.node if node.op_type == "MatMulInteger"]
    peak = 127 if cpu_has_vnni() else 64
    assert products
    for node in products:
        assert producer[node.input[0]].op_type == "DynamicQuantizeLinear"  # uint8 activations, full range
        weight = constants[node.input[1]]
        assert weight.dtype == np.int8
        assert (np.abs(weight.astype(np.int32)).max(axis=0) == peak).all(), node.name  # per channel
