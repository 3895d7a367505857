"""Pretraining data: ALBERT's SOP + n-gram whole-word masking recipe on real English and Chinese text.

A small SentencePiece vocabulary is trained once per session on slices of the shared KJV and
People's Daily text; data is built from other slices of the same files and checked against
the recipe (span lengths, masking rates, specials, SOP balance and order) and for
reproducibility, dynamic masking, error handling and the CLI.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from albert.data import (
    PretrainingDataset,
    build_pretraining_data,
    collate_pretraining,
    masking,
    split_sentences,
)
from albert.data import text as data_text
from albert.data.encoders import SentencePieceEncoder, choose_engine, make_encoder
from albert.data.examples import _chunks, _split_long, _truncation_counts
from albert.data.masking import MaskingOptions, VocabularyTables, mask_tokens
from albert.errors import AlbertError
from albert.tokenization import AlbertTokenizer

SLICE_BYTES = 200_000
MAX_SEQ = 128
OPTIONS = {"max_seq_length": MAX_SEQ, "max_predictions_per_seq": 40, "dupe_factor": 2, "progress": False}


def _slice(source: Path, target: Path, skip: int, size: int) -> Path:
    """`size` bytes of `source` from line boundary after `skip`, cut at a line end."""
    data = source.read_bytes()
    start = data.index(b"\n", skip) + 1 if skip else 0
    end = data.rindex(b"\n", start, start + size) + 1
    target.write_bytes(data[start:end])
    return target


@pytest.fixture(scope="session")
def corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data_corpus")
    kjv, daily = shared_data / "pretrain/en/kjv.txt", shared_data / "pretrain/zh/peoples_daily_199801.txt"
    return {
        "en_train": _slice(kjv, folder / "kjv_train.txt", 2_000_000, 150_000),
        "zh_train": _slice(daily, folder / "daily_train.txt", 3_000_000, 150_000),
        "en": _slice(kjv, folder / "kjv.txt", 0, SLICE_BYTES),
        "zh": _slice(daily, folder / "daily.txt", 0, SLICE_BYTES),
    }


@pytest.fixture(scope="session")
def tokenizer_dir(corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from albert.tokenizer_train import train_tokenizer

    return train_tokenizer(
        [corpus["en_train"], corpus["zh_train"]], 3000, tmp_path_factory.mktemp("data_tok"), num_threads=1
    )


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir: Path) -> AlbertTokenizer:
    return AlbertTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def static_dir(
    tokenizer_dir: Path, corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    output = tmp_path_factory.mktemp("static") / "data"
    build_pretraining_data(tokenizer_dir, [corpus["en"], corpus["zh"]], output, **OPTIONS)
    return output


@pytest.fixture(scope="session")
def static(static_dir: Path, tokenizer_dir: Path) -> PretrainingDataset:
    return PretrainingDataset(static_dir, tokenizer_dir=tokenizer_dir)


def _originals(item: dict[str, torch.Tensor]) -> np.ndarray:
    ids, labels = item["input_ids"].numpy(), item["labels"].numpy()
    return np.where(labels != -100, labels, ids)


def _all_items(dataset: PretrainingDataset) -> list[dict[str, torch.Tensor]]:
    return [dataset[i] for i in range(len(dataset))]


# --------------------------------------------------------------------------------------------
# sentence splitting and input layouts
# --------------------------------------------------------------------------------------------


def test_split_sentences_english_and_chinese() -> None:
    assert split_sentences('He said "Stop!" Then Mr. Smith left. J. R. Tolkien wrote. Really? Yes.') == [
        'He said "Stop!"',
        "Then Mr. Smith left.",
        "J. R. Tolkien wrote.",
        "Really?",
        "Yes.",
    ]
    assert split_sentences("他说：“好！”我们走吧。真的吗？是的；当然……然后呢?好") == [
        "他说：“好！”",
        "我们走吧。",
        "真的吗？",
        "是的；",
        "当然……",
        "然后呢?",
        "好",
    ]
    assert split_sentences("version 3.14 is out. it works") == ["version 3.14 is out. it works"]
    assert split_sentences("   ") == []


def test_detect_format_on_real_files(shared_data: Path) -> None:
    pretrain = shared_data / "pretrain"
    assert data_text.detect_format(pretrain / "en/kjv.txt") == "sentences"
    assert data_text.detect_format(pretrain / "en/austen.txt") == "paragraphs"
    assert data_text.detect_format(pretrain / "zh/peoples_daily_199801.txt") == "documents"


def test_conll_sentences_keep_words_apart_and_split_documents() -> None:
    lines = [
        "-DOCSTART- -X- O O",
        "",
        "EU\tB-ORG",
        "rejects   O",
        "",
        "",
        "北\tB-LOC",
        "京 I-LOC",
        "-DOCSTART-",
        "x O",
    ]
    sentences = list(data_text.conll_sentences((line, False) for line in lines))
    assert sentences == [("", False), ("EU\trejects", False), ("北\t京", False), ("", False), ("x", False)]
    assert (
        data_text.detect_format(Path("train.conll")) == data_text.detect_format(Path("a.bio.gz")) == "conll"
    )


def _stream(encoded: list[list[int]]) -> str:
    return "," + ",".join(str(i) for ids in encoded for i in ids) + ","


@pytest.mark.parametrize("language", ["zh", "en"])
def test_conll_training_files_become_pretraining_text_encoded_as_fine_tuning_encodes_it(
    language: str, shared_data: Path, tokenizer_dir: Path, tokenizer: AlbertTokenizer, tmp_path: Path
) -> None:
    """Task-adaptive pretraining on a CoNLL training file sees its words exactly as fine-tuning
    does: Chinese characters as in-word pieces (never a "▁" before each), English words as words."""
    from albert.tasks.token_classification import encode_words

    source = shared_data / ("tokens/zh/peoples_daily_ner" if language == "zh" else "tokens/en/wnut16_ner")
    conll = _slice(source / "train.conll", tmp_path / "train.conll", 0, 60_000)
    blocks = [b for b in conll.read_text(encoding="utf-8").split("\n\n") if b.strip()]
    sentences = [[line.split("\t")[0] for line in block.splitlines()] for block in blocks]
    output = tmp_path / "data"
    manifest = build_pretraining_data(tokenizer_dir, [conll], output, max_seq_length=64, progress=False)
    assert manifest["inputs"][0]["format"] == "conll"
    assert manifest["counts"]["sentences"] == len(sentences)
    features = encode_words(tokenizer, sentences, char_level=language == "zh", max_length=10_000)
    stream = _stream([f["input_ids"][1:-1] for f in features])
    dataset = PretrainingDataset(output, tokenizer_dir=tokenizer_dir)
    word_start_marker = tokenizer.convert_tokens_to_ids("\u2581")
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    for item in _all_items(dataset):
        ids = _originals(item)
        first = ids[1 : int((ids == tokenizer.sep_token_id).argmax())]
        assert _stream([first.tolist()]) in stream  # a stretch of the fine-tuning encoding, unchanged
        if language == "zh":
            assert word_start_marker not in set(ids.tolist()) - specials
    if language == "zh":  # the characters really were split: no multi-character pieces
        pieces = tokenizer.convert_ids_to_tokens(
            sorted(set(np.concatenate([_originals(i) for i in _all_items(dataset)]).tolist()) - specials)
        )
        assert all(len(p) == 1 for p in pieces if p not in ("<unk>", "[UNK]"))


def test_classification_files_pretrain_on_their_text_columns_only(
    tokenizer_dir: Path, tokenizer: AlbertTokenizer, tmp_path: Path
) -> None:
    """CSV/TSV/JSONL training files (``table`` layout): every row's text column(s), never the label."""
    rows = [
        (f"In the beginning was the word number {i}. And it was good.", "qqqq" if i % 2 else "zzzz")
        for i in range(60)
    ]
    csv_file = tmp_path / "train.csv"
    csv_file.write_text(
        "label,text\n" + "".join(f'{label},"{text}"\n' for text, label in rows), encoding="utf-8"
    )
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"text_pair": "The second side.", "text": text, "label": label}) + "\n"
            for text, label in rows
        )
    )
    for path, per_row in ((csv_file, 2), (jsonl, 3)):
        manifest = build_pretraining_data(
            tokenizer_dir, [path], tmp_path / "out", max_seq_length=48, progress=False
        )
        assert manifest["inputs"][0]["format"] == "table"
        assert manifest["counts"]["sentences"] == per_row * len(rows)  # text (2 sentences) + text_pair
        dataset = PretrainingDataset(tmp_path / "out", tokenizer_dir=tokenizer_dir)
        text = " ".join(tokenizer.decode(_originals(item).tolist()) for item in _all_items(dataset))
        assert "word number 59" in text and "qqqq" not in text and "zzzz" not in text
        assert ("second side" in text) == (path == jsonl)
    with pytest.raises(AlbertError, match="has no column 'sentence'; columns found: label, text"):
        build_pretraining_data(
            tokenizer_dir, [csv_file], tmp_path / "x", text_columns=["sentence"], progress=False
        )
    _assert_nothing_left(tmp_path / "x")


