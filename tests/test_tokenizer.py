"""AlbertTokenizer against transformers 5.24 (the oracle) on real text, plus edge cases.

Both engines (SentencePiece ``spiece.model`` vs transformers' AlbertTokenizer, WordPiece
``vocab.txt`` vs transformers' BertTokenizer) run through the same parametrised comparisons.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from tokenizer_fixtures import (  # noqa: F401
    chinese,
    english,
    ours,
    ours_wp,
    read_lines,
    spm_dir,
    theirs,
    theirs_wp,
    training_files,
    wordpiece_dir,
)

from albert.errors import AlbertError
from albert.tokenization import AlbertTokenizer, SentencePieceModel, has_digit_comma

REPO = Path(__file__).resolve().parents[1]
THIRD_PARTY = ["botchan_en_unigram_1000", "botchan_en_bpe_1000", "kyoto_ja_unigram_8000"]


@pytest.fixture(params=["sentencepiece", "wordpiece"])
def both(request: pytest.FixtureRequest) -> tuple[AlbertTokenizer, Any]:
    """(ours, transformers') for each engine; every comparison below runs on both."""
    if request.param == "sentencepiece":
        return request.getfixturevalue("ours"), request.getfixturevalue("theirs")
    return request.getfixturevalue("ours_wp"), request.getfixturevalue("theirs_wp")


@pytest.fixture
def texts(english: list[str], chinese: list[str]) -> list[str]:
    return english + chinese


def _plain(value: Any) -> Any:
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return list(value)
    return value


def assert_same(pair: tuple[AlbertTokenizer, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Call both tokenizers the same way and require identical outputs (and the same tensor types)."""
    ours, theirs = pair
    mine = ours(*args, **kwargs)
    kwargs.setdefault("return_token_type_ids", True)  # transformers' Albert omits them by default
    reference = theirs(*args, **kwargs)
    assert set(reference) <= set(mine), f"missing {set(reference) - set(mine)}"
    for key, expected in reference.items():
        if kwargs.get("return_tensors"):
            assert type(mine[key]) is type(expected), key
            assert mine[key].dtype == expected.dtype, key
        assert _plain(mine[key]) == _plain(expected), key
    return mine


# ---- identical to transformers --------------------------------------------------------------


def test_batch_of_texts_matches(both, texts: list[str]) -> None:
    assert_same(both, texts)
    assert_same(both, texts, return_offsets_mapping=True, return_special_tokens_mask=True)
    assert_same(both, texts, add_special_tokens=False, return_offsets_mapping=True)


def test_single_texts_match(both, texts: list[str]) -> None:
    for text in texts[::25]:
        result = assert_same(both, text, return_offsets_mapping=True)
        assert isinstance(result["input_ids"][0], int)


def test_pairs_match(both, english: list[str], chinese: list[str]) -> None:
    firsts, seconds = english[:150] + chinese[:100], english[150:300] + chinese[100:200]
    assert_same(both, firsts, seconds, return_offsets_mapping=True, return_special_tokens_mask=True)
    assert_same(both, firsts[0], seconds[0])


@pytest.mark.parametrize("padding", [True, "longest", "max_length"])
def test_padding_matches(both, texts: list[str], padding: Any) -> None:
    batch = texts[::10]
    result = assert_same(
        both,
        batch,
        padding=padding,
        truncation=True,
        max_length=64,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    assert len({len(row) for row in result["input_ids"]}) == 1
    assert_same(
        both, batch, batch[::-1], padding=padding, truncation=True, max_length=64, pad_to_multiple_of=8
    )


@pytest.mark.parametrize("strategy", [True, "longest_first", "only_first", "only_second"])
def test_truncation_strategies_match(both, english: list[str], strategy: Any) -> None:
    ours, _ = both
    long = [t for t in english if len(ours.encode(t)) > 80][:40]
    short = [" ".join(t.split()[:4]) for t in english[:40]]
    firsts, seconds = (short, long) if strategy == "only_second" else (long, short)
    assert_same(both, firsts, seconds, truncation=strategy, max_length=48, return_offsets_mapping=True)
    assert_same(both, firsts, seconds, truncation=strategy, max_length=48, padding="max_length")
    if strategy != "only_second":
        assert_same(both, long, truncation=strategy, max_length=20)


@pytest.mark.parametrize("kind", ["np", "pt"])
def test_tensors_match(both, texts: list[str], kind: str) -> None:
    if kind == "pt":
        pytest.importorskip("torch")
    batch = texts[:64]
    result = assert_same(both, batch, padding=True, return_tensors=kind)
    assert list(result) == ["input_ids", "token_type_ids", "attention_mask"]
    assert_same(
        both,
        batch,
        batch[::-1],
        padding="max_length",
        truncation=True,
        max_length=96,
        return_tensors=kind,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    assert_same(both, batch[0], return_tensors=kind)


def test_split_into_words_and_word_ids_match(both, texts: list[str]) -> None:
    ours, theirs = both
    words = [t.split() for t in texts[::20] if t.split()]
    mine = assert_same(both, words, is_split_into_words=True, return_offsets_mapping=True)
    reference = theirs(words, is_split_into_words=True)
    for i in range(len(words)):
        assert mine.word_ids(i) == reference.word_ids(i)
    padded, reference = (
        ours(words, is_split_into_words=True, padding=True),
        theirs(words, is_split_into_words=True, padding=True),
    )
    assert padded.word_ids(1) == reference.word_ids(1)
    # word ids are available after the fast tensor path too (computed on demand)
    tensors = ours(texts[:8], padding=True, return_tensors="np")
    assert tensors.word_ids(3) == theirs(texts[:8], padding=True).word_ids(3)
    assert tensors.tokens(0) == theirs(texts[:8], padding=True).tokens(0)
    assert_same(both, words[0], is_split_into_words=True)


def test_decode_tokenize_and_vocabulary_match(both, texts: list[str]) -> None:
    ours, theirs = both
    ids = ours(texts[:100])["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(
            ids, skip_special_tokens=skip
        )
        assert ours.decode(ids[3], skip_special_tokens=skip) == theirs.decode(
            ids[3], skip_special_tokens=skip
        )
    assert ours.decode(np.asarray(ids[3])) == theirs.decode(ids[3])
    for text in texts[::40]:
        tokens = ours.tokenize(text)
        assert tokens == theirs.tokenize(text)
        assert ours.convert_tokens_to_ids(tokens) == theirs.convert_tokens_to_ids(tokens)
        assert ours.convert_ids_to_tokens(ours.encode(text)) == theirs.convert_ids_to_tokens(
            theirs.encode(text)
        )
        assert ours.encode(text) == theirs.encode(text)
    assert ours.convert_tokens_to_ids("no-such-token-anywhere") == theirs.convert_tokens_to_ids(
        "no-such-token-anywhere"
    )
    assert len(ours) == len(theirs) and ours.vocab_size == theirs.vocab_size
    assert ours.get_vocab() == theirs.get_vocab()
    for name in ("pad", "unk", "cls", "sep", "mask"):
        assert getattr(ours, f"{name}_token_id") == getattr(theirs, f"{name}_token_id"), name
    assert set(ours.all_special_ids) == set(theirs.all_special_ids)


def test_albert_special_ids_are_read_from_the_model(ours: AlbertTokenizer, ours_wp: AlbertTokenizer) -> None:
    assert [
        ours.pad_token_id,
        ours.unk_token_id,
        ours.cls_token_id,
        ours.sep_token_id,
        ours.mask_token_id,
    ] == [0, 1, 2, 3, 4]
    assert ours.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert ours_wp.convert_ids_to_tokens(ours_wp.all_special_ids) == [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    ]


def test_default_output_feeds_a_model(ours: AlbertTokenizer) -> None:
    torch = pytest.importorskip("torch")
    batch = ours("Hello, world!", return_tensors="pt")
    assert list(batch) == ["input_ids", "token_type_ids", "attention_mask"]
    assert all(v.dtype == torch.long and v.shape == batch.input_ids.shape for v in batch.values())
    assert batch.to("cpu") is batch
    embedding = torch.nn.Embedding(len(ours), 4)
    assert embedding(batch["input_ids"]).shape[:2] == batch.attention_mask.shape


def test_save_pretrained_round_trips_to_transformers(both, texts: list[str], tmp_path: Path) -> None:
    ours, theirs = both
    ours.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"tokenizer_config.json", "special_tokens_map.json"}
    reloaded = AlbertTokenizer.from_pretrained(tmp_path)
    transformers_reloaded = type(theirs).from_pretrained(tmp_path)
    assert_same((reloaded, transformers_reloaded), texts[:200], return_offsets_mapping=True)
    assert reloaded(texts[:200]) == ours(texts[:200])


@pytest.mark.parametrize(
    "config",
    [
        {"do_lower_case": False},
        {"do_lower_case": True, "strip_accents": False},
        {"do_lower_case": False, "strip_accents": True, "tokenize_chinese_chars": False},
    ],
)
def test_wordpiece_options_come_from_tokenizer_config(
    wordpiece_dir: Path, texts: list[str], tmp_path: Path, config
) -> None:
    transformers = pytest.importorskip("transformers")
    shutil.copy(wordpiece_dir / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    pair = AlbertTokenizer.from_pretrained(tmp_path), transformers.BertTokenizer.from_pretrained(tmp_path)
    assert_same(pair, texts[::5], return_offsets_mapping=True)


@pytest.mark.parametrize("config", [{"do_lower_case": False}, {"keep_accents": True}])
def test_sentencepiece_options_come_from_tokenizer_config(
    spm_dir: Path, texts: list[str], tmp_path: Path, config
) -> None:
    transformers = pytest.importorskip("transformers")
    shutil.copy(spm_dir / "spiece.model", tmp_path / "spiece.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    pair = AlbertTokenizer.from_pretrained(tmp_path), transformers.AlbertTokenizer.from_pretrained(tmp_path)
    assert_same(pair, texts[::5], return_offsets_mapping=True)


def test_concurrent_calls_with_different_truncation_agree(ours: AlbertTokenizer, texts: list[str]) -> None:
    texts = texts[:300]
    expected = {n: ours(texts, truncation=True, max_length=n)["input_ids"] for n in (8, 16, 32, 64)}
    results: dict[int, list] = {}

    def work(n: int) -> None:
        results[n] = [ours(texts, truncation=True, max_length=n)["input_ids"] for _ in range(3)]

    threads = [threading.Thread(target=work, args=(n,)) for n in expected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(run == expected[n] for n, runs in results.items() for run in runs)


# ---- the spiece.model reader and the digit-comma option --------------------------------------


def _spm_paths(spm_dir: Path, shared_data: Path) -> list[Path]:
    return [spm_dir / "spiece.model", *(shared_data / "spm" / f"{name}.model" for name in THIRD_PARTY)]


def test_spm_reader_agrees_with_protobuf(spm_dir: Path, shared_data: Path) -> None:
    pb = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    for path in _spm_paths(spm_dir, shared_data):
        proto = pb.ModelProto()
        proto.ParseFromString(path.read_bytes())
        model = SentencePieceModel.from_bytes(path.read_bytes())
        assert model.pieces == tuple(p.piece for p in proto.pieces)
        assert model.scores == tuple(p.score for p in proto.pieces)
        assert model.types == tuple(p.type for p in proto.pieces)
        assert model.precompiled_charsmap == proto.normalizer_spec.precompiled_charsmap
        assert (model.unk_id, model.pad_id, model.byte_fallback) == (
            proto.trainer_spec.unk_id,
            proto.trainer_spec.pad_id,
            proto.trainer_spec.byte_fallback,
        )
        assert model.model_type == {1: "unigram", 2: "bpe"}[proto.trainer_spec.model_type]


def test_digit_comma_rule_is_off_by_default_and_opt_in(tmp_path: Path) -> None:
    """Train on text full of "1," so the vocabulary has digit-comma pieces, then compare."""
    from albert.tokenizer_train import train_tokenizer

    corpus = tmp_path / "numbers.txt"
    rng = random.Random(0)
    lines = [
        f"on may {rng.randint(1, 31)}, {rng.randint(1900, 2000)}, we paid {rng.randint(1, 9)},{rng.randint(100, 999)}"
        for _ in range(5000)
    ]
    corpus.write_text("\n".join(lines))
    folder = train_tokenizer([corpus], 200, tmp_path / "tok", num_threads=1)
    default = AlbertTokenizer.from_pretrained(folder)
    legacy = AlbertTokenizer.from_pretrained(folder, split_digit_comma=True)
    text = "on may 7, 1999, we paid 7,000"
    assert any(has_digit_comma(t) for t in default.tokenize(text)), (
        "fixture should produce digit-comma pieces"
    )
    assert not any(has_digit_comma(t) for t in legacy.tokenize(text))
    assert legacy.decode(legacy.encode(text, add_special_tokens=False)) == text
    transformers = pytest.importorskip("transformers")
    assert default.encode(text) == transformers.AlbertTokenizer.from_pretrained(folder).encode(text)
    legacy.save_pretrained(tmp_path / "saved")
    assert AlbertTokenizer.from_pretrained(tmp_path / "saved").tokenize(text) == legacy.tokenize(text)


# ---- third-party SentencePiece models ---------------------------------------------------------


@pytest.mark.parametrize("name", THIRD_PARTY)
def test_third_party_spm_models_load_and_segment_like_sentencepiece(
    name: str, shared_data: Path, chinese: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """They lack ALBERT's specials: those are appended (with a warning) and everything else works."""
    import sentencepiece

    source = shared_data / "spm" / f"{name}.model"
    shutil.copy(source, tmp_path / "spiece.model")
    with caplog.at_level(logging.WARNING, logger="albert.tokenization"):
        tok = AlbertTokenizer.from_pretrained(tmp_path, do_lower_case=False, keep_accents=True)
    assert all(t in caplog.text for t in ("<pad>", "[CLS]", "[SEP]", "[MASK]"))
    assert len(tok) == tok.vocab_size + 4
    assert tok.unk_token == "<unk>" and tok.unk_token_id == 0
    processor = sentencepiece.SentencePieceProcessor(model_file=str(source))
    lines = chinese[:100] if "kyoto" in name else read_lines(shared_data / "pretrain/en/botchan.txt", 400)
    lines = [line for line in lines if "``" not in line and "''" not in line]  # ALBERT replaces those
    for line in lines:
        assert tok.encode(line, add_special_tokens=False) == processor.encode(line), line
    batch = tok(lines[:10], lines[10:20], padding=True, return_tensors="np")
    assert (batch["input_ids"][:, 0] == tok.cls_token_id).all()
    assert tok.pad_token_id == tok.vocab_size and tok.decode(batch["input_ids"][0], skip_special_tokens=True)


# ---- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", " ", "\n\t  \u3000 ", "\x00\x01\x1b[31m\x7f", "a\u200bb\ufeffc", "\ud7ff\U0001f600\U0010ffff"],
)
def test_edge_strings_match_transformers(both, text: str) -> None:
    assert_same(both, text, return_offsets_mapping=True)
    assert_same(both, [text, "x", text], ["y", text, text], padding=True, return_tensors="np")


def test_blank_input_gives_only_special_tokens(ours: AlbertTokenizer) -> None:
    for text in ("", "   \n\t"):
        assert ours(text)["input_ids"] == [ours.cls_token_id, ours.sep_token_id]
        assert ours.tokenize(text) == [] and ours.decode(ours.encode(text, add_special_tokens=False)) == ""
    assert ours([])["input_ids"] == []


@pytest.mark.slow
def test_megabyte_string(both, english: list[str], chinese: list[str]) -> None:
    ours, theirs = both
    text = " ".join(english + chinese)
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    ids = ours(text)["input_ids"]
    assert ids == theirs(text)["input_ids"] and len(ids) > 100_000
    long_word = "a" * 1_000_000
    assert (
        ours(long_word, truncation=True, max_length=16)["input_ids"]
        == theirs(long_word, truncation=True, max_length=16)["input_ids"]
    )


def test_user_errors_are_albert_errors(ours: AlbertTokenizer, tmp_path: Path) -> None:
    with pytest.raises(AlbertError, match="does not exist"):
        AlbertTokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(AlbertError, match="neither spiece.model nor vocab.txt"):
        AlbertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "spiece.model").write_bytes(b"\xff\xff\xff garbage")
    with pytest.raises(AlbertError, match="not a SentencePiece model"):
        AlbertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "spiece.model").unlink()
    (tmp_path / "vocab.txt").write_bytes(b"[PAD]\n\xff\n")
    with pytest.raises(AlbertError, match="not UTF-8"):
        AlbertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(AlbertError, match="not valid JSON"):
        AlbertTokenizer.from_pretrained(tmp_path)
    bad_calls = [
        lambda: ours(42),
        lambda: ours(["ok", None]),
        lambda: ours(["a", "b"], ["c"]),
        lambda: ours("a", padding="sideways"),
        lambda: ours("a", truncation="middle"),
        lambda: ours("a", return_tensors="tf"),
        lambda: ours(["a", "a b c"], return_tensors="np"),
        lambda: ours("a b c d e f", truncation="only_second", max_length=3),
        lambda: ours.encode(["a", "b"]),
    ]
    for call in bad_calls:
        with pytest.raises(AlbertError):
            call()


