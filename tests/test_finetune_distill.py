"""Task-specific distillation: `albert finetune --teacher DIR` (soft targets from a fine-tuned model)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import (  # noqa: F401
    NER_SENTENCES,
    cli_json,
    finetune_tiny,
    one_thread,
    sentiment_rows,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_conll,
    write_csv,
)

from albert.errors import AlbertError
from albert.finetune import FinetuneConfig, soft_target_loss, train_step


def test_soft_target_loss_matches_hand_computed_kl():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # softmax = (0.75, 0.25)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert soft_target_loss(student, teacher, 1.0, None).item() == pytest.approx(expected, rel=1e-6)
    # T = 2 compares softmax(z / 2) and multiplies by T^2 = 4
    half = 0.5 * math.log(3.0)
    p = math.exp(half) / (math.exp(half) + 1)
    expected_t2 = 4 * (p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5))
    assert soft_target_loss(student, teacher, 2.0, None).item() == pytest.approx(expected_t2, rel=1e-6)


@pytest.mark.parametrize("problem", [None, "regression", "multi_label_classification"])
def test_soft_target_loss_is_minimal_where_the_student_equals_the_teacher(problem):
    torch.manual_seed(0)
    teacher = torch.randn(4, 3)
    at_teacher = teacher.clone().requires_grad_(True)
    loss = soft_target_loss(at_teacher, teacher, 2.0, problem)
    loss.backward()
    assert at_teacher.grad is not None and at_teacher.grad.abs().max().item() < 1e-6
    elsewhere = soft_target_loss(teacher + torch.randn(4, 3), teacher, 2.0, problem)
    assert elsewhere.item() > loss.item() + 1e-3


def test_soft_target_loss_keeps_only_selected_positions():
    teacher = torch.zeros(1, 3, 2)
    student = torch.tensor([[[0.0, 0.0], [5.0, -5.0], [0.0, 0.0]]])
    keep = torch.tensor([[True, False, True]])
    assert soft_target_loss(student, teacher, 1.0, None, keep).item() == pytest.approx(0.0, abs=1e-7)
    assert soft_target_loss(student, teacher, 1.0, None).item() > 0.1


def _inputs(tokenizer, kind: str) -> dict[str, np.ndarray]:
    texts = ["a good film", "a dull and boring story it was"]
    if kind == "AlbertForMultipleChoice":
        endings = ["it was good", "it was bad", "the end"]
        batch = dict(
            tokenizer([t for t in texts for _ in endings], endings * 2, padding=True, return_tensors="np")
        )
        batch = {k: v.reshape(2, 3, -1) for k, v in batch.items()}
        return {**batch, "labels": np.array([0, 2])}
    batch = dict(tokenizer(texts, padding=True, return_tensors="np"))
    if kind == "AlbertForTokenClassification":
        labels = np.where(batch["attention_mask"] == 1, 1, -100)
        labels[:, 0] = -100
        return {**batch, "labels": labels}
    if kind == "AlbertForQuestionAnswering":
        return {**batch, "start_positions": np.array([1, 2]), "end_positions": np.array([2, 3])}
    return {**batch, "labels": np.array([1, 0])}


@pytest.mark.parametrize(
    "kind",
    [
        "AlbertForSequenceClassification",
        "AlbertForTokenClassification",
        "AlbertForQuestionAnswering",
        "AlbertForMultipleChoice",
    ],
)
def test_train_step_mixes_the_task_loss_and_the_teacher(kind, tiny_config, tokenizer):
    """alpha = 0: the task loss alone; a teacher identical to the student adds exactly nothing;
    a different teacher adds its soft-target distance, weighted by alpha."""
    from albert.config import AlbertConfig
    from albert.modeling import MODEL_CLASSES

    torch.manual_seed(0)
    config = AlbertConfig.from_json_file(
        tiny_config, num_labels=3 if kind != "AlbertForQuestionAnswering" else 2
    )
    config.classifier_dropout_prob = 0.0
    batch = _inputs(tokenizer, kind)

    def first_loss(teacher, alpha: float) -> float:
        torch.manual_seed(1)
        student = MODEL_CLASSES[kind](config)
        student.train()
        optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        settings = FinetuneConfig("", "", "", "", "", distill_alpha=alpha, distill_temperature=2.0)
        return train_step(student, batch, optimizer, scheduler, 1.0, teacher, settings)

    torch.manual_seed(1)
    same = MODEL_CLASSES[kind](config).eval()
    torch.manual_seed(2)
    other = MODEL_CLASSES[kind](config).eval()
    head = other.qa_outputs if kind == "AlbertForQuestionAnswering" else other.classifier
    head.weight.data *= 50  # confident teacher logits: a clearly non-zero distance
    if getattr(other.albert, "pooler", None) is not None:  # pooled [CLS] barely varies at random init
        other.albert.pooler.weight.data *= 50
    task_loss = first_loss(None, 0.5)
    assert first_loss(other, 0.0) == pytest.approx(task_loss, rel=1e-6)
    assert first_loss(same, 0.5) == pytest.approx(0.5 * task_loss, rel=1e-5)
    assert first_loss(same, 1.0) == pytest.approx(0.0, abs=1e-6)
    assert first_loss(other, 1.0) > 1e-4  # vs <= 1e-6 for the identical teacher
    mixed = first_loss(other, 0.25)
    assert mixed == pytest.approx(0.75 * task_loss + 0.25 * first_loss(other, 1.0), rel=1e-5)


def test_student_learns_the_teacher_even_from_wrong_labels(tmp_path, tokenizer_dir, tiny_config, capsys):
    """With alpha = 1 only the teacher's soft targets train the student: on a training file whose
    labels are all flipped, the student still learns the teacher's (correct) decision."""
    rows = sentiment_rows(64, 0)
    train = write_csv(tmp_path / "train.csv", ["label", "text"], rows)
    flipped = write_csv(tmp_path / "flipped.csv", ["label", "text"], [(str(1 - int(y)), t) for y, t in rows])
    dev = write_csv(tmp_path / "dev.csv", ["label", "text"], sentiment_rows(32, 1))
    teacher = tmp_path / "teacher"
    taught = finetune_tiny(
        "text-classification", train, dev, tiny_config, tokenizer_dir, teacher, epochs=6, max_steps=48
    )
    assert taught["score"] >= 0.9, taught  # precondition: the teacher knows the task

    common = ["--task", "text-classification", "--train", str(flipped), "--dev", str(dev)]
    common += ["--model", str(tiny_config), "--tokenizer", str(tokenizer_dir), "--max-seq-length", "64"]
    common += ["--epochs", "6", "--batch-size", "8", "--learning-rate", "3e-3", "--seed", "3"]
    distilled = cli_json(
        capsys,
        "finetune",
        *common,
        "--output",
        str(tmp_path / "distilled"),
        "--teacher",
        str(teacher),
        "--distill-alpha",
        "1",
    )
    plain = cli_json(capsys, "finetune", *common, "--output", str(tmp_path / "plain"))
    assert distilled["score"] >= 0.85, distilled
    assert plain["score"] <= 0.5, plain  # the flipped labels alone teach the opposite
    args = json.loads((tmp_path / "distilled" / "finetune_args.json").read_text())
    assert args["teacher"] == str(teacher) and args["distill_alpha"] == 1.0


