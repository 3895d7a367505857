"""`albert pretrain` end to end on real text: exact resume, checkpoints, NaN handling, CLI, DDP."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_finetune_fixtures import one_thread  # noqa: F401  (autouse: tiny models, one thread)

import albert.train.loop as loop_module
from albert.cli import main
from albert.data import PretrainingDataset
from albert.errors import AlbertError
from albert.modeling import AlbertForPreTraining
from albert.pretrain import pretrain
from albert.train.checkpoints import COMPLETE_MARKER
from albert.train.metrics import read_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    embedding_size=16,
    max_position_embeddings=64,
    hidden_dropout_prob=0.1,  # dropout on: resuming must restore the RNG exactly
)


@pytest.fixture(scope="module")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1000-piece tokenizer and two dynamic-masking data sets built from the start of Botchan."""
    from albert.data import build_pretraining_data
    from albert.tokenizer_train import train_tokenizer

    root = tmp_path_factory.mktemp("pretrain")
    botchan = shared_data / "pretrain" / "en" / "botchan.txt"
    tokenizer = train_tokenizer([botchan], 1000, root / "tokenizer", num_threads=1)
    lines = botchan.read_text(encoding="utf-8").splitlines()
    (root / "train.txt").write_text("\n".join(lines[:700]) + "\n", encoding="utf-8")
    (root / "eval.txt").write_text("\n".join(lines[700:900]) + "\n", encoding="utf-8")
    options = dict(max_seq_length=64, max_predictions_per_seq=10, dynamic_masking=True, progress=False)
    build_pretraining_data(tokenizer, [root / "train.txt"], root / "data", **options)
    build_pretraining_data(tokenizer, [root / "eval.txt"], root / "eval-data", **options)
    (root / "tiny.json").write_text(json.dumps(TINY))
    return {
        "tokenizer": tokenizer,
        "data": root / "data",
        "eval": root / "eval-data",
        "config": root / "tiny.json",
    }


def run(corpus: dict[str, Path], output: Path, **options) -> dict:
    settings = dict(
        tokenizer=str(corpus["tokenizer"]),
        eval_data=str(corpus["eval"]),
        batch_size=8,
        log_every=1,
        eval_every=5,
        eval_batches=2,
        save_every=100,
        learning_rate=2e-3,
        warmup_steps=3,
    )
    return pretrain(str(corpus["data"]), str(corpus["config"]), str(output), **{**settings, **options})


def training_records(output: Path) -> list[dict]:
    drop = {"tokens_per_second"}  # wall-clock
    return [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(output / "metrics.jsonl")]


def with_forward_hook(monkeypatch: pytest.MonkeyPatch, hook) -> None:
    """Make the trainer's model run `hook(model, call_number, output)` after each training forward."""
    build = loop_module.build_pretraining_model

    def build_with_hook(*args, **kwargs):
        model = build(*args, **kwargs)
        calls = [0]

        def on_forward(module, inputs, output):
            if module.training:
                calls[0] += 1
                return hook(module, calls[0], output)
            return None

        model.register_forward_hook(on_forward)
        return model

    monkeypatch.setattr(loop_module, "build_pretraining_model", build_with_hook)


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Send SIGINT during the trainer's training forward number `step`."""

    def interrupt(module, call, output):
        if call == step:
            os.kill(os.getpid(), signal.SIGINT)

    with_forward_hook(monkeypatch, interrupt)


def assert_same_records(expected: list[dict], got: list[dict]) -> None:
    """The same steps logged with the same values (floats to 1e-6 relative, the rest exactly)."""
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(expected, got, strict=True):
        for key in a:
            if isinstance(a[key], float):
                assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-7), (a["step"], key)
            else:
                assert b[key] == a[key], (a["step"], key)


