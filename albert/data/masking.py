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

    @classmethod
    def nothing(cls, ids: np.ndarray, n_examples: int, ngram: int) -> Masked:
        """`ids` as they are: no predictions (no masking, or nothing maskable)."""
        empty, no_spans = np.zeros(0, dtype=np.int64), np.zeros(ngram, dtype=np.int64)
        return cls(ids.copy(), empty, empty, np.zeros(n_examples, np.int64), no_spans, no_spans.copy())


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
    a repeat is skipped just as the original skips a covered word. The greedy walk then advances
    all examples of the batch together, one visited word each per step, in numpy (`_Walk`). An
    example that runs out of draws before its budget is spent walks a full shuffle of its words,
    as the original.
    """
    lengths = np.array([ids.size], dtype=np.int64) if lengths is None else np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n_examples = lengths.size
    candidates = np.flatnonzero(tables.maskable[ids])  # positions in the flat batch
    if options.masked_lm_prob <= 0 or candidates.size == 0:
        return Masked.nothing(ids, n_examples, options.ngram)
    words = _Words.find(ids, candidates, offsets, tables)
    budgets = np.minimum(
        options.max_predictions_per_seq, np.maximum(1, np.round(lengths * options.masked_lm_prob))
    ).astype(np.int64)
    ngram_draws = rng.random(words.count)  # each word's n, drawn up front, looked up only if visited
    anchors_per_example = np.where(words.per_example > 0, ANCHORS_PER_PREDICTION * budgets + EXTRA_ANCHORS, 0)
    anchor_example = np.repeat(np.arange(n_examples), anchors_per_example)
    anchors = (
        words.offsets[anchor_example] + rng.random(anchor_example.size) * words.per_example[anchor_example]
    )
    walk = _Walk(words, ngram_draws, budgets, options)
    walk.visit(np.arange(n_examples), _padded_rows(anchors.astype(np.int64), anchors_per_example))
    short = np.flatnonzero((walk.chosen < budgets) & (words.per_example > 0))
    if short.size:  # rare: walk a full shuffle of these examples' words, as the original does
        shuffles = [words.offsets[e] + rng.permutation(words.per_example[e]) for e in short.tolist()]
        walk.visit(short, _padded_rows(np.concatenate(shuffles), words.per_example[short]))
    covered_words = np.flatnonzero(walk.covered[: words.count])
    chosen = candidates[concatenated_ranges(words.bounds[covered_words], words.bounds[covered_words + 1])]
    return _replace(ids, chosen, offsets, n_examples, walk, tables, options, rng)


ANCHORS_PER_PREDICTION = 1  # random words drawn per prediction of budget, plus
EXTRA_ANCHORS = 8  # these: enough that the fallback full shuffle is rare (< 0.3 % of examples)
FEW_EXAMPLES = 4  # walks of this many examples or fewer run in plain Python (`_Walk.walk_one`)


def concatenated_ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])`` without a Python loop."""
    sizes = stops - starts
    total = int(sizes.sum())
    first = np.cumsum(sizes) - sizes  # where each range begins in the output
    return np.arange(total, dtype=np.int64) + np.repeat(starts - first, sizes)


