"""train_tokenizer and `albert tokenizer train`: ALBERT's layout, inputs, errors, transformers loading."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from tokenizer_fixtures import chinese, english, read_lines, spm_dir, training_files  # noqa: F401

from albert.cli import main
from albert.errors import AlbertError
from albert.tokenization import AlbertTokenizer, SentencePieceModel
from albert.tokenizer_train import train_tokenizer


@pytest.fixture(scope="module")
def small_corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~150 KB of English with a little Chinese: enough for a 800-piece vocabulary in about a second."""
    path = tmp_path_factory.mktemp("small") / "small.txt"
    lines = read_lines(shared_data / "pretrain/en/austen.txt", 600) + read_lines(
        shared_data / "pretrain/zh/peoples_daily_199801.txt", 10
    )
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_albert_layout(spm_dir: Path) -> None:
    """<pad>=0 <unk>=1 [CLS]=2 [SEP]=3 [MASK]=4, no BOS/EOS, and config files transformers reads."""
    model = SentencePieceModel.from_bytes((spm_dir / "spiece.model").read_bytes())
    assert model.pieces[:5] == ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
    assert model.model_type == "unigram" and (model.unk_id, model.pad_id) == (1, 0)
    assert "<s>" not in model.pieces and "</s>" not in model.pieces
    assert len(model.pieces) == 4000
    config = json.loads((spm_dir / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True and config["keep_accents"] is False
    assert json.loads((spm_dir / "special_tokens_map.json").read_text())["mask_token"] == "[MASK]"


def test_vocabulary_is_normalised_and_covers_chinese(spm_dir: Path, training_files: list[Path]) -> None:
    """character_coverage=0.9995 of the training characters (Chinese included) are in the vocabulary."""
    tok = AlbertTokenizer.from_pretrained(spm_dir)
    assert not any(p != p.lower() for p in tok.get_vocab() if p not in tok.all_special_tokens)
    assert not any(c in p for p in tok.get_vocab() for c in "éèàç")  # accents were stripped before training
    lines = [line for path in training_files for line in read_lines(path)]
    unknown = sum(row.count(tok.unk_token_id) for row in tok(lines, add_special_tokens=False)["input_ids"])
    characters = sum(len(line) - line.count(" ") for line in lines)
    assert unknown / characters < 0.001


def test_gzip_input_and_invalid_utf8_lines_are_skipped(
    small_corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    packed = tmp_path / "corpus.txt.gz"
    with gzip.open(packed, "wb") as handle:
        handle.write(small_corpus.read_bytes() + b"\nbroken \xff\xfe line\n" + "再见\n".encode())
    with caplog.at_level(logging.WARNING, logger="albert.tokenizer_train"):
        folder = train_tokenizer([packed], 800, tmp_path / "tok", num_threads=1)
    assert "skipped 1 line(s) that are not valid UTF-8" in caplog.text and "corpus.txt.gz" in caplog.text
    plain = train_tokenizer([small_corpus], 800, tmp_path / "plain", num_threads=1)
    tok = AlbertTokenizer.from_pretrained(folder)
    assert tok.tokenize("Emma Woodhouse") == AlbertTokenizer.from_pretrained(plain).tokenize("Emma Woodhouse")


def test_same_seed_same_model(small_corpus: Path, tmp_path: Path) -> None:
    first = train_tokenizer(
        [small_corpus], 800, tmp_path / "a", seed=7, num_threads=1, input_sentence_size=300
    )
    second = train_tokenizer(
        [small_corpus], 800, tmp_path / "b", seed=7, num_threads=1, input_sentence_size=300
    )
    assert (first / "spiece.model").read_bytes() == (second / "spiece.model").read_bytes()


def test_bpe_and_cased_training(small_corpus: Path, tmp_path: Path, english: list[str]) -> None:
    import sentencepiece

    folder = train_tokenizer(
        [small_corpus], 1000, tmp_path, model_type="bpe", do_lower_case=False, keep_accents=True
    )
    tok = AlbertTokenizer.from_pretrained(folder)
    assert SentencePieceModel.from_bytes((folder / "spiece.model").read_bytes()).model_type == "bpe"
    assert tok.cls_token_id == 2 and any(p != p.lower() for p in tok.get_vocab())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    for text in [t for t in english if "``" not in t and "''" not in t][:200]:
        assert tok.encode(text, add_special_tokens=False) == processor.encode(text), text


def test_character_level_vocabulary(shared_data: Path, tmp_path: Path, capsys) -> None:
    """max_piece_length=1: every piece is one character (Chinese BERT's vocabulary), so running text
    and character-per-line NER data meet the same pieces; vocab_size is then an upper bound."""
    transformers = pytest.importorskip("transformers")
    lines = read_lines(shared_data / "pretrain/zh/peoples_daily_199801.txt", 200)
    corpus = tmp_path / "zh.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    folder = train_tokenizer([corpus], 50_000, tmp_path / "chars", max_piece_length=1, num_threads=1)
    model = SentencePieceModel.from_bytes((folder / "spiece.model").read_bytes())
    characters = {c for line in lines for c in line.lower() if not c.isspace()}
    assert len(model.pieces) < 50_000 and len(model.pieces) <= len(characters) + 10
    assert all(len(piece.replace("▁", "")) <= 1 for piece in model.pieces[5:])  # after the specials
    ours, theirs = (
        AlbertTokenizer.from_pretrained(folder),
        transformers.AlbertTokenizer.from_pretrained(folder),
    )
    text = lines[3]
    assert ours.tokenize("中国人民银行") == ["▁", "中", "国", "人", "民", "银", "行"]
    assert ours(lines[:20])["input_ids"] == theirs(lines[:20])["input_ids"]
    assert len(ours.tokenize(text)) == len(text.replace(" ", "")) + 1
    argv = [
        "tokenizer",
        "train",
        "--input",
        str(corpus),
        "--vocab-size",
        "50000",
        "--output",
        str(tmp_path / "cli"),
    ]
    assert main([*argv, "--max-piece-length", "1", "--threads", "1"]) == 0
    assert f"({len(model.pieces)} pieces)" in capsys.readouterr().out
    assert (tmp_path / "cli/spiece.model").read_bytes() == (folder / "spiece.model").read_bytes()
    default = train_tokenizer([corpus], 2_000, tmp_path / "pieces", num_threads=1)
    assert any(len(p.replace("▁", "")) > 1 for p in AlbertTokenizer.from_pretrained(default).get_vocab())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"inputs": ["missing.txt"]}, "does not exist"),
        ({"inputs": []}, "no input files"),
        ({"vocab_size": 3}, "too small"),
        ({"vocab_size": 900_000}, "lower --vocab-size"),
        ({"vocab_size": 100}, "raise --vocab-size"),
        ({"model_type": "word"}, "model_type must be"),
        ({"character_coverage": 1.5}, "character_coverage"),
        ({"max_piece_length": 0}, "max_piece_length must be in 1..512"),
    ],
)
def test_user_errors(small_corpus: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"inputs": [small_corpus], "vocab_size": 800, "output_dir": tmp_path / "out", **kwargs}
    with pytest.raises(AlbertError, match=message):
        train_tokenizer(**arguments)