@pytest.mark.slow
def test_resume_after_sigint_reproduces_the_straight_run(corpus, tmp_path, monkeypatch) -> None:
    steps_per_epoch = len(__import__("albert.data", fromlist=["x"]).PretrainingDataset(corpus["data"])) // 8
    total = steps_per_epoch + 6  # the resumed half crosses an epoch boundary (new dynamic masks)
    straight = run(corpus, tmp_path / "straight", max_steps=total)
    assert straight["step"] == total and straight["interrupted"] is None

    half = total // 2 + 1
    interrupt_at(monkeypatch, half)  # SIGINT arrives during step `half`
    first = run(corpus, tmp_path / "resumed", max_steps=total)
    assert first["interrupted"] == "SIGINT" and first["step"] == half
    assert first["checkpoint"].endswith(f"step-{half}")
    monkeypatch.undo()
    second = run(corpus, tmp_path / "resumed", max_steps=total, resume=True)
    assert second["step"] == total

    expected, got = training_records(tmp_path / "straight"), training_records(tmp_path / "resumed")
    assert_same_records(expected, got)
    assert {r["epoch"] for r in got if "epoch" in r} == {0, 1}

    # the checkpoint is a model + tokenizer directory, loadable here and by transformers
    checkpoint = Path(second["checkpoint"])
    ours = AlbertForPreTraining.from_pretrained(checkpoint)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == total and {"epoch", "index"} <= set(state)
    assert {"spiece.model", "tokenizer_config.json", "optimizer.pt", "rng_state.pt", COMPLETE_MARKER} <= {
        p.name for p in checkpoint.iterdir()
    }
    transformers = pytest.importorskip("transformers")
    theirs = transformers.AlbertForPreTraining.from_pretrained(checkpoint)
    ids = torch.tensor([[2, 50, 60, 70, 3]])
    with torch.no_grad():
        torch.testing.assert_close(
            ours.eval()(ids).prediction_logits, theirs.eval()(ids).prediction_logits, rtol=1e-4, atol=1e-4
        )


def test_resume_skips_incomplete_checkpoints(corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    run(corpus, out, max_steps=4, save_every=2, keep=5, eval_every=0)
    root = out / "checkpoints"
    shutil.copytree(root / "step-4", root / "step-6")
    (root / "step-6" / COMPLETE_MARKER).unlink()  # killed before the marker: not complete
    shutil.copytree(root / "step-4", root / "step-8")
    with open(root / "step-8" / "model.safetensors", "r+b") as f:
        f.truncate(100)  # size no longer matches the marker
    shutil.copytree(root / "step-4", root / ".tmp-step-10-deadbeef")  # killed mid-write
    capsys.readouterr()

    summary = run(corpus, out, max_steps=6, save_every=2, keep=5, eval_every=0, resume=True)
    printed = capsys.readouterr().out
    assert "resuming from" in printed and "step-4" in printed
    assert "ignoring incomplete checkpoint" in printed and "step-6" in printed and "step-8" in printed
    assert summary["step"] == 6 and (root / "step-6" / COMPLETE_MARKER).is_file()
    assert not list(root.glob(".tmp-*"))
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == list(range(1, 7))


def test_non_finite_loss_skips_the_update(corpus, tmp_path, monkeypatch) -> None:
    def poison(module, call, output):
        if call in (3, 4):
            output.loss = output.loss * float("nan")
        return output

    with_forward_hook(monkeypatch, poison)
    summary = run(corpus, tmp_path / "run", max_steps=6, eval_every=0)
    assert summary["skipped_steps"] == 2
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["loss"] is None for r in records] == [False, False, True, True, False, False]
    assert records[-1]["skipped_steps"] == 2
    optimizer = torch.load(Path(summary["checkpoint"]) / "optimizer.pt", weights_only=True)["optimizer"]
    assert {s["step"] for s in optimizer["state"].values()} == {4}  # 6 steps, 2 updates skipped


def test_too_many_non_finite_steps_stop_the_run(corpus, tmp_path, monkeypatch) -> None:
    def diverge(module, call, output):
        if call > 2:
            output.loss = output.loss * float("inf")
        return output

    with_forward_hook(monkeypatch, diverge)
    with pytest.raises(AlbertError, match="3 consecutive steps.*step-2"):
        run(corpus, tmp_path / "run", max_steps=20, save_every=2, eval_every=0, max_nan_steps=2)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-2"]