def _padded_rows(flat: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Split `flat` into rows of `counts` items, padded with -1 to one width: [rows, max(counts)]."""
    width = int(counts.max()) if counts.size else 0
    rows = np.full((counts.size, width), -1, dtype=np.int64)
    rows[np.arange(width) < counts[:, None]] = flat
    return rows


@dataclass
class _Words:
    """The words of a batch, numbered across it, as ranges of candidate indices."""

    bounds: np.ndarray  # word w is candidates[bounds[w]:bounds[w + 1]]
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
        first = np.flatnonzero(starts)  # each word's first candidate
        word_offsets = np.searchsorted(first, np.searchsorted(candidates, offsets))
        return cls(np.append(first, candidates.size), word_offsets, np.diff(word_offsets))


class _Walk:
    """The original's greedy walk, run for many examples at once.

    Each example visits words in its own order; from a visited word it takes an n-gram of its
    drawn n (at most the words left in the example), shortened while it overshoots the budget,
    and skips it if it still does or if it touches a covered word. Examples own disjoint words,
    so one step of every example is independent of the others and runs as array operations.
    """

    def __init__(
        self, words: _Words, ngram_draws: np.ndarray, budgets: np.ndarray, options: MaskingOptions
    ) -> None:
        self.words, self.ngram_draws, self.budgets = words, ngram_draws, budgets
        self.ngram, self.ngram_cdf = options.ngram, options.ngram_cdf
        self.chosen = np.zeros(budgets.size, dtype=np.int64)  # tokens chosen per example
        self.covered = np.zeros(words.count + self.ngram, dtype=bool)  # per word, padded for n-gram reach
        self.span_words = np.zeros(self.ngram, dtype=np.int64)  # taken spans by their n ...
        self.span_drawn = np.zeros(self.ngram, dtype=np.int64)  # ... and by the n drawn for them
        self._steps = np.arange(self.ngram)

    def visit(self, examples: np.ndarray, order: np.ndarray) -> None:
        """Walk `examples`, row i visiting the words ``order[i]`` (-1 = no more) until its budget is spent."""
        if examples.size <= FEW_EXAMPLES:
            for example, row in zip(examples.tolist(), order, strict=True):
                self.walk_one(example, row[row >= 0])
            return
        rows = np.arange(examples.size)
        for column in range(order.shape[1]):
            example = examples[rows]
            word = order[rows, column]
            live = (word >= 0) & (self.chosen[example] < self.budgets[example])
            rows, example, word = rows[live], example[live], word[live]
            if not rows.size:
                return
            self._step(example, word)

    def _step(self, example: np.ndarray, word: np.ndarray) -> None:
        bounds, steps = self.words.bounds, self._steps
        end = self.words.offsets[example + 1]
        drawn = self._ngrams(word)
        usable = np.minimum(drawn, end - word)
        sizes = bounds[np.minimum(word[:, None] + steps + 1, end[:, None])] - bounds[word][:, None]
        left = self.budgets[example] - self.chosen[example]
        # the longest n <= usable that fits the budget (sizes grow with n), else 1
        n = np.maximum(((sizes <= left[:, None]) & (steps < usable[:, None])).sum(axis=1), 1)
        size = sizes[np.arange(word.size), n - 1]
        span = word[:, None] + steps
        in_span = steps < n[:, None]
        take = (size <= left) & ~(self.covered[span] & in_span).any(axis=1)
        self.covered[span[take][in_span[take]]] = True
        self.chosen[example[take]] += size[take]
        self.span_words += np.bincount(n[take] - 1, minlength=self.ngram)
        self.span_drawn += np.bincount(drawn[take] - 1, minlength=self.ngram)

    def _ngrams(self, words: np.ndarray) -> np.ndarray:
        """The n drawn for each of `words`: p(n) ∝ 1/n, n = 1..ngram."""
        return np.searchsorted(self.ngram_cdf, self.ngram_draws[words], side="right") + 1

    def walk_one(self, example: int, order: np.ndarray) -> None:
        """The same walk for one example in plain Python: a few times faster than array steps for a
        lone example (the dataset masks one at a time; a batch has a few fallback shuffles)."""
        first, end = int(self.words.offsets[example]), int(self.words.offsets[example + 1])
        bounds = self.words.bounds[first : end + 1].tolist()
        ngrams = self._ngrams(np.arange(first, end)).tolist()
        covered = bytearray(self.covered[first:end].tobytes())
        chosen, budget = int(self.chosen[example]), int(self.budgets[example])
        for word in (order - first).tolist():
            if chosen >= budget:
                break
            drawn = ngrams[word]
            n = min(drawn, end - first - word)
            while n > 1 and chosen + bounds[word + n] - bounds[word] > budget:
                n -= 1
            size = bounds[word + n] - bounds[word]
            if chosen + size > budget or 1 in covered[word : word + n]:
                continue
            covered[word : word + n] = b"\x01" * n
            chosen += size
            self.span_words[n - 1] += 1
            self.span_drawn[drawn - 1] += 1
        self.covered[first:end] = np.frombuffer(covered, dtype=bool)
        self.chosen[example] = chosen


def _replace(
    ids: np.ndarray,
    chosen: np.ndarray,
    offsets: np.ndarray,
    n_examples: int,
    walk: _Walk,
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
    return Masked(
        input_ids=output,
        positions=chosen - offsets[example_of],
        labels=ids[chosen],
        counts=np.bincount(example_of, minlength=n_examples),
        span_words=walk.span_words,
        span_drawn=walk.span_drawn,
    )
