"""Training precision: bf16 autocast with fp32 master weights for `pretrain`, `distill` and
`finetune` (with and without a teacher), the hardware rule for `auto`, and exact resume in bf16.

bf16 is forced with ``ALBERT_NATIVE_BF16=1`` so every test runs on any CPU (emulated bf16 is
slow but exact to its format: the models here are tiny); ``=0`` forces the fp32 side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_finetune_fixtures import (  # noqa: F401  (fixtures)
    cli_json,
    finetune_tiny,
    one_thread,
    sentiment_rows,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_csv,
)
from test_pretrain import assert_same_records, corpus, interrupt_at, run, training_records  # noqa: F401

import albert
from albert import fastpath
from albert.cli import main
from albert.config import AlbertConfig
from albert.hardware import OVERRIDE
from albert.modeling import AlbertForPreTraining
from albert.train.metrics import read_metrics

MODEL = dict(
    vocab_size=100,
    embedding_size=16,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=32,
)


def _loss_curve(output: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(output / "metrics.jsonl") if "loss" in r and "eval" not in r]


def test_every_command_offers_the_same_precisions() -> None:
    """finetune and serve name the choices without importing torch; they must stay albert.hardware's."""
    from albert import finetune, hardware, serve
    from albert.train import precision

    assert finetune.PRECISIONS == serve.PRECISIONS == hardware.PRECISIONS == ("auto", "fp32", "bf16")
    assert precision.PRECISIONS == (*hardware.PRECISIONS, "fp16")


def test_autocast_keeps_layer_norm_the_residual_stream_and_the_loss_in_fp32() -> None:
    """CPU autocast would normalise a bf16 input in bf16 (layer_norm is on none of its lists):
    the model upcasts it, so every hidden state between blocks is fp32 while the GEMMs ran in bf16."""
    torch.manual_seed(0)
    model = AlbertForPreTraining(AlbertConfig(**MODEL)).train()
    ids = torch.randint(5, 100, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids, sentence_order_label=torch.tensor([0, 1]), output_hidden_states=True)
    assert out.prediction_logits.dtype == torch.bfloat16  # the GEMMs did run in bf16
    # the E->H projection's output is bf16; every block's LayerNorm output after it is fp32
    assert [h.dtype for h in out.hidden_states[1:]] == [torch.float32] * MODEL["num_hidden_layers"]
    assert out.loss.dtype == torch.float32
    out.loss.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    # the attention probabilities, when asked for, come from an fp32 softmax
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = model(ids, output_attentions=True).attentions[0]
    torch.testing.assert_close(probs.float().sum(-1), torch.ones(2, 2, 12), atol=1e-2, rtol=0)


def test_autocast_at_inference_is_not_overridden_by_the_packed_fp32_path() -> None:
    """Under autocast (held-out evaluation of a bf16 run) the GEMMs run in autocast's bf16, not in
    the fp32 packed path the weights' dtype would pick."""
    model = albert.AlbertModel(AlbertConfig(**MODEL)).eval()
    ids = torch.randint(5, 100, (2, 12))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = model(ids).last_hidden_state
    assert hidden.dtype == torch.float32  # LayerNorm's output
    assert not any("_packed_cache" in m.__dict__ for m in model.modules())
    with torch.inference_mode():
        model(ids)
    assert any("_packed_cache" in m.__dict__ for m in model.modules()) == fastpath.ENABLED


@pytest.mark.slow
def test_a_bf16_pretraining_run_resumes_exactly(corpus, tmp_path, monkeypatch) -> None:  # noqa: F811
    """Interrupted at step k and resumed, a bf16 run reproduces the uninterrupted bf16 run, as an
    fp32 one does (tests/test_pretrain.py); its checkpoints and optimizer state hold fp32; and its
    losses differ from the fp32 run's (autocast ran) by little."""
    monkeypatch.setenv(OVERRIDE, "1")
    total, half = 12, 7
    straight = run(corpus, tmp_path / "straight", max_steps=total, precision="bf16")
    assert straight["step"] == total

    interrupt_at(monkeypatch, half)  # SIGINT arrives during step `half`
    first = run(corpus, tmp_path / "resumed", max_steps=total, precision="bf16")
    assert first["interrupted"] == "SIGINT" and first["step"] == half
    monkeypatch.undo()
    monkeypatch.setenv(OVERRIDE, "1")
    assert run(corpus, tmp_path / "resumed", max_steps=total, precision="bf16", resume=True)["step"] == total

    assert_same_records(training_records(tmp_path / "straight"), training_records(tmp_path / "resumed"))

    checkpoint = Path(straight["checkpoint"])
    assert {p.dtype for p in AlbertForPreTraining.from_pretrained(checkpoint).parameters()} == {torch.float32}
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)["optimizer"]["state"]
    moments = [t for s in state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.dim()]
    assert moments and {t.dtype for t in moments} == {torch.float32}

    run(corpus, tmp_path / "fp32", max_steps=total, precision="fp32")
    bf16, fp32 = _loss_curve(tmp_path / "straight"), _loss_curve(tmp_path / "fp32")
    assert bf16 != fp32
    assert max(abs(a - b) / b for a, b in zip(bf16, fp32, strict=True)) < 0.02, (bf16, fp32)