@pytest.mark.slow
def test_cli_end_to_end_with_plot(corpus, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = ["pretrain", "--data", str(corpus["data"])]  # the tokenizer: the one the data records
    common += ["--model", str(corpus["config"]), "--output", str(out)]
    options = ["--max-steps", "4", "--batch-size", "4", "--grad-accum", "2", "--optimizer", "adamw"]
    options += [
        "--gradient-checkpointing",
        "--eval-every",
        "2",
        "--eval-batches",
        "2",
        "--eval-fraction",
        "0.1",
    ]
    options += ["--save-every", "2", "--keep", "1", "--log-every", "2", "--warmup-steps", "1"]
    assert main(common + options) == 0
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-4"]
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if not r.get("eval")]
    evals = [r for r in records if r.get("eval")]
    assert [r["step"] for r in train] == [2, 4] and [r["step"] for r in evals] == [2, 4]
    for key in (
        "loss",
        "mlm_loss",
        "sop_loss",
        "mlm_accuracy",
        "sop_accuracy",
        "learning_rate",
        "tokens_per_second",
    ):
        assert all(isinstance(r[key], float) for r in train), key
    assert all(r["perplexity"] > 1 and 0 <= r["sop_accuracy"] <= 1 for r in evals)

    assert main(["plot", str(out)]) == 0
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 3 * 6 * 110  # 2 x 3 panels: word-order gain, tokens/s too

    capsys.readouterr()
    assert main(common + options) == 2  # the output holds a run: refuse rather than overwrite it
    assert "--resume" in capsys.readouterr().err


