"""`albert distill`: MiniLMv2 relation distillation of small random BERTs into ALBERT students."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_convert_bert import WORDS, make_teacher  # noqa: E402
from test_finetune_fixtures import one_thread  # noqa: E402, F401  (autouse: tiny models, one thread)

import albert.train.loop as loop_module  # noqa: E402
from albert.checkpoint import build_model  # noqa: E402
from albert.cli import main  # noqa: E402
from albert.convert_bert import convert_bert, read_teacher, teacher_reference  # noqa: E402
from albert.distill import distill  # noqa: E402
from albert.errors import AlbertError  # noqa: E402
from albert.modeling import AlbertForPreTraining, AlbertForSequenceClassification  # noqa: E402
from albert.train.distillation import LastLayerTap, hidden_mse, relation_kl  # noqa: E402
from albert.train.metrics import read_metrics  # noqa: E402

PROBE = ["the movie was good and the story was funny", "who has seen the water"]
FAST = dict(
    max_seq_length=32,
    batch_size=8,
    log_every=1,
    eval_every=0,
    save_every=100,
    warmup_steps=2,
    learning_rate=3e-3,
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distill")


@pytest.fixture(scope="module")
def corpus(root: Path) -> Path:
    """~15 KB of documents made of the teacher's vocabulary (so no [UNK]s), blank-line separated."""
    rng = random.Random(0)
    documents = []
    for _ in range(40):
        sentences = [" ".join(rng.choices(WORDS, k=rng.randint(5, 10))).capitalize() + "." for _ in range(8)]
        documents.append("\n".join(sentences))
    path = root / "corpus.txt"
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def teacher(root: Path) -> Path:
    """4 heads of 8, 3 layers; dropout on, so the student trains with dropout (resume must restore RNGs)."""
    return make_teacher(root / "teacher", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)


@pytest.fixture(scope="module")
def student(root: Path, teacher: Path) -> Path:
    convert_bert(teacher, root / "student", embedding_size=16, share="all", probe_texts=PROBE)
    return root / "student"


def records(output: Path, evaluation: bool = False) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k != "tokens_per_second"}
        for r in read_metrics(output / "metrics.jsonl")
        if bool(r.get("eval")) == evaluation
    ]


# ----------------------------------------------------------------------------------------
# the loss


