"""The training utilities (albert/train/) and the pretraining sampler, without a model."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from albert.errors import AlbertError
from albert.train.checkpoints import COMPLETE_MARKER, CheckpointDirectory
from albert.train.data import epoch_order, micro_batches, split_held_out
from albert.train.metrics import MetricsLog, read_metrics
from albert.train.precision import resolve_precision
from albert.train.rng import capture_rng_state, restore_rng_state


def test_one_process_with_accumulation_sees_what_k_processes_see() -> None:
    order = epoch_order(np.arange(100), seed=3, epoch=0)
    single = micro_batches(order, 0, batch_size=4, grad_accum=3, rank=0, world_size=1)
    ranks = [micro_batches(order, 0, batch_size=4, grad_accum=1, rank=r, world_size=3) for r in range(3)]
    # step s: micro-batch a of the single process == rank a's micro-batch
    assert len(single) == 3 * len(ranks[0]) == 3 * (100 // 12)
    for step in range(len(ranks[0])):
        assert [single[3 * step + a] for a in range(3)] == [ranks[a][step] for a in range(3)]
    used = [i for batch in single for i in batch]
    assert len(used) == len(set(used)) == 96  # each index at most once; the ragged tail is dropped


def test_resuming_mid_epoch_continues_the_same_sequence() -> None:
    order = epoch_order(np.arange(50), seed=1, epoch=2)
    full = micro_batches(order, 0, batch_size=5, grad_accum=2, rank=0, world_size=1)
    tail = micro_batches(order, 20, batch_size=5, grad_accum=2, rank=0, world_size=1)
    assert tail == full[4:]


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    indices = np.arange(10, 40)
    assert np.array_equal(epoch_order(indices, 7, 1), epoch_order(indices, 7, 1))
    assert not np.array_equal(epoch_order(indices, 7, 1), epoch_order(indices, 7, 2))
    assert sorted(epoch_order(indices, 7, 1).tolist()) == indices.tolist()


def test_held_out_split_is_disjoint_and_seeded() -> None:
    train, held = split_held_out(200, 0.05, seed=4)
    assert len(held) == 10 and not set(train) & set(held) and len(train) + len(held) == 200
    assert np.array_equal(held, split_held_out(200, 0.05, seed=4)[1])
    assert len(split_held_out(200, 0.0, seed=4)[1]) == 0
    with pytest.raises(AlbertError, match="no training data"):
        split_held_out(1, 0.9, seed=0)


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path) -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    state = capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    torch.save(state, tmp_path / "rng.pt")
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[0] == again[0] and expected[1] == again[1] and torch.equal(expected[2], again[2])


def _write(files: dict[str, bytes]):
    def write(directory):
        for name, data in files.items():
            (directory / name).write_bytes(data)

    return write


def test_checkpoints_are_complete_or_absent_and_pruned(tmp_path) -> None:
    checkpoints = CheckpointDirectory(tmp_path, keep=2)
    for step in (1, 2, 3):
        checkpoints.save(step, _write({"weights.bin": bytes(step * 10)}))
    complete, incomplete = checkpoints.scan()
    assert [c.step for c in complete] == [2, 3] and not incomplete
    marker = json.loads((tmp_path / "step-3" / COMPLETE_MARKER).read_text())
    assert marker["files"] == {"weights.bin": 30}

    def failing(directory):
        (directory / "weights.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        checkpoints.save(4, failing)
    assert not (tmp_path / "step-4").exists() and not list(tmp_path.glob(".tmp-*"))

    (tmp_path / "step-3" / "weights.bin").write_bytes(b"short")  # truncated after the marker
    assert "truncated" in CheckpointDirectory.problem(tmp_path / "step-3")
    reports: list[str] = []
    assert checkpoints.latest(report=reports.append).step == 2
    assert "step-3" in reports[0]
    with pytest.raises(AlbertError, match="at least 1"):
        CheckpointDirectory(tmp_path, keep=0)


def test_metrics_log_drops_steps_after_the_resumed_checkpoint(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 6):
        log.write({"step": step, "loss": float(step)})
    log.write({"step": 6, "loss": float("nan")})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 7, "lo')  # torn by a crash
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3, 4, 5, 6]
    assert read_metrics(path)[-1]["loss"] is None  # NaN is written as null: the file stays valid JSON
    MetricsLog(path, resume_step=3).close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_precision_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training on a CPU follows inference's rule (albert.hardware), forced here both ways."""
    cpu = torch.device("cpu")
    monkeypatch.setenv("ALBERT_NATIVE_BF16", "1")
    assert resolve_precision("auto", cpu).dtype == resolve_precision("bf16", cpu).dtype == torch.bfloat16
    assert "auto: this CPU has native bf16" in resolve_precision("auto", cpu).description
    assert resolve_precision("fp32", cpu).dtype is None
    monkeypatch.setenv("ALBERT_NATIVE_BF16", "0")
    auto = resolve_precision("auto", cpu)
    assert auto.dtype is None and auto.description == "precision fp32 (auto: this CPU has no native bf16)"
    with pytest.raises(AlbertError, match="no native bf16.*--precision fp32"):
        resolve_precision("bf16", cpu)
    with pytest.raises(AlbertError, match="CUDA"):
        resolve_precision("fp16", cpu)
    with pytest.raises(AlbertError, match="unknown precision"):
        resolve_precision("fp8", cpu)
