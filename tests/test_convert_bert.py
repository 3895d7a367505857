"""`albert convert-bert`: BERT -> ALBERT, checked against transformers' BERT and ALBERT.

Teachers are small, randomly initialised transformers BERTs saved with `save_pretrained`
next to a hand-made WordPiece vocab.txt; no model is downloaded.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from albert.cli import main  # noqa: E402
from albert.convert_bert import REPORT_FILE, convert_bert, layer_map, read_teacher  # noqa: E402
from albert.errors import AlbertError  # noqa: E402
from albert.modeling import AlbertForMaskedLM, AlbertForPreTraining, AlbertModel  # noqa: E402

HIDDEN = 32
WORDS = (
    "the a an and of to in is it that was for on are with as his they be at one have this from or had by "
    "not word but what some we can out other were all there when up use your how said each she which do "
    "their time if will way about many then them write would like so these her long make thing see him two "
    "has look more day could go come did number sound no most people my over know water than call first who "
    "may down side been now find movie film good bad funny story plot actor"
).split()
SUFFIXES = ["##s", "##ing", "##ed", "##er", "##ly", "##est", "##ion"]
TEXTS = [
    "The movie was good, and the story was funny!",
    "Bad plot; wonderful actors... 42 times over.",
    "Unbelievably LONG films with naïve Café owners.",
    "who has seen the water? nobody knows",
    "中文 characters split, émigré résumé",
    "",
]


def write_vocab(directory: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits]
    tokens += WORDS + SUFFIXES
    (directory / "vocab.txt").write_text("".join(f"{t}\n" for t in dict.fromkeys(tokens)), encoding="utf-8")
    return directory / "vocab.txt"


def vocab_size() -> int:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens += ["##" + c for c in string.ascii_lowercase + string.digits] + WORDS + SUFFIXES
    return len(dict.fromkeys(tokens))


def bert_config(**overrides) -> transformers.BertConfig:
    values = dict(
        vocab_size=vocab_size(),
        hidden_size=HIDDEN,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return transformers.BertConfig(**{**values, **overrides})


def make_teacher(directory: Path, cls_name: str = "BertModel", seed: int = 0, **overrides) -> Path:
    """A random BERT with trained-looking statistics: a word table with a decaying spectrum and
    large weights, so layers differ from each other and truncation visibly costs accuracy."""
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(bert_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.3 * torch.randn_like(p))
            elif p.dim() == 2:
                p.normal_(0.0, 0.15)
            else:
                p.normal_(0.0, 0.05)
        words = model.get_input_embeddings().weight
        width = words.shape[1]
        decay = torch.logspace(0, -1.5, width)
        words.copy_(torch.randn_like(words) * decay @ torch.linalg.qr(torch.randn(width, width))[0])
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    write_vocab(directory)
    return directory


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("bert_mlm"), "BertForMaskedLM", seed=1)


@pytest.fixture(scope="module")
def batch(bert_dir: Path) -> dict[str, torch.Tensor]:
    tok = transformers.BertTokenizer.from_pretrained(str(bert_dir))
    enc = tok(TEXTS[:5], ["a second segment"] * 5, padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def teacher_outputs(directory: Path, batch: dict[str, torch.Tensor], cls_name: str = "BertModel"):
    model = getattr(transformers, cls_name).from_pretrained(str(directory)).eval()
    with torch.no_grad():
        return model(**batch)


def masked_max_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b)[mask.bool()].abs().max())


def relative_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.bool()
    return float((a - b)[m].norm() / b[m].norm())


# ----------------------------------------------------------------------------------------
# exactness when nothing is approximated


def test_exact_when_e_equals_h_and_nothing_shared(bert_dir: Path, batch, tmp_path: Path) -> None:
    report = convert_bert(bert_dir, tmp_path / "out", embedding_size=HIDDEN, share="none", probe_texts=TEXTS)
    expected = teacher_outputs(bert_dir, batch)
    ours = AlbertModel.from_pretrained(tmp_path / "out")
    theirs = transformers.AlbertModel.from_pretrained(str(tmp_path / "out")).eval()
    with torch.no_grad():
        for out in (ours(**batch), theirs(**batch)):
            assert (
                masked_max_diff(out.last_hidden_state, expected.last_hidden_state, batch["attention_mask"])
                <= 1e-5
            )
            assert float((out.pooler_output - expected.pooler_output).abs().max()) <= 1e-5
    assert report["probe"]["relative_error"] < 1e-5
    assert report["probe"]["mean_pooled_cosine"] > 1 - 1e-6
    assert report["word_embedding_svd_error"] == 0.0
    assert report["pooler"] == "copied"
    assert report["architecture"] == "AlbertForPreTraining"


def test_exact_mlm_head_from_bert_for_masked_lm(mlm_dir: Path, batch, tmp_path: Path) -> None:
    report = convert_bert(mlm_dir, tmp_path / "out", embedding_size=HIDDEN, share="none", probe_texts=TEXTS)
    expected = teacher_outputs(mlm_dir, batch, "BertForMaskedLM").logits
    student = AlbertForMaskedLM.from_pretrained(tmp_path / "out")
    with torch.no_grad():
        logits = student(**batch).logits
    assert masked_max_diff(logits, expected, batch["attention_mask"]) <= 1e-5
    assert report["mlm_head"] == "copied"
    assert report["pooler"].startswith("newly initialised")  # BertForMaskedLM has no pooler


def test_mlm_head_with_factorised_embeddings_keeps_the_vocabulary_prior(
    mlm_dir: Path, tmp_path: Path
) -> None:
    report = convert_bert(mlm_dir, tmp_path / "out", embedding_size=8, share="all", probe_texts=TEXTS)
    teacher = transformers.BertForMaskedLM.from_pretrained(str(mlm_dir))
    head = teacher.cls.predictions
    prior = head.bias + teacher.bert.embeddings.word_embeddings.weight @ head.transform.LayerNorm.bias
    student = AlbertForMaskedLM.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(student.predictions.bias, prior.detach())
    assert student.predictions.dense.weight.shape == (8, HIDDEN)
    assert report["mlm_head"].startswith("decoder bias carried over")


def test_pickle_checkpoint_with_tf_style_names_converts_exactly(
    bert_dir: Path, batch, tmp_path: Path
) -> None:
    """pytorch_model.bin, `bert.` prefix and LayerNorm gamma/beta (old TF ports) all read."""
    from safetensors.torch import load_file

    teacher = tmp_path / "teacher"
    teacher.mkdir()
    state = load_file(str(bert_dir / "model.safetensors"))
    renamed = {}
    for key, value in state.items():
        key = "bert." + key
        if "LayerNorm" in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        renamed[key] = value
    renamed["classifier.weight"] = torch.zeros(2, HIDDEN)  # a task head: ignored, reported
    torch.save(renamed, teacher / "pytorch_model.bin")
    for name in ("config.json", "vocab.txt"):
        (teacher / name).write_bytes((bert_dir / name).read_bytes())
    report = convert_bert(teacher, tmp_path / "out", embedding_size=HIDDEN, share="none", probe_texts=TEXTS)
    expected = teacher_outputs(bert_dir, batch)
    with torch.no_grad():
        out = AlbertModel.from_pretrained(tmp_path / "out")(**batch)
    assert masked_max_diff(out.last_hidden_state, expected.last_hidden_state, batch["attention_mask"]) <= 1e-5
    assert report["ignored_teacher_keys"] == ["classifier.weight"]


# ----------------------------------------------------------------------------------------
# factorised embeddings


@pytest.mark.slow
def test_error_decreases_as_embedding_size_grows(bert_dir: Path, batch, tmp_path: Path) -> None:
    expected = teacher_outputs(bert_dir, batch).last_hidden_state
    svd_errors, hidden_errors = [], []
    for size in (4, 8, 16, HIDDEN):
        report = convert_bert(
            bert_dir, tmp_path / f"e{size}", embedding_size=size, share="none", probe_texts=TEXTS
        )
        svd_errors.append(report["word_embedding_svd_error"])
        with torch.no_grad():
            hidden = AlbertModel.from_pretrained(tmp_path / f"e{size}")(**batch).last_hidden_state
        hidden_errors.append(relative_error(hidden, expected, batch["attention_mask"]))
        assert report["probe"]["relative_error"] >= 0
    assert svd_errors == sorted(svd_errors, reverse=True) and len(set(svd_errors)) == 4, svd_errors
    assert hidden_errors == sorted(hidden_errors, reverse=True) and len(set(hidden_errors)) == 4, (
        hidden_errors
    )
    assert hidden_errors[-1] < 1e-5 < hidden_errors[0]


def test_factorised_parameter_counts_are_real(bert_dir: Path, tmp_path: Path) -> None:
    report = convert_bert(bert_dir, tmp_path / "out", embedding_size=8, share="all", probe_texts=TEXTS)
    teacher = transformers.BertModel.from_pretrained(str(bert_dir))
    student = AlbertModel.from_pretrained(tmp_path / "out")
    assert report["teacher_parameters"] == sum(p.numel() for p in teacher.parameters())
    assert report["student_parameters"] == sum(p.numel() for p in student.parameters())
    assert report["student_parameters"] < report["teacher_parameters"] / 2
    saved = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert saved["student_parameters"] == report["student_parameters"]


# ----------------------------------------------------------------------------------------
# shared-layer initialisation, partial sharing, depth


def _shared(model: AlbertModel) -> dict[str, torch.Tensor]:
    return model.encoder.albert_layer_groups[0].albert_layers[0].state_dict()


@pytest.mark.slow
def test_init_average_layer_and_best(bert_dir: Path, tmp_path: Path) -> None:
    teacher = read_teacher(bert_dir)
    layers = [teacher.layer(i) for i in range(3)]
    convert_bert(bert_dir, tmp_path / "avg", embedding_size=HIDDEN, init="average", probe_texts=TEXTS)
    convert_bert(bert_dir, tmp_path / "l1", embedding_size=HIDDEN, init="layer:1", probe_texts=TEXTS)
    best = convert_bert(bert_dir, tmp_path / "best", embedding_size=HIDDEN, init="best", probe_texts=TEXTS)
    average = _shared(AlbertModel.from_pretrained(tmp_path / "avg"))
    one = _shared(AlbertModel.from_pretrained(tmp_path / "l1"))
    for name in layers[0]:
        torch.testing.assert_close(average[name], sum(layer[name] for layer in layers) / 3)
        torch.testing.assert_close(one[name], layers[1][name])
    candidates = best["init_candidates"]
    assert set(candidates) == {"layer:0", "layer:1", "layer:2", "average"}
    assert best["init"] == min(candidates, key=lambda n: candidates[n]["relative_error"])
    assert best["probe"] == candidates[best["init"]]
    errors = {n: c["relative_error"] for n, c in candidates.items()}
    assert len(set(errors.values())) == 4, errors  # the candidates really differ


@pytest.mark.parametrize("share", ["attention", "ffn"])
def test_partial_sharing_with_a_deeper_student(bert_dir: Path, batch, tmp_path: Path, share: str) -> None:
    report = convert_bert(
        bert_dir,
        tmp_path / "out",
        embedding_size=16,
        share=share,
        num_hidden_layers=5,
        init="layer:2",
        probe_texts=TEXTS,
    )
    assert report["layer_map"] == layer_map(3, 5) == [0, 0, 1, 2, 2]
    teacher = read_teacher(bert_dir)
    model = AlbertForPreTraining.from_pretrained(tmp_path / "out")
    encoder = model.albert.encoder
    shared_is_attention = share == "attention"
    for name, value in _shared(model.albert).items():
        assert name.startswith("attention.") == shared_is_attention
        torch.testing.assert_close(value, teacher.layer(2)[name])
    for i, t in enumerate(report["layer_map"]):
        for name, value in encoder.unshared_layers[i].state_dict().items():
            assert name.startswith("attention.") != shared_is_attention
            torch.testing.assert_close(value, teacher.layer(t)[name])
    with torch.no_grad():
        out = model(**batch)
    assert torch.isfinite(out.prediction_logits).all() and out.sop_logits.shape == (5, 2)


def test_shallower_unshared_student_copies_spread_layers(bert_dir: Path, tmp_path: Path) -> None:
    report = convert_bert(
        bert_dir,
        tmp_path / "out",
        embedding_size=HIDDEN,
        share="none",
        num_hidden_layers=2,
        probe_texts=TEXTS,
    )
    assert report["layer_map"] == [0, 2] and report["init"] == "per-layer copy"
    teacher = read_teacher(bert_dir)
    groups = AlbertModel.from_pretrained(tmp_path / "out").encoder.albert_layer_groups
    for group, t in zip(groups, (0, 2), strict=True):
        for name, value in group.albert_layers[0].state_dict().items():
            torch.testing.assert_close(value, teacher.layer(t)[name])


# ----------------------------------------------------------------------------------------
# tokenizer, errors, CLI


def test_student_tokenizes_like_the_teacher(bert_dir: Path, tmp_path: Path) -> None:
    from albert.tokenization import AlbertTokenizer

    convert_bert(bert_dir, tmp_path / "out", embedding_size=8, probe_texts=TEXTS)
    ours = AlbertTokenizer.from_pretrained(tmp_path / "out")
    theirs = transformers.BertTokenizer.from_pretrained(str(bert_dir))
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))  # WordPiece, not spiece
    for text in TEXTS:
        ids = theirs(text)["input_ids"]
        assert ours(text)["input_ids"] == ids, text
        assert auto(text)["input_ids"] == ids, text
    pairs = ours(TEXTS[:3], TEXTS[1:4], padding=True)["input_ids"]
    assert pairs == theirs(TEXTS[:3], TEXTS[1:4], padding=True)["input_ids"]
    assert len(ours) == AlbertModel.from_pretrained(tmp_path / "out").config.vocab_size


def test_unsupported_architecture_is_a_clear_error(tmp_path: Path) -> None:
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50).save_pretrained(gpt2)
    write_vocab(gpt2)
    with pytest.raises(AlbertError, match=r"model_type='gpt2'.*supports bert"):
        convert_bert(gpt2, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_vocab_and_other_user_errors(bert_dir: Path, tmp_path: Path) -> None:
    no_vocab = tmp_path / "no_vocab"
    no_vocab.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_vocab / name).write_bytes((bert_dir / name).read_bytes())
    with pytest.raises(AlbertError, match="has no vocab.txt"):
        convert_bert(no_vocab, tmp_path / "out")
    (no_vocab / "vocab.txt").write_text((bert_dir / "vocab.txt").read_text() + "extra\n", encoding="utf-8")
    with pytest.raises(AlbertError, match=r"vocab.txt has 220 tokens but config.json says vocab_size=219"):
        convert_bert(no_vocab, tmp_path / "out")
    with pytest.raises(AlbertError, match="does not exist"):
        convert_bert(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(AlbertError, match="embedding_size=64 must be between 1"):
        convert_bert(bert_dir, tmp_path / "out", embedding_size=64)
    with pytest.raises(AlbertError, match="K must be an integer between 0 and 2"):
        convert_bert(bert_dir, tmp_path / "out", embedding_size=8, init="layer:3")
    with pytest.raises(AlbertError, match="not one of average, layer:K, best"):
        convert_bert(bert_dir, tmp_path / "out", embedding_size=8, init="mean")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("precious")
    with pytest.raises(AlbertError, match="not empty"):
        convert_bert(bert_dir, occupied, embedding_size=8, probe_texts=TEXTS)
    assert (occupied / "keep.txt").read_text() == "precious"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_cli_end_to_end_loads_in_transformers(
    bert_dir: Path, batch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe = tmp_path / "probe.txt"
    probe.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = tmp_path / "student"
    status = main(
        [
            "convert-bert",
            "--teacher",
            str(bert_dir),
            "--output",
            str(out),
            "--embedding-size",
            "16",
            "--share",
            "all",
            "--init",
            "best",
            "--probe-texts",
            str(probe),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert (
        "parameters: teacher" in printed and "SVD relative error" in printed and "init   layer:0" in printed
    )
    ours = AlbertModel.from_pretrained(out)
    theirs = transformers.AlbertModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    assert masked_max_diff(a.last_hidden_state, b.last_hidden_state, batch["attention_mask"]) <= 1e-5
    assert float((a.pooler_output - b.pooler_output).abs().max()) <= 1e-5

    assert main(["convert-bert", "--teacher", str(bert_dir), "--output", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_default_probe_fits_a_teacher_with_few_positions(bert_dir: Path, tmp_path: Path) -> None:
    """The bundled probe paragraphs run past 64 tokens; the probe is cut to the teacher's limit."""
    assert json.loads((bert_dir / "config.json").read_text())["max_position_embeddings"] == 64
    report = convert_bert(bert_dir, tmp_path / "out", embedding_size=8, share="all")
    assert report["probe_texts"] > 1 and report["probe"]["relative_error"] >= 0