def test_empty_or_undecodable_input_is_one_clear_error(tmp_path: Path) -> None:
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("\n\n  \n")
    binary.write_bytes(b"\xff\xfe\x00\x01\n\xc3\x28\n")
    with pytest.raises(AlbertError, match="contain no text"):
        train_tokenizer([empty], 100, tmp_path / "out")
    # the rule `albert data` applies: a file that is mostly undecodable is not text
    with pytest.raises(AlbertError, match="does not look like UTF-8 text"):
        train_tokenizer([binary], 100, tmp_path / "out")
    fake_gzip = tmp_path / "fake.gz"
    fake_gzip.write_text("not gzip")
    with pytest.raises(AlbertError, match="cannot read"):
        train_tokenizer([fake_gzip], 100, tmp_path / "out")


def test_cli_end_to_end_loads_in_transformers(
    small_corpus: Path, tmp_path: Path, english: list[str], capsys
) -> None:
    transformers = pytest.importorskip("transformers")
    output = tmp_path / "cli-tok"
    argv = [
        "tokenizer",
        "train",
        "--input",
        str(small_corpus),
        "--vocab-size",
        "800",
        "--output",
        str(output),
    ]
    assert main([*argv, "--seed", "3", "--threads", "1"]) == 0
    assert str(output) in capsys.readouterr().out
    ours, theirs = (
        AlbertTokenizer.from_pretrained(output),
        transformers.AlbertTokenizer.from_pretrained(output),
    )
    assert ours(english[:100], padding=True)["input_ids"] == theirs(english[:100], padding=True)["input_ids"]
    assert ours.mask_token_id == theirs.mask_token_id == 4


def test_cli_errors_are_one_line(small_corpus: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "tokenizer",
                "train",
                "--input",
                str(tmp_path / "nope.txt"),
                "--vocab-size",
                "50",
                "--output",
                str(tmp_path),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err.strip()
    assert error.startswith("albert tokenizer: error:") and "does not exist" in error and "\n" not in error
    assert main(["tokenizer"]) == 2
    assert "choose an action" in capsys.readouterr().err