def test_token_classification_with_a_teacher(tmp_path, tokenizer_dir, tiny_config):
    train = write_conll(tmp_path / "train.conll", NER_SENTENCES * 4)
    teacher = tmp_path / "teacher"
    finetune_tiny("token-classification", train, train, tiny_config, tokenizer_dir, teacher, max_steps=10)
    result = finetune_tiny(
        "token-classification",
        train,
        train,
        tiny_config,
        tokenizer_dir,
        tmp_path / "student",
        max_steps=10,
        epochs=5,
        teacher=str(teacher),
    )
    assert result["metric"] == "f1" and result["steps"] == 10


def test_teacher_errors_are_clear(tmp_path, tokenizer_dir, tiny_config):
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(16, 0))
    words = write_csv(
        tmp_path / "words.csv",
        ["label", "text"],
        [("pos" if y == "1" else "neg", t) for y, t in sentiment_rows(16, 0)],
    )
    teacher = tmp_path / "teacher"
    finetune_tiny("text-classification", words, words, tiny_config, tokenizer_dir, teacher, max_steps=2)

    def student(teacher_dir, **kwargs):
        return finetune_tiny(
            "text-classification",
            train,
            train,
            tiny_config,
            tokenizer_dir,
            tmp_path / "student",
            max_steps=2,
            teacher=str(teacher_dir),
            **kwargs,
        )

    with pytest.raises(AlbertError, match="predicts labels .*same task and label set"):
        student(teacher)
    with pytest.raises(AlbertError, match="not a model directory"):
        student(tmp_path / "nowhere")
    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(teacher, other_vocab)
    for name in ("spiece.model", "tokenizer_config.json", "special_tokens_map.json"):
        (other_vocab / name).unlink(missing_ok=True)
    (other_vocab / "vocab.txt").write_text(
        "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\nbad\n", encoding="utf-8"
    )
    with pytest.raises(AlbertError, match="tokenises differently"):
        student(other_vocab)
    with pytest.raises(AlbertError, match="not fine-tuned for token-classification"):
        finetune_tiny(
            "token-classification",
            write_conll(tmp_path / "ner.conll", NER_SENTENCES),
            tmp_path / "ner.conll",
            tiny_config,
            tokenizer_dir,
            tmp_path / "student",
            teacher=str(teacher),
        )
    with pytest.raises(AlbertError, match="--distill-alpha"):
        student(teacher, distill_alpha=1.5)
    with pytest.raises(AlbertError, match="--distill-temperature must be positive"):
        student(teacher, distill_temperature=0.0)
    assert not (tmp_path / "student" / "model.safetensors").exists()