def test_expand_inputs_files_directories_globs(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.txt", "a.txt", "sub/c.txt.gz", ".hidden"):
        (tmp_path / name).write_text("x")
    found = data_text.expand_inputs([tmp_path / "b.txt", tmp_path, str(tmp_path / "*.txt")])
    assert found == [tmp_path / "b.txt", tmp_path / "a.txt", tmp_path / "sub/c.txt.gz"]
    with pytest.raises(AlbertError, match="does not exist"):
        data_text.expand_inputs([tmp_path / "missing.txt"])
    with pytest.raises(AlbertError, match="matches no files"):
        data_text.expand_inputs([str(tmp_path / "*.csv")])


def test_overlong_lines_are_read_in_pieces_on_character_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_text, "MAX_LINE_BYTES", 64)
    line = "中文句子。" * 40 + "end"  # 603 bytes, 3-byte characters: cuts must back off
    path = tmp_path / "long.txt"
    path.write_text(line + "\nnext\n", encoding="utf-8")
    stats = data_text.FileStats(str(path))
    pieces = list(data_text.read_lines(path, stats, lambda n: None))
    assert "".join(text for text, _ in pieces[:-1]) == line
    assert [continued for _, continued in pieces] == [False] + [True] * (len(pieces) - 2) + [False]
    assert stats.invalid_utf8_lines == 0 and all(len(t.encode()) <= 64 for t, _ in pieces)