def test_auto_says_which_precision_it_chose(corpus, tmp_path, capsys, monkeypatch) -> None:  # noqa: F811
    argv = ["pretrain", "--data", str(corpus["data"]), "--tokenizer", str(corpus["tokenizer"])]
    argv += ["--model", str(corpus["config"]), "--batch-size", "8", "--max-steps", "1", "--eval-every", "0"]
    for forced, line in (
        ("0", "albert pretrain: precision fp32 (auto: this CPU has no native bf16)"),
        ("1", "albert pretrain: precision bf16 (auto: this CPU has native bf16: "),
    ):
        monkeypatch.setenv(OVERRIDE, forced)
        assert main([*argv, "--output", str(tmp_path / forced)]) == 0
        said = [x for x in capsys.readouterr().err.splitlines() if "precision" in x]
        assert len(said) == 1 and said[0].startswith(line), said
        state = json.loads((tmp_path / forced / "checkpoints" / "step-1" / "trainer_state.json").read_text())
        assert state["config"]["precision"] == "auto"


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sentiment")
    train = write_csv(folder / "train.csv", ["label", "text"], sentiment_rows(96, seed=3))
    dev = write_csv(folder / "dev.csv", ["label", "text"], sentiment_rows(48, seed=4))
    return train, dev


def _weights(model: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(model / "model.safetensors")


def _dev_labels(model: Path, dev: Path) -> list[str]:
    texts = [line.split(",", 1)[1] for line in dev.read_text(encoding="utf-8").splitlines()[1:]]
    return [r["label"] for r in albert.pipeline("text-classification", model=model, dtype="fp32")(texts)]


@pytest.mark.slow
def test_finetuning_in_bf16_saves_fp32_weights_that_score_like_fp32(
    sentiment, tiny_config, tokenizer_dir, tmp_path, capsys, monkeypatch
) -> None:
    """bf16 fine-tuning, plain and with a teacher (`--teacher`): the saved model is fp32 (the master
    weights), differs from the fp32 run's (autocast ran) and scores like it on dev."""
    monkeypatch.setenv(OVERRIDE, "1")
    train, dev = sentiment
    results, labels = {}, {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        results[precision] = finetune_tiny(
            "text-classification", train, dev, tiny_config, tokenizer_dir, out, epochs=4, max_steps=48,
            precision=precision,
        )  # fmt: skip
        assert {t.dtype for t in _weights(out).values()} == {torch.float32}
        assert json.loads((out / "finetune_args.json").read_text())["trained_precision"] == precision
        labels[precision] = _dev_labels(out, dev)
    fp32, bf16 = _weights(tmp_path / "fp32"), _weights(tmp_path / "bf16")
    assert any(not torch.equal(fp32[name], bf16[name]) for name in fp32)
    assert results["fp32"]["score"] > 0.6  # chance: 0.5
    assert abs(results["bf16"]["score"] - results["fp32"]["score"]) <= 0.1, results
    agree = sum(a == b for a, b in zip(labels["fp32"], labels["bf16"], strict=True)) / len(labels["fp32"])
    assert agree >= 0.85, agree

    # task distillation from the fp32 model, in bf16 through the CLI (auto picks bf16 here)
    argv = ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(dev)]
    argv += ["--model", str(tiny_config), "--tokenizer", str(tokenizer_dir), "--max-seq-length", "64"]
    argv += ["--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--max-steps", "12"]
    argv += ["--teacher", str(tmp_path / "fp32"), "--output", str(tmp_path / "student")]
    result = cli_json(capsys, *argv)
    assert result["steps"] == 12
    assert {t.dtype for t in _weights(tmp_path / "student").values()} == {torch.float32}
    args = json.loads((tmp_path / "student" / "finetune_args.json").read_text())
    assert args["precision"] == "auto" and args["trained_precision"] == "bf16"


def test_finetune_auto_says_which_precision_it_chose(
    sentiment, tiny_config, tokenizer_dir, tmp_path, capsys, monkeypatch
) -> None:
    train, dev = sentiment
    argv = ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(dev)]
    argv += ["--model", str(tiny_config), "--tokenizer", str(tokenizer_dir), "--max-seq-length", "32"]
    argv += ["--epochs", "1", "--batch-size", "8", "--max-steps", "1"]
    for forced, extra, line in (
        ("0", [], "albert finetune: precision fp32 (auto: this CPU has no native bf16)"),
        ("1", [], "albert finetune: precision bf16 (auto: this CPU has native bf16: "),
        ("1", ["--precision", "fp32"], "albert finetune: precision fp32 (requested)"),
    ):
        monkeypatch.setenv(OVERRIDE, forced)
        assert main([*argv, *extra, "--output", str(tmp_path / f"{forced}{len(extra)}")]) == 0
        said = [x for x in capsys.readouterr().err.splitlines() if "precision" in x]
        assert len(said) == 1 and said[0].startswith(line), said