def test_importable_and_usable_without_torch(spm_dir: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from albert.tokenization import AlbertTokenizer\n"
        f"tok = AlbertTokenizer.from_pretrained({str(spm_dir)!r})\n"
        "out = tok(['hello world', 'hi'], padding=True, return_tensors='np')\n"
        "assert out['input_ids'].shape[0] == 2 and 'torch' not in [m for m in sys.modules if sys.modules[m]]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ---- round trip property ----------------------------------------------------------------------


def _round_trip_alphabet(tok: AlbertTokenizer) -> list[str]:
    """Characters that are pieces of their own and that normalisation leaves alone (incl. Chinese)."""
    singles = {p.removeprefix("▁") for p in tok.get_vocab() if len(p.removeprefix("▁")) == 1}
    return sorted(c for c in singles if c != "▁" and not c.isspace() and tok.normalize(c) == c)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decode_inverts_encode_up_to_normalisation(ours: AlbertTokenizer, data: st.DataObject) -> None:
    """decode(encode(x)) == normalised(x), where normalised(x) is the engine's normaliser applied to
    x (quotes, accents, case, NFKC charsmap) followed by collapsing whitespace runs to one space and
    stripping both ends - SentencePiece keeps word boundaries, not the whitespace itself.

    x is drawn from characters the vocabulary has as single pieces (so no <unk>, which cannot be
    inverted), ASCII letters with accents and upper case to exercise normalisation, and whitespace;
    text containing a special token's literal spelling is excluded (it encodes as that token).
    """
    alphabet = _round_trip_alphabet(ours)
    assert any("\u4e00" <= c <= "\u9fff" for c in alphabet), "the vocabulary should cover Chinese"
    chars = st.sampled_from(alphabet + list("AÉZçÀ  \t\n"))
    text = data.draw(st.text(chars, max_size=60))
    assume(not any(token in text for token in ours.all_special_tokens))
    normalised = " ".join(ours.normalize(text).split())
    assume(all(c in alphabet or c == " " for c in normalised))
    assert ours.decode(ours.encode(text, add_special_tokens=False)) == normalised
    assert ours.decode(ours.encode(text), skip_special_tokens=True) == normalised