def test_user_errors_are_one_line(corpus, tmp_path, capsys) -> None:
    other_vocab = tmp_path / "model"
    AlbertForPreTraining.from_preset(
        "albert-tiny", vocab_size=500, max_position_embeddings=64
    ).save_pretrained(other_vocab)
    base = ["pretrain", "--data", str(corpus["data"]), "--output", str(tmp_path / "out"), "--max-steps", "1"]
    moved = tmp_path / "moved-data"  # data whose recorded tokenizer directory no longer exists
    shutil.copytree(corpus["data"], moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["tokenizer"]["path"] = str(tmp_path / "deleted-tokenizer")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    lost = ["pretrain", "--data", str(moved), "--output", str(tmp_path / "out"), "--max-steps", "1"]
    tokenizer = ["--tokenizer", str(corpus["tokenizer"])]
    cases = [
        (base + tokenizer + ["--model", str(other_vocab)], "vocab_size=500"),
        (lost + ["--model", str(corpus["config"])], "--tokenizer"),
        (
            base + tokenizer + ["--model", "albert-tiny", "--batch-size", "100000"],
            "fewer than one global batch",
        ),
        (base + tokenizer + ["--model", "albert-tiny", "--precision", "fp16"], "CUDA"),
        (["pretrain", "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")], "albert data"),
    ]
    if importlib.util.find_spec("tensorboard") is None:
        cases.append(
            (base + tokenizer + ["--model", "albert-tiny", "--tensorboard"], "pip install tensorboard")
        )
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(corpus, tmp_path) -> None:
    """torchrun, 2 gloo processes x batch 4 == 1 process x batch 4 x accumulation 2, with DDP and
    with FSDP (whose checkpoint is gathered to rank 0 and must not disturb the run)."""
    config = tmp_path / "no-dropout.json"
    config.write_text(json.dumps({**TINY, "hidden_dropout_prob": 0.0, "classifier_dropout_prob": 0.0}))
    args = ["pretrain", "--data", str(corpus["data"]), "--tokenizer", str(corpus["tokenizer"])]
    args += ["--model", str(config), "--max-steps", "5", "--batch-size", "4", "--log-every", "1"]
    args += [
        "--eval-data",
        str(corpus["eval"]),
        "--eval-every",
        "5",
        "--eval-batches",
        "2",
        "--save-every",
        "3",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    for name, extra in (("ddp", []), ("fsdp", ["--fsdp"])):
        done = subprocess.run(
            torchrun + ["-m", "albert"] + args + extra + ["--output", str(tmp_path / name)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert main(args + ["--output", str(tmp_path / "single"), "--grad-accum", "2"]) == 0
    single = training_records(tmp_path / "single")
    assert len(single) == 6
    for name in ("ddp", "fsdp"):
        sharded = training_records(tmp_path / name)
        assert len(sharded) == 6, name
        for a, b in zip(single, sharded, strict=True):
            assert a["step"] == b["step"] and a.get("tokens_seen") == b.get("tokens_seen")
            keys = [k for k in ("loss", "mlm_loss", "sop_loss", "mlm_accuracy", "sop_accuracy", "perplexity") if k in a]
            assert keys, (name, a["step"])  # every record has figures to compare
            for key in keys:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (name, a["step"], key)
    saved = json.loads((tmp_path / "ddp" / "checkpoints" / "step-5" / "trainer_state.json").read_text())
    assert saved["world_size"] == 2 and saved["global_batch"] == 8


def test_shuffle_word_order_moves_words_with_their_labels_and_keeps_the_frame() -> None:
    from albert.train.pretraining import shuffle_word_order

    cls, sep, pad, mask = 2, 3, 0, 4
    ids = torch.tensor(
        [[cls, 10, 11, mask, 13, sep, 14, mask, sep, pad, pad], [cls, 20, sep, 21, sep] + [pad] * 6]
    )
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[0, 7] = 12, 15
    batch = {
        "input_ids": ids,
        "labels": labels,
        "attention_mask": (ids != pad).long(),
        "token_type_ids": ids * 0,
    }
    shuffled = shuffle_word_order(batch, torch.tensor([cls, sep]), torch.Generator().manual_seed(3))
    frame = (ids == cls) | (ids == sep) | (ids == pad)
    assert torch.equal(shuffled["input_ids"][frame], ids[frame])  # specials and padding stay put
    assert shuffled["token_type_ids"] is batch["token_type_ids"] and torch.equal(batch["input_ids"], ids)
    for row in range(2):  # the same words, each still carrying its own label
        before = sorted(zip(ids[row].tolist(), labels[row].tolist(), strict=True))
        after = sorted(
            zip(shuffled["input_ids"][row].tolist(), shuffled["labels"][row].tolist(), strict=True)
        )
        assert before == after
    assert not torch.equal(shuffled["input_ids"][0], ids[0])
    masked_at = shuffled["input_ids"][0] == mask
    assert sorted(shuffled["labels"][0][masked_at].tolist()) == [12, 15]


def test_evaluate_scores_a_checkpoint_and_word_order_gain_is_zero_without_positions(
    corpus, tmp_path, capsys
) -> None:
    """`albert evaluate --data DIR` scores a pretraining checkpoint. Without position and segment
    embeddings a transformer cannot see order (its outputs just permute with its inputs), so the
    word-order gain is 0 to float precision; with strong position embeddings it is not."""
    from albert.config import AlbertConfig

    torch.manual_seed(0)
    model = AlbertForPreTraining(AlbertConfig(vocab_size=1000, **TINY))
    embeddings = model.albert.embeddings
    with torch.no_grad():
        embeddings.position_embeddings.weight.zero_()
        embeddings.token_type_embeddings.weight.zero_()
    model.save_pretrained(tmp_path / "blind")
    with torch.no_grad():
        embeddings.position_embeddings.weight.normal_(std=1.0)
    model.save_pretrained(tmp_path / "sighted")
    shutil.copy(corpus["tokenizer"] / "spiece.model", tmp_path / "sighted")  # as a checkpoint holds it

    assert main(["evaluate", "--model", str(tmp_path / "blind"), "--data", str(corpus["eval"])]) == 0
    blind = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert blind["sequences"] == len(PretrainingDataset(corpus["eval"])) > 20
    assert 0 <= blind["mlm_accuracy"] <= 1 and blind["perplexity"] > 1
    assert abs(blind["word_order_gain"]) < 1e-4, blind
    assert main(["evaluate", "--model", str(tmp_path / "sighted"), "--data", str(corpus["eval"])]) == 0
    sighted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(sighted["word_order_gain"]) > 1e-3, sighted

    from albert.modeling import AlbertForSequenceClassification

    AlbertForSequenceClassification(AlbertConfig(vocab_size=1000, **TINY)).save_pretrained(
        tmp_path / "classifier"
    )
    assert main(["evaluate", "--model", str(tmp_path / "classifier"), "--data", str(corpus["eval"])]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        "AlbertForSequenceClassification, without the masked-LM head" in error
        and len(error.splitlines()) == 1
    )


LEARNER = dict(
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=512,
    embedding_size=64,
    max_position_embeddings=64,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    classifier_dropout_prob=0.0,
)


def context_free_baselines(train_dir: Path, eval_dir: Path) -> tuple[float, float]:
    """(accuracy of always guessing the commonest masked token, perplexity of the training
    unigram distribution of masked tokens) on the held-out masked positions: what a model that
    ignores context achieves."""
    from albert.data import PretrainingDataset

    def masked_labels(directory: Path) -> torch.Tensor:
        dataset = PretrainingDataset(directory)
        labels = torch.cat([dataset[i]["labels"] for i in range(len(dataset))])
        return labels[labels != -100]

    train, held_out = masked_labels(train_dir), masked_labels(eval_dir)
    vocab = int(max(train.max(), held_out.max())) + 1
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    log_probs = (counts / counts.sum()).log()
    perplexity = float(torch.exp(-log_probs[held_out].mean()))
    accuracy = float((held_out == counts.argmax()).double().mean())
    return accuracy, perplexity


def _build_split(
    shared_data: Path, tmp_path: Path, source: str, parts: dict[str, tuple[float, float]]
) -> Path:
    """A 2000-piece tokenizer and 64-token data for slices of one shared English file; returns the tokenizer."""
    from albert.data import build_pretraining_data
    from albert.tokenizer_train import train_tokenizer

    lines = (shared_data / "pretrain" / "en" / source).read_text(encoding="utf-8").splitlines()
    for name, (start, stop) in parts.items():
        chosen = lines[start:stop]
        (tmp_path / f"{name}.txt").write_text("\n".join(chosen) + "\n", encoding="utf-8")
    tokenizer = train_tokenizer([tmp_path / "train.txt"], 2000, tmp_path / "tok", num_threads=1)
    options = dict(max_seq_length=64, max_predictions_per_seq=10, dynamic_masking=True, progress=False)
    for name in parts:
        build_pretraining_data(tokenizer, [tmp_path / f"{name}.txt"], tmp_path / name, **options)
    (tmp_path / "model.json").write_text(json.dumps(LEARNER))
    return tokenizer


def _learner_settings(tokenizer: Path) -> dict:
    return dict(
        tokenizer=str(tokenizer),
        batch_size=32,
        optimizer="adamw",
        learning_rate=1e-3,  # AdamW: LAMB's relative steps are too small for a model this size in 500 steps
        warmup_steps=30,
        save_every=10_000,
        log_every=50,
        eval_batches=100,
    )


@pytest.mark.slow
def test_tiny_model_learns_english(shared_data, tmp_path) -> None:
    """A 0.4M-parameter model, ~1 minute on 2 cores. Held out (other chapters of Austen): MLM beats
    every context-free predictor."""
    parts = {"train": (0, 6000), "eval": (9000, 9600)}
    tokenizer = _build_split(shared_data, tmp_path, "austen.txt", parts)
    summary = pretrain(
        str(tmp_path / "train"),
        str(tmp_path / "model.json"),
        str(tmp_path / "run"),
        eval_data=str(tmp_path / "eval"),
        max_steps=500,
        eval_every=500,
        **_learner_settings(tokenizer),
    )
    held_out = summary["eval"]
    guess_accuracy, unigram_perplexity = context_free_baselines(tmp_path / "train", tmp_path / "eval")
    print(
        f"held out: {held_out}; guess accuracy {guess_accuracy:.4f}, unigram perplexity {unigram_perplexity:.1f}"
    )
    assert held_out["sequences"] > 300
    assert held_out["mlm_accuracy"] > guess_accuracy + 0.01, (held_out, guess_accuracy)
    assert held_out["perplexity"] < 0.95 * unigram_perplexity, (held_out, unigram_perplexity)
    assert math.isfinite(held_out["word_order_gain"])


@pytest.mark.slow
def test_tiny_model_learns_sentence_order(shared_data, tmp_path) -> None:
    """Held-out SOP above chance within a few minutes. Fortune-cookie entries (train: the first
    half of the file, held out: the last tenth) have real discourse order - set-up before
    punch line, the "-- Author" attribution last - which a 0.4M-parameter model picks up in a
    couple of hundred steps (Austen's and the Bible's order cues take thousands)."""
    tokenizer = _build_split(
        shared_data, tmp_path, "fortunes.txt", {"train": (0, 32_422), "eval": (58_360, 64_845)}
    )
    summary = pretrain(
        str(tmp_path / "train"),
        str(tmp_path / "model.json"),
        str(tmp_path / "run"),
        eval_data=str(tmp_path / "eval"),
        max_steps=200,
        eval_every=200,
        **_learner_settings(tokenizer),
    )
    held_out = summary["eval"]
    print(f"held out: {held_out}")
    # ~1,500 held-out pairs, balanced: chance is 0.5 +- 0.013 (one standard deviation)
    assert held_out["sequences"] > 1000
    assert held_out["sop_accuracy"] > 0.6, held_out