# --------------------------------------------------------------------------------------------
# the recipe, measured on the built data
# --------------------------------------------------------------------------------------------


def test_manifest_counts_and_layouts(
    static: PretrainingDataset, static_dir: Path, tokenizer_dir: Path
) -> None:
    manifest = json.loads((static_dir / "manifest.json").read_text())
    assert manifest == static.manifest
    assert [f["format"] for f in manifest["inputs"]] == ["sentences", "documents"]
    counts = manifest["counts"]
    assert counts["examples"] == len(static) == sum(s["examples"] for s in manifest["shards"])
    assert counts["skipped_documents"] > 0  # People's Daily headlines are one-sentence documents
    assert counts["bytes"] > 2 * SLICE_BYTES * 0.95
    assert manifest["tokenizer"]["fingerprint"].startswith("sha256:")
    assert manifest["tokenizer"]["path"] == str(tokenizer_dir.resolve())
    assert manifest["tokenizer_engine"] == "sentencepiece"  # the trainer's defaults take the fast path
    assert not list(static_dir.parent.glob(".data.partial-*"))


def test_examples_fit_and_are_well_formed(static: PretrainingDataset, tokenizer: AlbertTokenizer) -> None:
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    for item in _all_items(static):
        ids, types = item["input_ids"], item["token_type_ids"]
        assert ids.dtype == torch.long and ids.ndim == 1 and item["sentence_order_label"].ndim == 0
        assert len(ids) <= MAX_SEQ
        a = int((types == 0).sum())
        assert ids[0] == cls and ids[a - 1] == sep and ids[-1] == sep
        assert a >= 3 and len(ids) - a >= 2  # both segments have at least one token
        assert torch.equal(types, torch.tensor([0] * a + [1] * (len(ids) - a)))
        assert bool(item["attention_mask"].all())


def test_specials_never_masked(static: PretrainingDataset, tokenizer: AlbertTokenizer) -> None:
    specials = {
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        tokenizer.pad_token_id,
        tokenizer.mask_token_id,
    }
    for item in _all_items(static):
        labels = item["labels"]
        masked = torch.nonzero(labels != -100).flatten()
        a = int((item["token_type_ids"] == 0).sum())
        assert not {0, a - 1, len(labels) - 1} & set(masked.tolist())
        assert not specials & set(labels[masked].tolist())
        originals = _originals(item)
        assert originals[0] == tokenizer.cls_token_id and originals[-1] == tokenizer.sep_token_id


def test_masking_rate_and_80_10_10(static: PretrainingDataset, tokenizer: AlbertTokenizer) -> None:
    mask, kept, replaced, predictions, budget_total, tokens, none = 0, 0, 0, 0, 0, 0, 0
    specials = set(tokenizer.all_special_ids)
    options = MaskingOptions(0.15, 40, 3, tokenizer.mask_token_id)
    for item in _all_items(static):
        ids, labels = item["input_ids"], item["labels"]
        where = labels != -100
        count = int(where.sum())
        assert count <= options.budget(len(ids))
        none += count == 0  # possible: a short pair whose every word is longer than its budget
        predictions += count
        budget_total += options.budget(len(ids))
        tokens += len(ids)
        mask += int((ids[where] == tokenizer.mask_token_id).sum())
        kept += int((ids[where] == labels[where]).sum())
        replacements = ids[where][(ids[where] != labels[where]) & (ids[where] != tokenizer.mask_token_id)]
        replaced += len(replacements)
        assert not specials & set(replacements.tolist())  # random tokens come from the normal vocabulary
    assert predictions > 20_000 and none < 0.02 * len(static)  # tiny targets cut through long words
    assert 0.13 < predictions / tokens < 0.155  # 15 %, a little less where whole words overshoot
    assert predictions / budget_total > 0.9
    assert mask / predictions == pytest.approx(0.8, abs=0.01)
    assert kept / predictions == pytest.approx(0.1, abs=0.01)
    assert replaced / predictions == pytest.approx(0.1, abs=0.01)


