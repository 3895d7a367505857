"""ALBERT's masked-LM recipe: n-gram whole-word masking, numpy only.

From google-research/albert ``create_pretraining_data.py``:

* words: a SentencePiece piece starting with ``▁`` starts a word, as does a CJK character or a
  piece of punctuation only (each is a word of its own); with a WordPiece vocabulary ``##``
  continues a word. [CLS]/[SEP]/padding are never candidates, and the first piece after one
  always starts a word, so no word straddles a [SEP] or a truncated edge;
* budget: ``min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))`` tokens,
  ``len(tokens)`` counting [CLS] and [SEP] as the original does;
* spans: visit the words in random order; from each, take an n-gram of n whole words,
  n ≤ `ngram` with p(n) ∝ 1/n; shorten it while it overshoots the budget; skip it if it still
  does or if it touches a word already masked. (So masked spans are a little shorter than
  drawn ones - n = 1, 2, 3 about 0.62, 0.24, 0.14 instead of 0.55, 0.27, 0.18 at 128 tokens - as in
  the original; the manifest counts both);
* each chosen token: 80 % [MASK], 10 % a random vocabulary token (never a special), 10 % unchanged.

The same function masks at build time (static masking) and at load time (`--dynamic-masking`),
so both follow one recipe. The per-vocabulary tables it needs live in `VocabularyTables`,
saved next to the shards so a dataset can mask without loading the tokenizer.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPIECE_UNDERLINE = "▁"
WORD_START_FILE = "word_start.npy"
MASKABLE_FILE = "maskable.npy"
RANDOM_IDS_FILE = "random_ids.npy"


def is_cjk(char: str) -> bool:
    """CJK ideographs (BERT's `_is_chinese_char` ranges): each one is a word of its own."""
    cp = ord(char)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _is_punctuation_only(piece: str) -> bool:
    return bool(piece) and all(unicodedata.category(c)[0] in "PS" for c in piece)


def piece_starts_word(piece: str, wordpiece: bool) -> bool:
    """Whether a vocabulary piece begins a new word for whole-word masking."""
    if wordpiece:
        return not piece.startswith("##")
    return piece.startswith(SPIECE_UNDERLINE) or is_cjk(piece[:1] or " ") or _is_punctuation_only(piece)


@dataclass(frozen=True)
class VocabularyTables:
    """Per-id facts masking needs: word starts, which ids may be masked, which may replace."""

    word_start: np.ndarray  # bool[vocab]: the piece begins a word
    maskable: np.ndarray  # bool[vocab]: may be chosen for prediction (not [CLS]/[SEP]/pad/[MASK])
    random_ids: np.ndarray  # int64[]: the normal vocabulary, source of the 10 % random replacements

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> VocabularyTables:
        size = len(tokenizer)
        engine = tokenizer.backend_tokenizer
        pieces = [engine.id_to_token(i) or "" for i in range(size)]
        wordpiece = tokenizer.kind == "wordpiece"
        word_start = np.fromiter((piece_starts_word(p, wordpiece) for p in pieces), dtype=bool, count=size)
        special = {i for i, token in engine.get_added_tokens_decoder().items() if token.special}
        special |= set(tokenizer.all_special_ids)
        maskable = np.ones(size, dtype=bool)
        maskable[sorted(special - {tokenizer.unk_token_id})] = False  # unknown text is still text
        word_start[tokenizer.unk_token_id] = True
        random_ids = np.array(sorted(set(range(size)) - special), dtype=np.int64)
        return cls(word_start, maskable, random_ids)

    def save(self, directory: Path) -> dict[str, str]:
        files = {"word_start": WORD_START_FILE, "maskable": MASKABLE_FILE, "random_ids": RANDOM_IDS_FILE}
        for name, filename in files.items():
            np.save(directory / filename, getattr(self, name), allow_pickle=False)
        return files

    @classmethod
    def load(cls, directory: Path, files: dict[str, str]) -> VocabularyTables:
        arrays = {name: np.load(directory / filename, allow_pickle=False) for name, filename in files.items()}
        return cls(**arrays)


@dataclass(frozen=True)
class MaskingOptions:
    """The recipe's knobs plus the ids it writes."""

    masked_lm_prob: float
    max_predictions_per_seq: int
    ngram: int
    mask_token_id: int

    @property
    def ngram_cdf(self) -> np.ndarray:
        """Cumulative p(n) ∝ 1/n for n = 1..ngram (ngram=3: 6/11, 3/11, 2/11)."""
        weights = 1.0 / np.arange(1, self.ngram + 1)
        return np.cumsum(weights / weights.sum())

    def budget(self, length: int) -> int:
        """How many tokens of a `length`-token example (incl. [CLS]/[SEP]) to predict."""
        return min(self.max_predictions_per_seq, max(1, round(length * self.masked_lm_prob)))


@dataclass
class Masked:
    """A batch of examples after masking (flat, like the shards): ids, predictions and span counts."""

    input_ids: np.ndarray  # all examples' ids, concatenated, masked
    positions: np.ndarray  # int64, predicted positions within their example, grouped by example, sorted
    labels: np.ndarray  # int64, original ids at those positions
    counts: np.ndarray  # int64 per example: how many positions it has
    span_words: np.ndarray  # histogram: masked spans of n words at [n - 1] ...
    span_drawn: np.ndarray  # ... and the same spans by the n drawn for them (before fitting the budget)


def mask_tokens(
    ids: np.ndarray,
    tables: VocabularyTables,
    options: MaskingOptions,
    rng: np.random.Generator,
    lengths: np.ndarray | None = None,
) -> Masked:
    """Apply ALBERT's n-gram whole-word masking to examples (each with its [CLS] and [SEP]s).

    `ids` holds one example, or several concatenated with their `lengths`: a builder masks a
    unit's examples in one call, the dataset one example at a time, with the same code.

    Speed: the original shuffles all of an example's words and walks them until the budget is
    spent, which takes a dozen or so of ~400. Here each example first draws a few more random words
    than it can need, with replacement - their first occurrences are a uniformly random order, and
    a repeat is skipped just as the original skips a covered word - so all the arrays are built
    for the whole batch at once and only the short greedy walk is Python. An example that
    runs out of draws before its budget is spent walks a full shuffle of its words, as the original.
    """
    lengths = np.array([ids.size], dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_examples = lengths.size
    candidates = np.flatnonzero(tables.maskable[ids])  # positions in the flat batch
    no_spans = np.zeros(options.ngram, dtype=np.int64)
    if options.masked_lm_prob <= 0 or candidates.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Masked(ids.copy(), empty, empty, np.zeros(n_examples, np.int64), no_spans, no_spans.copy())
    words = _Words.find(ids, candidates, offsets, tables)
    budgets = np.minimum(
        options.max_predictions_per_seq, np.maximum(1, np.round(lengths * options.masked_lm_prob))
    )
    budgets = budgets.astype(np.int64)
    ngrams = (
        np.searchsorted(options.ngram_cdf, rng.random(words.count), side="right") + 1
    )  # n drawn by each word
    per_example = np.where(words.per_example > 0, ANCHORS_PER_PREDICTION * budgets + EXTRA_ANCHORS, 0)
    anchor_example = np.repeat(np.arange(n_examples), per_example)
    anchors = words.offsets[anchor_example] + (
        rng.random(anchor_example.size) * words.per_example[anchor_example]
    )
    visits = words.visits(anchors.astype(np.int64), anchor_example, ngrams, options.ngram)
    anchor_offsets = np.concatenate([[0], np.cumsum(per_example)]).tolist()
    covered = bytearray(words.count)  # per word; spans are whole words, so this is all overlap needs
    spans: list[tuple[int, int]] = []
    for example, budget in enumerate(budgets.tolist()):
        window = slice(anchor_offsets[example], anchor_offsets[example + 1])
        chosen = _choose_spans([v[window] for v in visits], budget, 0, covered, spans)
        if chosen < budget and words.per_example[example]:
            shuffled = words.offsets[example] + rng.permutation(words.per_example[example])
            every = words.visits(shuffled, np.full(shuffled.size, example), ngrams, options.ngram)
            _choose_spans(every, budget, chosen, covered, spans)
    chosen_positions = candidates[np.frombuffer(covered, dtype=bool)[words.of_candidate]]
    return _replace(ids, chosen_positions, offsets, n_examples, spans, tables, options, rng)


ANCHORS_PER_PREDICTION = 1  # random words drawn per prediction of budget, plus
EXTRA_ANCHORS = 8  # these: enough that the fallback full shuffle is rare (< 0.3 % of examples)


@dataclass
class _Words:
    """The words of a batch, numbered across it, as ranges of candidate indices."""

    bounds: np.ndarray  # word w is candidates[bounds[w]:bounds[w + 1]]
    of_candidate: np.ndarray  # word number of every candidate token
    offsets: np.ndarray  # example e owns words offsets[e]:offsets[e + 1]
    per_example: np.ndarray

    @property
    def count(self) -> int:
        return self.bounds.size - 1

    @classmethod
    def find(
        cls, ids: np.ndarray, candidates: np.ndarray, offsets: np.ndarray, tables: VocabularyTables
    ) -> _Words:
        starts = tables.word_start[ids[candidates]]
        starts[0] = True
        starts[1:] |= np.diff(candidates) > 1  # after [CLS], [SEP] or another example: a new word
        first = np.flatnonzero(starts)
        example = np.searchsorted(offsets, candidates[first], side="right") - 1
        per_example = np.bincount(example, minlength=offsets.size - 1)
        word_offsets = np.concatenate([[0], np.cumsum(per_example)])
        return cls(np.append(first, candidates.size), np.cumsum(starts) - 1, word_offsets, per_example)

    def visits(
        self, words: np.ndarray, example: np.ndarray, ngrams: np.ndarray, ngram: int
    ) -> list[list[Any]]:
        """Per visited word: the word, its drawn n, the n that fits in its example, token sizes by n."""
        end = self.offsets[example + 1]
        drawn = ngrams[words]
        usable = np.minimum(drawn, end - words)
        reach = np.minimum(words[:, None] + np.arange(1, ngram + 1), end[:, None])
        sizes = self.bounds[reach] - self.bounds[words][:, None]
        return [words.tolist(), drawn.tolist(), usable.tolist(), sizes.tolist()]


def _choose_spans(
    visits: list[list[Any]], budget: int, chosen: int, covered: bytearray, spans: list[tuple[int, int]]
) -> int:
    """The original's greedy walk for one example: take each visited word's n-gram if it fits.

    An n-gram that overshoots the budget is shortened; one that still does, or that touches a
    covered word, is skipped. Marks `covered`, records (n, n drawn) in `spans`, returns tokens chosen.
    """
    for word, drawn, n, size_by_n in zip(*visits, strict=True):
        if chosen >= budget:
            break
        while n > 1 and chosen + size_by_n[n - 1] > budget:
            n -= 1
        size = size_by_n[n - 1]
        if chosen + size > budget or 1 in covered[word : word + n]:
            continue
        covered[word : word + n] = b"\x01" * n
        chosen += size
        spans.append((n, drawn))
    return chosen


def _replace(
    ids: np.ndarray,
    chosen: np.ndarray,
    offsets: np.ndarray,
    n_examples: int,
    spans: list[tuple[int, int]],
    tables: VocabularyTables,
    options: MaskingOptions,
    rng: np.random.Generator,
) -> Masked:
    """80 % [MASK], 10 % random token, 10 % unchanged, decided per chosen token."""
    output = ids.copy()
    decision = rng.random(chosen.size)
    output[chosen[decision < 0.8]] = options.mask_token_id
    replaced = chosen[decision >= 0.9]  # [0.8, 0.9) keeps the original token
    output[replaced] = tables.random_ids[rng.integers(0, tables.random_ids.size, size=replaced.size)]
    example_of = np.searchsorted(offsets, chosen, side="right") - 1
    span_array = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    return Masked(
        input_ids=output,
        positions=chosen - offsets[example_of],
        labels=ids[chosen],
        counts=np.bincount(example_of, minlength=n_examples),
        span_words=np.bincount(span_array[:, 0] - 1, minlength=options.ngram),
        span_drawn=np.bincount(span_array[:, 1] - 1, minlength=options.ngram),
    )