def test_relation_kl_matches_a_direct_computation_and_ignores_padding() -> None:
    torch.manual_seed(0)
    t, s = torch.randn(2, 5, 12), torch.randn(2, 5, 8)  # different widths: relations are T x T
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    heads = 4
    expected, count = 0.0, 0
    for b in range(2):
        n = int(mask[b].sum())
        for h in range(heads):
            rt = t[b, :n].view(n, heads, -1)[:, h]
            rs = s[b, :n].view(n, heads, -1)[:, h]
            p = (rt @ rt.T / (rt.shape[-1] ** 0.5)).softmax(-1)
            q = (rs @ rs.T / (rs.shape[-1] ** 0.5)).softmax(-1)
            expected += (p * (p.log() - q.log())).sum().item()
            count += n
    assert relation_kl(t, s, heads, mask).item() == pytest.approx(expected / count, rel=1e-5)
    # padding positions carry no weight: garbage there changes nothing
    t2, s2 = t.clone(), s.clone()
    t2[1, 3:], s2[1, 3:] = 100.0, -100.0
    assert relation_kl(t2, s2, heads, mask).item() == pytest.approx(expected / count, rel=1e-5)
    assert relation_kl(t, t, heads, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert hidden_mse(t, t + 0.5, mask).item() == pytest.approx(0.25)


def test_tap_reads_the_last_application_of_a_shared_layer(student: Path) -> None:
    """With share="all" the one block runs L times; the tap must report the L-th: its output is
    the model's last hidden state, and its Q/K/V are the block's projections of layer L-1's output."""
    model = build_model(AlbertForPreTraining, student).eval()
    tap = LastLayerTap(model)
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    with torch.no_grad():
        out = model.albert(ids, output_hidden_states=True)
    (q, k, v), hidden = tap.take()
    assert tap.applications == model.config.num_hidden_layers
    torch.testing.assert_close(hidden, out.last_hidden_state)
    attention = tap.attention
    before_last = out.hidden_states[-2]
    torch.testing.assert_close(q, attention.query(before_last))
    torch.testing.assert_close(v, attention.value(before_last))
    tap.remove()


# ----------------------------------------------------------------------------------------
# runs


def test_relations_are_zero_when_the_student_is_the_teacher(root: Path, corpus: Path) -> None:
    """E = H, nothing shared, no dropout: the converted student IS the teacher, so every relation
    KL and the hidden MSE of the first step (before any update) must vanish; a factorised
    student on the same data must not."""
    plain_teacher = make_teacher(root / "plain-teacher", seed=3)
    exact = root / "exact-student"
    convert_bert(plain_teacher, exact, embedding_size=32, share="none", probe_texts=PROBE)
    lossy = root / "lossy-student"
    convert_bert(plain_teacher, lossy, embedding_size=8, share="all", probe_texts=PROBE)
    # fp32: the identity is exact only there (under bf16 autocast the transformers teacher
    # normalises in bf16 and the student in fp32, so the relations differ by rounding)
    options = {**FAST, "max_steps": 1, "precision": "fp32"}
    distill(plain_teacher, exact, [corpus], root / "exact-run", **options)
    distill(plain_teacher, lossy, [root / "exact-run" / "data"], root / "lossy-run", **options)
    first = records(root / "exact-run")[0]
    for name in ("qq_kl", "kk_kl", "vv_kl", "relation_loss"):
        assert first[name] == pytest.approx(0.0, abs=1e-6), name
    assert first["hidden_mse"] == pytest.approx(0.0, abs=1e-10)
    lossy_first = records(root / "lossy-run")[0]
    assert min(lossy_first[name] for name in ("qq_kl", "kk_kl", "vv_kl")) > 1e-3
    assert lossy_first["hidden_mse"] > 1e-3


def test_distillation_learns_and_writes_fine_tunable_checkpoints(
    root: Path, teacher: Path, student: Path, corpus: Path
) -> None:
    out = root / "learn"
    summary = distill(
        teacher, student, corpus, out, **{**FAST, "max_steps": 40, "eval_every": 20, "eval_batches": 2}
    )
    assert summary["step"] == 40 and summary["interrupted"] is None
    train = records(out)
    assert [r["step"] for r in train] == list(range(1, 41))
    assert {"loss", "qq_kl", "kk_kl", "vv_kl", "hidden_mse", "learning_rate"} <= set(train[0])
    assert all(r["mlm_loss"] == 0.0 for r in train)
    for r in train:  # the objective is the mean relation KL plus the hidden MSE (weight 1)
        assert r["loss"] == pytest.approx(
            (r["qq_kl"] + r["kk_kl"] + r["vv_kl"]) / 3 + r["hidden_mse"], rel=1e-5
        )
    early = sum(r["loss"] for r in train[:5]) / 5
    late = sum(r["loss"] for r in train[-5:]) / 5
    assert late < 0.7 * early, (early, late)
    evals = records(out, evaluation=True)
    assert [r["step"] for r in evals] == [20, 40]
    assert evals[1]["loss"] < evals[0]["loss"]
    assert "tokens_per_second" in read_metrics(out / "metrics.jsonl")[0]

    checkpoint = Path(summary["checkpoint"])
    assert checkpoint == out / "checkpoints" / "step-40"
    assert (checkpoint / "vocab.txt").read_bytes() == (teacher / "vocab.txt").read_bytes()
    classifier = build_model(AlbertForSequenceClassification, checkpoint)
    trained = build_model(AlbertForPreTraining, checkpoint)
    original = build_model(AlbertForPreTraining, student)
    torch.testing.assert_close(classifier.albert.encoder.state_dict(), trained.albert.encoder.state_dict())
    assert not torch.equal(
        trained.albert.encoder.embedding_hidden_mapping_in.weight,
        original.albert.encoder.embedding_hidden_mapping_in.weight,
    )
    # the teacher is never saved into the student's checkpoint
    assert json.loads((checkpoint / "config.json").read_text())["embedding_size"] == 16


def test_resume_after_sigint_reproduces_the_straight_run_and_reuses_the_data(
    root: Path, teacher: Path, student: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop at step 10 (SIGINT), resume to 18 (past the epoch boundary at 15, with dropout on):
    every logged loss, learning rate and eval record equals the straight run's."""
    options = {**FAST, "max_steps": 18, "eval_every": 5, "eval_batches": 1, "save_every": 4}
    distill(teacher, student, [corpus], root / "straight", **options)

    build = loop_module.build_pretraining_model

    def build_with_interrupt(*args, **kwargs):
        model = build(*args, **kwargs)
        calls = [0]

        def on_forward(module, inputs, output):
            calls[0] += module.training
            if module.training and calls[0] == 10:
                os.kill(os.getpid(), signal.SIGINT)

        model.register_forward_hook(on_forward)
        return model

    monkeypatch.setattr(loop_module, "build_pretraining_model", build_with_interrupt)
    first = distill(teacher, student, [corpus], root / "resumed", **options)
    assert first["interrupted"] == "SIGINT" and first["step"] == 10
    monkeypatch.undo()
    data_manifest = root / "resumed" / "data" / "manifest.json"
    built_at = data_manifest.stat().st_mtime_ns
    second = distill(teacher, student, [corpus], root / "resumed", **options, resume=True)
    assert second["step"] == 18 and second["interrupted"] is None
    assert data_manifest.stat().st_mtime_ns == built_at  # reused, not rebuilt
    straight = records(root / "straight")
    assert [r["step"] for r in straight] == list(range(1, 19)) and straight[-1]["epoch"] == 1
    for evaluation in (False, True):
        assert records(root / "resumed", evaluation) == records(root / "straight", evaluation)
    with pytest.raises(AlbertError, match="other inputs"):
        distill(teacher, student, [corpus], root / "resumed", **{**options, "seed": 7}, resume=True)


def test_bf16_distillation_keeps_fp32_weights_and_follows_the_fp32_run(
    root: Path, teacher: Path, student: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--precision bf16` (forced, so on any CPU): teacher and student forwards under bf16
    autocast, relation and hidden losses in fp32, fp32 master weights in the checkpoint; the
    losses differ from the fp32 run's (autocast ran) by little."""
    monkeypatch.setenv("ALBERT_NATIVE_BF16", "1")
    options = {**FAST, "max_steps": 8, "mlm_weight": 0.0}
    curves = {}
    for precision in ("fp32", "bf16"):
        summary = distill(
            teacher, student, [corpus], root / f"precision-{precision}", **options, precision=precision
        )
        curves[precision] = [r["loss"] for r in records(root / f"precision-{precision}")]
        weights = build_model(AlbertForPreTraining, Path(summary["checkpoint"])).parameters()
        assert {p.dtype for p in weights} == {torch.float32}
    assert curves["bf16"] != curves["fp32"]
    assert max(abs(a - b) / a for a, b in zip(curves["fp32"], curves["bf16"], strict=True)) < 0.01, curves


def test_mlm_objective_with_a_masked_lm_teacher(root: Path, corpus: Path) -> None:
    mlm_teacher = make_teacher(root / "mlm-teacher", "BertForMaskedLM", seed=1)
    assert read_teacher(mlm_teacher).has_mlm_head
    mlm_student = root / "mlm-student"
    convert_bert(mlm_teacher, mlm_student, embedding_size=16, share="all", probe_texts=PROBE)
    out = root / "mlm-run"
    distill(mlm_teacher, mlm_student, [corpus], out, **{**FAST, "max_steps": 20, "mlm_weight": 0.5})
    train = records(out)
    for r in train:
        relation = (r["qq_kl"] + r["kk_kl"] + r["vv_kl"]) / 3
        assert r["loss"] == pytest.approx(relation + r["hidden_mse"] + 0.5 * r["mlm_loss"], rel=1e-5)
    assert all(r["mlm_loss"] > 0 for r in train)
    assert sum(r["mlm_loss"] for r in train[-5:]) < sum(r["mlm_loss"] for r in train[:5])


# ----------------------------------------------------------------------------------------
# errors and the CLI


def test_user_errors(root: Path, teacher: Path, student: Path, corpus: Path) -> None:
    other = root / "other-vocab"
    shutil.copytree(student, other)
    vocab = (other / "vocab.txt").read_text(encoding="utf-8").split("\n")
    vocab[40] = "zzz"
    (other / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    with pytest.raises(AlbertError, match="different vocab.txt.*convert-bert"):
        distill(teacher, other, [corpus], root / "err1", **FAST)
    (other / "vocab.txt").unlink()
    with pytest.raises(AlbertError, match="has no vocab.txt"):
        distill(teacher, other, [corpus], root / "err2", **FAST)

    gpt2 = root / "gpt2"
    gpt2.mkdir()
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50).save_pretrained(gpt2)
    shutil.copy(teacher / "vocab.txt", gpt2 / "vocab.txt")
    with pytest.raises(AlbertError, match=r"model_type='gpt2'.*supports bert"):
        distill(gpt2, student, [corpus], root / "err3", **FAST)
    with pytest.raises(AlbertError, match="MLM head"):
        distill(teacher, student, [corpus], root / "err4", **FAST, mlm_weight=1.0)
    with pytest.raises(AlbertError, match="relation-heads 3 must divide"):
        distill(teacher, student, [corpus], root / "err5", **FAST, relation_heads=3)
    with pytest.raises(AlbertError, match="not a model directory"):
        distill(teacher, root / "missing", [corpus], root / "err6", **FAST)
    assert not any((root / f"err{i}" / "checkpoints").exists() for i in range(1, 7))


def test_cli_end_to_end(root: Path, teacher: Path, student: Path, corpus: Path, capsys) -> None:
    out = root / "cli"
    argv = ["distill", "--teacher", str(teacher), "--student", str(student), "--data", str(corpus)]
    argv += ["--output", str(out), "--max-steps", "3", "--batch-size", "4", "--max-seq-length", "32"]
    argv += ["--eval-every", "3", "--eval-batches", "1", "--log-every", "1", "--optimizer", "lamb"]
    assert main(argv) == 0
    assert f"student checkpoint {out / 'checkpoints' / 'step-3'}" in capsys.readouterr().out
    assert [r["step"] for r in records(out)] == [1, 2, 3]
    assert records(out, evaluation=True)[0]["step"] == 3
    assert main(["plot", str(out)]) == 0  # distillation curves: relations, not accuracies
    assert (out / "curves.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(argv) == 2  # the run exists: a second start without --resume is refused
    assert "pass --resume" in capsys.readouterr().err
    reference = teacher_reference(read_teacher(teacher))  # still an exact, loadable teacher
    assert reference.config.hidden_size == 32
