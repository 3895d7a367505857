"""The training loop under faults and changed flags: a diverging run saves nothing, a full disk
loses nothing, and `--resume` says what it does with flags that differ from the run's."""

from __future__ import annotations

import errno
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from test_finetune_fixtures import one_thread  # noqa: F401  (autouse: tiny models, one thread)
from test_pretrain import corpus, run, training_records, with_forward_hook  # noqa: F401  (fixture)

from albert.cli import main
from albert.errors import AlbertError
from albert.modeling import AlbertForPreTraining
from albert.pretrain import pretrain
from albert.train.checkpoints import CheckpointDirectory

FAST = dict(eval_every=0, save_every=2, keep=5, max_steps=6)


def cli(corpus: dict[str, Path], output: Path, *options: str) -> list[str]:
    args = ["pretrain", "--data", str(corpus["data"]), "--tokenizer", str(corpus["tokenizer"])]
    args += ["--model", str(corpus["config"]), "--output", str(output), "--batch-size", "8"]
    return args + ["--eval-every", "0", "--log-every", "1", *options]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line of an error that stopped a run, after the run's opening precision line."""
    lines = capsys.readouterr().err.strip().splitlines()
    if lines and lines[0].startswith("albert pretrain: precision "):
        lines = lines[1:]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def test_a_diverging_run_saves_nothing_and_says_which_step_went_bad(
    corpus, tmp_path, capsys, monkeypatch
) -> None:
    """The loss goes NaN at step 2 and stays so: no periodic save (step 3), no final save (step 6),
    exit 2 with the step and the advice; fp32 advice only where the run is not fp32 already."""
    monkeypatch.setenv("ALBERT_NATIVE_BF16", "1")  # bf16 on any CPU (emulated where not native)
    diverging = ["--max-steps", "6", "--lr", "1e6", "--optimizer", "adamw", "--save-every", "3"]
    for precision, advice in (("fp32", False), ("bf16", True)):
        out = tmp_path / precision
        assert main(cli(corpus, out, *diverging, "--precision", precision)) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()[-1]  # after the per-step warnings
        assert "NaN/inf since step 2 (through step 6)" in err and "stopped without saving" in err, err
        assert "Lower --learning-rate" in err and ("--precision fp32" in err) == advice, err
        assert not (out / "checkpoints").exists() and "done:" not in captured.out


def test_weights_that_are_not_finite_are_never_saved(corpus, tmp_path, monkeypatch) -> None:
    """An update that leaves an inf in the weights while the step's loss was finite: the periodic
    save at that step refuses, and the earlier checkpoint stays the newest."""

    def poison_after_forward(module, call, output):
        if (
            call == 4
        ):  # after the forward, in a table whose gradient needs no weights: loss and gradients stay finite
            module.albert.embeddings.position_embeddings.weight.data[60] = float("inf")
        return output

    with_forward_hook(monkeypatch, poison_after_forward)
    with pytest.raises(AlbertError, match=r"step 4's update made the weights NaN/inf.*step-2"):
        run(corpus, tmp_path / "run", **FAST)
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-2"]


def test_disk_full_while_saving_loses_nothing_and_resume_is_exact(
    corpus, tmp_path, monkeypatch, capsys
) -> None:
    straight = tmp_path / "straight"
    assert main(cli(corpus, straight, "--max-steps", "6", "--save-every", "2")) == 0
    faulty = tmp_path / "faulty"
    save = torch.save

    def full_disk(obj, path, *args, **kwargs):
        if str(path).endswith("optimizer.pt") and ".tmp-step-4-" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(cli(corpus, faulty, "--max-steps", "6", "--save-every", "2")) == 2
    err = one_error_line(capsys)
    root = faulty / "checkpoints"
    assert "optimizer.pt" in err and os.strerror(errno.ENOSPC) in err, err
    assert f"{root / 'step-2'} is intact" in err and "--resume" in err, err
    monkeypatch.undo()
    assert [p.name for p in root.iterdir()] == ["step-2"]  # no temporary directory left
    assert CheckpointDirectory.problem(root / "step-2") is None
    AlbertForPreTraining.from_pretrained(root / "step-2")

    assert main(cli(corpus, faulty, "--max-steps", "6", "--save-every", "2", "--resume")) == 0
    expected, got = training_records(straight), training_records(faulty)
    assert [r["step"] for r in got] == list(range(1, 7))
    for a, b in zip(expected, got, strict=True):
        for key in a:
            assert b[key] == (
                pytest.approx(a[key], rel=1e-6, abs=1e-7) if isinstance(a[key], float) else a[key]
            )


def test_resume_says_which_flags_differ_and_what_the_run_keeps(corpus, tmp_path, monkeypatch, capsys) -> None:
    """--model and --seed: the run keeps its own (the checkpoint's weights, the data order its seed
    fixes), so the continuation is still exact; a new --learning-rate applies from the resumed step."""
    straight = run(corpus, tmp_path / "straight", **FAST)
    assert straight["step"] == 6

    def interrupt(module, call, output):
        if call == 4:
            os.kill(os.getpid(), signal.SIGINT)

    with_forward_hook(monkeypatch, interrupt)
    assert run(corpus, tmp_path / "resumed", **FAST)["step"] == 4
    monkeypatch.undo()
    shutil.copytree(tmp_path / "resumed", tmp_path / "slower")
    shutil.copytree(tmp_path / "resumed", tmp_path / "longer")
    capsys.readouterr()

    settings = dict(
        tokenizer=str(corpus["tokenizer"]), eval_data=str(corpus["eval"]), batch_size=8, log_every=1
    )
    settings |= dict(
        learning_rate=2e-3, warmup_steps=3, resume=True, seed=7
    )  # test_pretrain.run's, but the seed
    pretrain(str(corpus["data"]), "albert-tiny", str(tmp_path / "resumed"), **FAST, **settings)
    printed = capsys.readouterr().out
    assert "the run keeps --seed 12345 (--seed 7 is ignored)" in printed, printed
    assert f"the run keeps --model {corpus['config']} (--model albert-tiny is ignored)" in printed, printed
    expected, got = training_records(tmp_path / "straight"), training_records(tmp_path / "resumed")
    for a, b in zip(expected, got, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6) and b["learning_rate"] == a["learning_rate"]

    run(corpus, tmp_path / "slower", **FAST, resume=True, learning_rate=1e-3)
    printed = capsys.readouterr().out
    assert "--learning-rate 0.001 replaces the run's 0.002 from step 4 on" in printed, printed
    slower = training_records(tmp_path / "slower")
    assert [r["learning_rate"] for r in slower[:4]] == [r["learning_rate"] for r in expected[:4]]
    for a, b in zip(expected[4:], slower[4:], strict=True):
        assert b["learning_rate"] == pytest.approx(a["learning_rate"] / 2, rel=1e-9)

    # a longer run: the decay that was to end at step 6 is re-spread to end at step 10 (the rate
    # logged at step s is the one its update used, set after step s - 1)
    assert run(corpus, tmp_path / "longer", **{**FAST, "max_steps": 10}, resume=True)["step"] == 10
    printed = capsys.readouterr().out
    assert "--max-steps 10 replaces the run's 6 from step 4 on" in printed, printed
    longer = training_records(tmp_path / "longer")
    assert [r["learning_rate"] for r in longer[:4]] == [r["learning_rate"] for r in expected[:4]]
    peak, warmup = 2e-3, 3  # test_pretrain.run's
    assert [r["learning_rate"] for r in longer[4:]] == pytest.approx(
        [peak * (10 - step) / (10 - warmup) for step in range(4, 10)], rel=1e-9
    )