def test_ngram_spans_follow_one_over_n(static: PretrainingDataset) -> None:
    """Spans draw n with p(n) ∝ 1/n; fitting the budget then shortens a few (as in the original)."""
    counts = static.manifest["counts"]
    drawn, masked = (np.asarray(counts[key], dtype=float) for key in ("span_words_drawn", "span_words"))
    assert drawn.sum() == masked.sum() > 10_000
    np.testing.assert_allclose(drawn / drawn.sum(), [6 / 11, 3 / 11, 2 / 11], atol=0.02)
    shares, drawn_shares = masked / masked.sum(), drawn / drawn.sum()
    assert shares[0] > shares[1] > shares[2] > 0.1  # still mostly 1/n, shifted towards short spans
    assert shares[0] >= drawn_shares[0] and shares[2] <= drawn_shares[2]
    np.testing.assert_allclose(shares, [6 / 11, 3 / 11, 2 / 11], atol=0.1)


def test_whole_words_are_masked_together(static: PretrainingDataset, tokenizer: AlbertTokenizer) -> None:
    """Every word (a ▁-piece and its continuations, or one CJK character) is masked whole or not at all."""
    tables = VocabularyTables.from_tokenizer(tokenizer)
    partial = words = 0
    for item in _all_items(static)[:2000]:
        ids, masked = _originals(item), (item["labels"] != -100).numpy()
        a = int((item["token_type_ids"] == 0).sum())
        starts = tables.word_start[ids].copy()
        starts[[0, 1, a - 1, a, len(ids) - 1]] = True
        word = np.cumsum(starts)
        for w in np.unique(word[masked]):
            words += 1
            partial += not masked[word == w].all()
    assert words > 5000 and partial == 0
    assert not tables.word_start[tokenizer.convert_tokens_to_ids("ing")]  # sanity: a continuation piece


def test_sentence_order_balanced_and_true_to_the_source(
    static: PretrainingDataset, tokenizer: AlbertTokenizer, corpus: dict[str, Path]
) -> None:
    """Label 1 examples are two stretches of consecutive source text in reverse order; label 0 in order."""
    labels = np.array([int(static[i]["sentence_order_label"]) for i in range(len(static))])
    assert labels.mean() == pytest.approx(0.5, abs=0.03)
    streams = {}
    for name, layout in (("en", "sentences"), ("zh", "documents")):
        lines = [
            line.strip() for line in corpus[name].read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        sentences = lines if layout == "sentences" else [s for line in lines for s in split_sentences(line)]
        ids = [i for row in tokenizer(sentences, add_special_tokens=False)["input_ids"] for i in row]
        streams[name] = np.asarray(ids, dtype=np.int32).tobytes()
    source_text = tokenizer.decode(np.frombuffer(streams["en"] + streams["zh"], dtype=np.int32).tolist())
    rng = np.random.default_rng(0)
    checked = distinctive = wrong_order_found = 0
    for index in rng.choice(len(static), size=300, replace=False):
        item = static[int(index)]
        ids = _originals(item)
        a = int((item["token_type_ids"] == 0).sum())
        first, second = ids[1 : a - 1], ids[a:-1]
        earlier, later = (second, first) if int(item["sentence_order_label"]) else (first, second)
        assert any(_follows(stream, earlier, later, MAX_SEQ) for stream in streams.values()), index
        if min(len(first), len(second)) >= 8:  # long enough not to recur by chance
            distinctive += 1
            wrong_order_found += any(_follows(stream, later, earlier, MAX_SEQ) for stream in streams.values())
        assert tokenizer.decode(first.tolist()).strip() in source_text
        checked += 1
    assert checked == 300 and distinctive > 150 and wrong_order_found < 0.05 * distinctive


def _follows(stream: bytes, earlier: np.ndarray, later: np.ndarray, max_gap: int) -> bool:
    """Whether `later` starts at most `max_gap` tokens after an occurrence of `earlier` ends."""
    head, tail = earlier.astype(np.int32).tobytes(), later.astype(np.int32).tobytes()
    position = stream.find(head)
    while position != -1:
        if position % 4 == 0:
            end = position + len(head)
            window = stream[end : end + len(tail) + 4 * max_gap]
            found = window.find(tail)
            while found != -1:
                if found % 4 == 0:
                    return True
                found = window.find(tail, found + 1)
        position = stream.find(head, position + 1)
    return False


def test_truncation_matches_the_original_loop() -> None:
    """The closed form removes what ALBERT's token-by-token `truncate_seq_pair` removes."""
    for len_a in range(1, 40):
        for len_b in range(1, 40):
            for max_tokens in (2, 7, 30, 60):
                a, b = len_a, len_b
                while a + b > max_tokens:  # the original: trim the longer side, the second on ties
                    a, b = (a - 1, b) if a > b else (a, b - 1)
                assert _truncation_counts(len_a, len_b, max_tokens) == (len_a - a, len_b - b)


def test_long_sentences_split_at_word_starts_and_chunks_pair_up() -> None:
    word_start = np.zeros(100, dtype=bool)
    word_start[::3] = True  # ids 0, 3, 6, ... start words
    sentence = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17])
    pieces = _split_long([np.array([3, 1]), sentence], 8, word_start)
    assert np.array_equal(np.concatenate(pieces[1:]), sentence)
    assert all(p.size <= 4 for p in pieces[1:]) and all(word_start[p[0]] for p in pieces[1:])
    for count in range(2, 9):
        segments = [np.arange(size) for size in range(1, count + 1)]
        chunks = _chunks(segments, 4)
        assert all(len(chunk) >= 2 for chunk in chunks)
        assert [s.size for chunk in chunks for s in chunk] == [s.size for s in segments]


def test_mask_tokens_edge_cases(tokenizer: AlbertTokenizer) -> None:
    tables = VocabularyTables.from_tokenizer(tokenizer)
    options = MaskingOptions(0.15, 20, 3, tokenizer.mask_token_id)
    body = tokenizer.encode("in the beginning", add_special_tokens=False)
    ids = np.array([tokenizer.cls_token_id, *body, tokenizer.sep_token_id, body[0], tokenizer.sep_token_id])
    masked = mask_tokens(ids, tables, options, np.random.default_rng(0))
    assert 1 <= len(masked.positions) <= options.budget(len(ids)) == max(1, round(len(ids) * 0.15))
    assert not {0, len(body) + 1, len(ids) - 1} & set(masked.positions.tolist())
    none = mask_tokens(ids, tables, MaskingOptions(0.0, 20, 3, 4), np.random.default_rng(0))
    assert none.positions.size == 0 and np.array_equal(none.input_ids, ids)


def test_batched_walk_matches_the_one_example_walk(
    static: PretrainingDataset, tokenizer: AlbertTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The array walk over a whole batch chooses exactly what the plain-Python walk chooses."""
    tables = VocabularyTables.from_tokenizer(tokenizer)
    examples = [_originals(static[i]) for i in range(0, len(static), max(1, len(static) // 300))]
    ids, lengths = np.concatenate(examples), np.array([e.size for e in examples])
    for options in (MaskingOptions(0.15, 20, 3, tokenizer.mask_token_id), MaskingOptions(0.3, 40, 4, 4)):
        batched = mask_tokens(ids, tables, options, np.random.default_rng(7), lengths)
        monkeypatch.setattr(masking, "FEW_EXAMPLES", len(examples))  # every example walked in Python
        one_by_one = mask_tokens(ids, tables, options, np.random.default_rng(7), lengths)
        monkeypatch.undo()
        for name in ("input_ids", "positions", "labels", "counts", "span_words", "span_drawn"):
            assert np.array_equal(getattr(batched, name), getattr(one_by_one, name)), name
        assert batched.counts.sum() > len(examples) and batched.span_words[1:].sum() > 0


def test_concatenated_ranges_and_array_truncation() -> None:
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 50, 200)
    stops = starts + rng.integers(0, 6, 200)  # empty ranges included
    expected = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
    assert np.array_equal(masking.concatenated_ranges(starts, stops), expected)
    first, second = rng.integers(1, 300, 500), rng.integers(1, 300, 500)
    cut_first, cut_second = _truncation_counts(first, second, 253)
    scalar = [_truncation_counts(int(a), int(b), 253) for a, b in zip(first, second, strict=True)]
    assert [(int(a), int(b)) for a, b in zip(cut_first, cut_second, strict=True)] == scalar
    assert np.all(first - cut_first + second - cut_second <= 253)


def test_wordpiece_vocabulary_marks_continuations(tmp_path: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "play", "##ing", "中", ",", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tables = VocabularyTables.from_tokenizer(AlbertTokenizer.from_pretrained(tmp_path))
    assert tables.word_start.tolist()[5:] == [True, False, True, True, False]
    assert tables.maskable.tolist()[:5] == [False, True, False, False, False]
    assert tables.random_ids.tolist() == [5, 6, 7, 8, 9]


# --------------------------------------------------------------------------------------------
# the tokenising engine: sentencepiece where it gives the tokenizer's ids, else the tokenizer's own
# --------------------------------------------------------------------------------------------


def _text_lines(path: Path, limit: int = 200_000) -> list[str]:
    text = path.read_bytes()[:limit].decode("utf-8", errors="ignore")
    return [line for line in text.splitlines() if line.strip()]


def test_sentencepiece_engine_gives_the_tokenizers_ids(
    shared_data: Path, corpus: dict[str, Path], tokenizer_dir: Path, tokenizer: AlbertTokenizer
) -> None:
    assert choose_engine(tokenizer, tokenizer_dir) == "sentencepiece"
    fast = make_encoder(tokenizer, tokenizer_dir, "sentencepiece")
    sources = [corpus["en"], corpus["zh"], shared_data / "pretrain/zh/fortunes_zh.txt"]
    sources += [shared_data / "pretrain/en/fortunes.txt", shared_data / "pretrain/en/austen.txt"]
    for source in sources:
        lines = _text_lines(source)
        expected = [tokenizer.encode(line, add_special_tokens=False) for line in lines]
        got = fast(lines)
        differing = [i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b]
        assert len(differing) <= 0.005 * len(lines), (source.name, len(differing), len(lines))
        for i in differing:  # only exact Viterbi ties: another segmentation of the same text
            assert tokenizer.decode(got[i]) == tokenizer.decode(expected[i]), lines[i]


@pytest.mark.parametrize(("do_lower_case", "keep_accents"), [(True, False), (False, False), (True, True)])
def test_python_normalisation_is_the_tokenizers(do_lower_case: bool, keep_accents: bool) -> None:
    from albert.tokenization import albert_normalizer

    texts = [
        "ΟΔΟΣ Σ ΣΑΣ",  # lower-cased per character: no word-final sigma
        "Café RÉSUMÉ İstanbul straße ǅ",
        "\u0915\u093e \u20dd mark\U0001d167s beyond the BMP \U0001f600",  # Mc, Me, astral Mn
        "``quoted'' \u00a0 ¨ ﬁ ①\tand\u3000spaces ",
    ]
    reference = albert_normalizer(do_lower_case, keep_accents)
    encoder = SentencePieceEncoder(b"", do_lower_case, keep_accents, load=False)
    for text in texts:
        assert " ".join(encoder.normalize(text).split()) == " ".join(reference.normalize_str(text).split())


def test_third_party_model_with_appended_specials_maps_unknowns(
    corpus: dict[str, Path], tmp_path: Path
) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=str(corpus["en_train"]), model_prefix=str(tmp_path / "spiece"), vocab_size=400,
        num_threads=1, minloglevel=2,
    )  # fmt: skip
    tokenizer = AlbertTokenizer.from_pretrained(tmp_path)  # <unk> <s> </s> only: ALBERT's are appended
    assert len(tokenizer) > tokenizer.vocab_size
    assert choose_engine(tokenizer, tmp_path) == "sentencepiece"
    lines = _text_lines(corpus["en"], 30_000) + ["中文 \u2603\u2604 unknown 字 symbols", "Ünïcödé ΩΣ"]
    got = make_encoder(tokenizer, tmp_path, "sentencepiece")(lines)
    assert got == [tokenizer.encode(line, add_special_tokens=False) for line in lines]
    assert tokenizer.unk_token_id in got[-2] and max(map(max, got)) < tokenizer.vocab_size


def test_special_token_strings_are_ordinary_text(tokenizer_dir: Path, tokenizer: AlbertTokenizer) -> None:
    text = ["fill in the [MASK] please"]
    assert tokenizer.mask_token_id in make_encoder(tokenizer, tokenizer_dir, "tokenizers")(text)[0]
    fast = make_encoder(tokenizer, tokenizer_dir, "sentencepiece")(text)[0]
    assert tokenizer.mask_token_id not in fast  # segmented like any other (lower-cased) text:
    assert fast == tokenizer.encode("fill in the [mask] please", add_special_tokens=False)


def test_tokenizers_engine_for_wordpiece_and_split_digit_comma(
    tokenizer_dir: Path, tmp_path: Path, corpus: dict[str, Path]
) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "in", "the", "beginning", "god", ",", "."]
    (tmp_path / "wp").mkdir()
    (tmp_path / "wp/vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    digit_comma = tmp_path / "digit_comma"
    AlbertTokenizer.from_pretrained(tokenizer_dir, split_digit_comma=True).save_pretrained(digit_comma)
    for directory in (tmp_path / "wp", digit_comma):
        tokenizer = AlbertTokenizer.from_pretrained(directory)
        assert choose_engine(tokenizer, directory) == "tokenizers"
        with pytest.raises(AlbertError, match="sentencepiece engine cannot tokenise.*--tokenizer-engine"):
            choose_engine(tokenizer, directory, "sentencepiece")
    manifest = build_pretraining_data(
        digit_comma, [corpus["en"]], tmp_path / "data", **{**OPTIONS, "dupe_factor": 1}
    )
    assert manifest["tokenizer_engine"] == "tokenizers"
    forced = build_pretraining_data(
        tokenizer_dir, [corpus["en"]], tmp_path / "forced", tokenizer_engine="tokenizers", **OPTIONS
    )
    assert forced["tokenizer_engine"] == "tokenizers"
    with pytest.raises(AlbertError, match="tokenizer engine must be one of"):
        build_pretraining_data(tokenizer_dir, [corpus["en"]], tmp_path / "x", tokenizer_engine="fast")


# --------------------------------------------------------------------------------------------
# reproducibility, dynamic masking, training
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_same_bytes_with_one_and_two_workers(
    tokenizer_dir: Path, corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_text, "UNIT_BYTES", 40_000)  # several units per file, shared by two workers
    inputs = [corpus["en"], corpus["zh"]]
    options = {**OPTIONS, "dupe_factor": 1}
    one = build_pretraining_data(tokenizer_dir, inputs, tmp_path / "one", workers=1, **options)
    two = build_pretraining_data(tokenizer_dir, inputs, tmp_path / "two", workers=2, **options)
    assert one == two
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    other = build_pretraining_data(tokenizer_dir, inputs, tmp_path / "other", seed=7, **options)
    assert (tmp_path / "other/shard-00000.input_ids.bin").read_bytes() != (
        tmp_path / "one/shard-00000.input_ids.bin"
    ).read_bytes()
    assert other["counts"]["documents"] == one["counts"]["documents"]


def test_dynamic_masking_differs_by_epoch_and_is_reproducible(
    tokenizer_dir: Path, corpus: dict[str, Path], tmp_path: Path
) -> None:
    manifest = build_pretraining_data(
        tokenizer_dir,
        [corpus["en"]],
        tmp_path / "dyn",
        dynamic_masking=True,
        max_seq_length=MAX_SEQ,
        progress=False,
    )
    assert manifest["options"]["dupe_factor"] == 1 and manifest["counts"]["predictions"] == 0
    first, again = PretrainingDataset(tmp_path / "dyn"), PretrainingDataset(tmp_path / "dyn")
    indices = range(0, len(first), max(1, len(first) // 50))
    epoch0 = [first[i] for i in indices]
    assert all(torch.equal(a["labels"], again[i]["labels"]) for a, i in zip(epoch0, indices, strict=True))
    first.set_epoch(1)
    epoch1 = [first[i] for i in indices]
    differing = sum(not torch.equal(a["labels"], b["labels"]) for a, b in zip(epoch0, epoch1, strict=True))
    assert differing > 0.9 * len(epoch0)
    for a, b in zip(epoch0, epoch1, strict=True):  # same text underneath, only the masks move
        assert np.array_equal(_originals(a), _originals(b))
        assert (a["labels"] != -100).any()
    again.set_epoch(1)
    assert all(
        torch.equal(b["input_ids"], again[i]["input_ids"]) for b, i in zip(epoch1, indices, strict=True)
    )


def test_collated_batch_trains_albert(static: PretrainingDataset) -> None:
    from albert import AlbertConfig, AlbertForPreTraining

    loader = torch.utils.data.DataLoader(static, batch_size=4, shuffle=True, collate_fn=static.collate)
    batch = next(iter(loader))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "sentence_order_label"}
    width = batch["input_ids"].shape[1]
    lengths = batch["attention_mask"].sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert (batch["input_ids"][row, length:] == static.pad_token_id).all()
        assert (batch["labels"][row, length:] == -100).all()
    assert width == int(lengths.max())
    config = AlbertConfig.from_preset(
        "albert-tiny", vocab_size=static.manifest["tokenizer"]["vocab_size"], max_position_embeddings=MAX_SEQ
    )
    torch.manual_seed(0)
    out = AlbertForPreTraining(config)(**batch)
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    assert torch.equal(collate_pretraining([static[0]])["input_ids"][0], static[0]["input_ids"])


# --------------------------------------------------------------------------------------------
# mistakes: one clear message, nothing half-written that looks complete
# --------------------------------------------------------------------------------------------


def _assert_nothing_left(output: Path) -> None:
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]


def test_empty_input(tokenizer_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n\n \n")
    with pytest.raises(AlbertError, match="no text found"):
        build_pretraining_data(tokenizer_dir, [tmp_path / "empty.txt"], tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path / "out")


def test_no_multi_sentence_document(tokenizer_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("A lonely sentence.\n\nAnother one.\n\nAnd a third.\n")
    with pytest.raises(AlbertError, match="none of the 3 document"):
        build_pretraining_data(tokenizer_dir, [tmp_path / "one.txt"], tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path / "out")


def test_binary_junk_is_refused(tokenizer_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(AlbertError, match="does not look like UTF-8 text"):
        build_pretraining_data(tokenizer_dir, [junk], tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path / "out")
    fake_gz = tmp_path / "fake.txt.gz"
    fake_gz.write_bytes(b"not gzip at all\n")
    with pytest.raises(AlbertError, match="cannot read"):
        build_pretraining_data(tokenizer_dir, [fake_gz], tmp_path / "out", progress=False)
    _assert_nothing_left(tmp_path / "out")


def test_a_few_invalid_lines_are_skipped_and_gz_is_read(tokenizer_dir: Path, tmp_path: Path) -> None:
    text = "\n".join(f"Sentence number {i} is here." for i in range(200)).encode()
    data = text[:3000] + b"\nbroken \xff\xfe line.\n" + text[3000:]
    with gzip.open(tmp_path / "mixed.txt.gz", "wb") as handle:
        handle.write(data)
    manifest = build_pretraining_data(
        tokenizer_dir, [tmp_path / "mixed.txt.gz"], tmp_path / "out", max_seq_length=64, progress=False
    )
    assert manifest["counts"]["invalid_utf8_lines"] == 1 and manifest["counts"]["examples"] > 0
    assert manifest["inputs"][0]["format"] == "sentences"


def test_tokenizer_mismatch_on_reload(static_dir: Path, tmp_path: Path, corpus: dict[str, Path]) -> None:
    from albert.tokenizer_train import train_tokenizer

    other = train_tokenizer([corpus["en_train"]], 500, tmp_path / "other_tok", num_threads=1)
    with pytest.raises(AlbertError, match="built with a different tokenizer.*rebuild it with `albert data"):
        PretrainingDataset(static_dir, tokenizer_dir=other)


def test_damaged_or_foreign_directories(static_dir: Path, tmp_path: Path, tokenizer_dir: Path) -> None:
    with pytest.raises(AlbertError, match="no manifest.json"):
        PretrainingDataset(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    manifest = json.loads((static_dir / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(AlbertError, match="format version 99"):
        PretrainingDataset(copy)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/keep.txt").write_text("mine")
    with pytest.raises(AlbertError, match="does not hold pretraining data"):
        build_pretraining_data(
            tokenizer_dir, [static_dir / "manifest.json"], tmp_path / "notes", progress=False
        )
    assert (tmp_path / "notes/keep.txt").read_text() == "mine"
    with pytest.raises(AlbertError, match="max_seq_length"):
        build_pretraining_data(
            tokenizer_dir, [static_dir / "manifest.json"], tmp_path / "x", max_seq_length=4
        )


def test_interrupted_build_leaves_nothing_and_keeps_old_data(
    tokenizer_dir: Path, corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from albert.data import shards

    output = tmp_path / "data"
    first = build_pretraining_data(
        tokenizer_dir, [corpus["en"]], output, max_seq_length=64, dupe_factor=1, progress=False
    )
    calls = []

    def interrupt(self: shards.ShardWriter, result: object) -> None:
        calls.append(result)
        raise KeyboardInterrupt

    monkeypatch.setattr(shards.ShardWriter, "add", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_pretraining_data(tokenizer_dir, [corpus["en"]], output, max_seq_length=96, progress=False)
    assert calls and PretrainingDataset(output).manifest == first  # the earlier data is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


# --------------------------------------------------------------------------------------------
# the CLI
# --------------------------------------------------------------------------------------------


def test_cli_end_to_end(
    tokenizer_dir: Path, corpus: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from albert.cli import main

    output = tmp_path / "cli"
    args = ["data", "--tokenizer", str(tokenizer_dir), "--input", str(corpus["zh"]), "--output", str(output)]
    assert main([*args, "--max-seq-length", "64", "--dupe-factor", "1", "--format", "paragraphs"]) == 0
    printed = capsys.readouterr().out
    for word in ("documents", "examples", "masked", "swapped", "MB/s"):
        assert word in printed
    dataset = PretrainingDataset(output, tokenizer_dir=tokenizer_dir)
    assert dataset.manifest["inputs"][0]["format"] == "paragraphs" and len(dataset) > 0
    assert max(len(dataset[i]["input_ids"]) for i in range(len(dataset))) <= 64
    bad = [
        "data",
        "--tokenizer",
        str(tokenizer_dir),
        "--input",
        str(tmp_path / "nope.txt"),
        "--output",
        str(output),
    ]
    assert main(bad) == 2
    assert "does not exist" in capsys.readouterr().err
    assert math.isclose(dataset.manifest["options"]["masked_lm_prob"], 0.15)
    table = tmp_path / "reviews.tsv"
    table.write_text(
        "stars\treview\n" + "".join(f"{i % 5}\tA fine film, part {i}. I liked it.\n" for i in range(40))
    )
    args = ["data", "--tokenizer", str(tokenizer_dir), "--input", str(table), "--output", str(output)]
    assert main([*args, "--text-column", "review", "--max-seq-length", "32"]) == 0
    manifest = PretrainingDataset(output, tokenizer_dir=tokenizer_dir).manifest
    assert manifest["inputs"][0]["format"] == "table" and manifest["counts"]["sentences"] == 80
    assert manifest["options"]["text_columns"] == ["review"]
