"""One unit of documents -> sentence-order-prediction examples, as flat arrays.

ALBERT's recipe (``create_instances_from_document``), per document and per duplication pass:

1. target length ``max_seq_length - 3``, or, with probability `short_seq_prob`, uniform in
   [2, that] - drawn once per document and pass, as the original does;
2. sentences longer than the target are cut (at word starts) into pieces of at most half the
   target, so a pair of them fits and nothing is lost to truncation;
3. whole sentences are gathered into a chunk until it reaches the target; a chunk always has at
   least two sentences (a lone last sentence joins the chunk before it) because sentence-order
   prediction needs two segments - the original paired such leftovers with random text instead;
4. A = the chunk's first k sentences, k uniform in [1, len - 1], B = the rest; with probability
   0.5 A and B swap (``sentence_order_label`` 1 = swapped, transformers' convention);
5. the longer side loses a token from a random end (front or back, 50/50) until the pair fits;
6. ``[CLS] A [SEP] B [SEP]``, masked by `albert.data.masking.mask_tokens` unless masking is dynamic.

Documents with fewer than two sentences cannot make a pair and are skipped (and counted).
Randomness comes from one generator per unit, seeded by ``(seed, file_index, unit_index)``, so a
unit's output does not depend on which process handles it or when.

Speed: a unit is tokenised in one batch call (`albert.data.encoders`) into one flat id array;
sentences, chunks and the A/B sides are `range`s of positions in it (`_Plan`), and the draws of
steps 4-5 are made for all of a unit's chunks at once, so per example there is no Python beyond grouping sentences, and
every example's tokens are gathered from the flat array in one indexing operation (`_examples`).
The draws are the same distributions as above, taken in a batched order (per pass: every
document's target; then every chunk's k, swap and truncation), which is what fixes the output.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence, Sized
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from albert.data.encoders import Engine, make_encoder
from albert.data.masking import Masked, MaskingOptions, VocabularyTables, concatenated_ranges, mask_tokens
from albert.data.text import Unit, split_sentences


@dataclass(frozen=True)
class ExampleOptions:
    """Everything a worker needs to turn units into examples (picklable: workers get a copy)."""

    tokenizer_dir: str
    tokenizer_engine: Engine  # `albert.data.encoders.choose_engine`'s pick, the same in every worker
    max_seq_length: int
    short_seq_prob: float
    dupe_factor: int
    seed: int
    dynamic_masking: bool
    masking: MaskingOptions
    cls_token_id: int
    sep_token_id: int
    token_dtype: str


@dataclass
class UnitStats:
    """Counts for the manifest and the summary; they add up across units."""

    documents: int = 0
    skipped_documents: int = 0  # fewer than two sentences: no sentence-order pair possible
    sentences: int = 0
    examples: int = 0
    tokens: int = 0
    predictions: int = 0
    swapped: int = 0
    span_words: list[int] = field(default_factory=list)  # histogram: masked spans of n words at [n - 1]
    span_words_drawn: list[int] = field(default_factory=list)  # the same spans by the n drawn for them

    def add(self, other: UnitStats) -> None:
        for name, value in asdict(other).items():
            if name.startswith("span_words"):
                pairs = itertools.zip_longest(getattr(self, name), value, fillvalue=0)
                setattr(self, name, [a + b for a, b in pairs])
            else:
                setattr(self, name, getattr(self, name) + value)


@dataclass
class UnitResult:
    """The examples of one unit as flat arrays, ready to append to a shard."""

    file_index: int
    unit_index: int
    input_ids: np.ndarray  # all examples' tokens, concatenated (token dtype)
    lengths: np.ndarray  # int64 per example
    segment_a: np.ndarray  # int64 per example: length of "[CLS] A [SEP]"; token type 1 after it
    sentence_order: np.ndarray  # uint8 per example: 1 = swapped
    prediction_counts: np.ndarray  # int64 per example (0 under dynamic masking)
    prediction_positions: np.ndarray  # uint16, concatenated
    prediction_labels: np.ndarray  # original ids at those positions (token dtype)
    stats: UnitStats


def unit_seed(seed: int, unit: Unit) -> np.random.Generator:
    return np.random.default_rng([seed, unit.file_index, unit.unit_index])


class UnitProcessor:
    """Turns units into `UnitResult`s; one per process, holding the tokenizer and vocabulary tables."""

    def __init__(self, options: ExampleOptions) -> None:
        from albert.tokenization import AlbertTokenizer

        self.options = options
        tokenizer = AlbertTokenizer.from_pretrained(options.tokenizer_dir)
        self.tokenizer = tokenizer
        self.encode = make_encoder(tokenizer, options.tokenizer_dir, options.tokenizer_engine)
        self.tables = VocabularyTables.from_tokenizer(tokenizer)
        self.max_tokens = options.max_seq_length - 3  # room for [CLS], [SEP], [SEP]

    def __call__(self, unit: Unit) -> UnitResult:
        ids, documents, stats = self._tokenize(unit)
        rng = unit_seed(self.options.seed, unit)
        plan = _Plan(ids, documents, self.max_tokens, self.tables.word_start)
        for _ in range(self.options.dupe_factor):
            plan.add_pass(rng, self.options.short_seq_prob)
        return _examples(unit, ids, plan.pairs(rng), self.options, self.tables, stats, rng)

    def _tokenize(self, unit: Unit) -> tuple[np.ndarray, list[list[range]], UnitStats]:
        """All sentences of the unit in one batch call: the unit's token ids, flat, and each
        document as the ranges of its (non-empty) sentences in them."""
        if unit.format in ("sentences", "conll"):
            split = unit.documents
        else:
            split = [[s for line in document for s in split_sentences(line)] for document in unit.documents]
        flat = [sentence for document in split for sentence in document]
        id_lists = self._encode_words(flat) if unit.format == "conll" else self.encode(flat)
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        ids = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64, count=int(lengths.sum()))
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        stats = UnitStats()
        documents = []
        sentence = 0
        for document in split:
            pieces = [
                range(bounds[i], bounds[i + 1])
                for i in range(sentence, sentence + len(document))
                if bounds[i + 1] > bounds[i]
            ]
            sentence += len(document)
            stats.documents += 1
            stats.sentences += len(pieces)
            if len(pieces) < 2:
                stats.skipped_documents += 1
            else:
                documents.append(pieces)
        return ids, documents, stats

    def _encode_words(self, sentences: list[str]) -> list[list[int]]:
        """Tab-joined CoNLL words -> ids, as token-classification fine-tuning encodes them:
        character-level text as in-word pieces (no word-start marker before every character),
        words as words."""
        from albert.tasks.token_classification import character_encoder, is_char_level

        word_lists = [sentence.split("\t") for sentence in sentences]
        if not is_char_level([w for words in word_lists for w in words]):
            return self.encode([" ".join(words) for words in word_lists])
        encode_char = character_encoder(self.tokenizer)
        return [[i for char in words for i in encode_char(char)] for words in word_lists]


class _Plan:
    """Which token ranges of a unit become examples: chunks of whole segments, pass after pass.

    Segments and chunks are `range`s of positions in the unit's flat ids, so no tokens move until
    `_examples` gathers them all at once. A document's chunks depend only on its target length,
    so those for the full target (nine documents in ten) are worked out once for all passes.
    """

    def __init__(
        self, ids: np.ndarray, documents: list[list[range]], max_tokens: int, word_start: np.ndarray
    ) -> None:
        self.ids, self.documents, self.max_tokens, self.word_start = ids, documents, max_tokens, word_start
        self._full: list[list[list[range]] | None] = [None] * len(documents)
        self.chunks: list[list[range]] = []

    def add_pass(self, rng: np.random.Generator, short_seq_prob: float) -> None:
        """One duplication pass: a target per document (short with `short_seq_prob`), then its chunks."""
        count = len(self.documents)
        short = (rng.random(count) < short_seq_prob).tolist()
        short_targets = rng.integers(2, self.max_tokens + 1, size=count).tolist()
        for index, document in enumerate(self.documents):
            if short[index]:
                self.chunks += self._chunk(document, short_targets[index])
                continue
            full = self._full[index]
            if full is None:
                full = self._full[index] = self._chunk(document, self.max_tokens)
            self.chunks += full

    def _chunk(self, document: list[range], target: int) -> list[list[range]]:
        if max(map(len, document)) <= target:
            return _chunks(document, target)
        first = document[0].start
        pieces = _split_long([self.ids[s.start : s.stop] for s in document], target, self.word_start)
        stops = (first + np.cumsum([p.size for p in pieces])).tolist()
        return _chunks([range(b, e) for b, e in zip([first, *stops[:-1]], stops, strict=True)], target)

    def pairs(self, rng: np.random.Generator) -> _Pairs:
        """Split every chunk into A and B, swap half of them, truncate to fit: all chunks at once."""
        count = len(self.chunks)
        segments = np.fromiter(map(len, self.chunks), dtype=np.int64, count=count)
        splits = np.fromiter(
            (s.start for chunk in self.chunks for s in chunk), dtype=np.int64, count=int(segments.sum())
        )
        first_segment = np.cumsum(segments) - segments
        start = splits[first_segment]
        stop = np.fromiter((chunk[-1].stop for chunk in self.chunks), dtype=np.int64, count=count)
        middle = splits[first_segment + rng.integers(1, segments)]  # A = the first k segments, k in [1, n-1]
        swapped = rng.random(count) < 0.5
        first = np.where(swapped, middle, start), np.where(swapped, stop, middle)
        second = np.where(swapped, start, middle), np.where(swapped, middle, stop)
        cuts = np.stack(_truncation_counts(first[1] - first[0], second[1] - second[0], self.max_tokens))
        front = rng.binomial(cuts, 0.5)  # the original trims each side from a random end, token by token
        return _Pairs(
            first=(first[0] + front[0], first[1] - (cuts[0] - front[0])),
            second=(second[0] + front[1], second[1] - (cuts[1] - front[1])),
            swapped=swapped,
        )


def _split_long(sentences: list[np.ndarray], target: int, word_start: np.ndarray) -> list[np.ndarray]:
    """Cut sentences longer than `target` into pieces of at most ``target // 2`` tokens.

    Each cut moves back to the nearest word start, so words stay whole (unless one word alone
    is longer than a piece).
    """
    piece = max(1, target // 2)
    segments = []
    for sentence in sentences:
        if sentence.size <= target:
            segments.append(sentence)
            continue
        starts = np.flatnonzero(word_start[sentence])
        begin = 0
        while sentence.size - begin > piece:
            limit = begin + piece
            before = starts[np.searchsorted(starts, limit, side="right") - 1] if starts.size else 0
            cut = before if before > begin else limit
            segments.append(sentence[begin:cut])
            begin = cut
        segments.append(sentence[begin:])
    return segments


def _chunks(segments: Sequence[Sized], target: int) -> list[list[Any]]:
    """Group consecutive segments into chunks of >= `target` tokens and >= 2 segments each.

    A chunk closes once it reaches the target, unless exactly one segment would be left over:
    that one joins it (the pair is then truncated), so every chunk can be split into A and B.
    """
    chunks, current, length = [], [], 0
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        current.append(segment)
        length += len(segment)
        if i == last or (length >= target and len(current) >= 2 and last - i >= 2):
            chunks.append(current)
            current, length = [], 0
    return chunks


def _truncation_counts(len_first: Any, len_second: Any, max_tokens: int) -> tuple[Any, Any]:
    """How many tokens the original's token-by-token loop removes from each side (ints or arrays).

    It removes from the longer side (the second on ties) until the pair fits: first the gap
    between the two, then alternately, the second side first.
    """
    excess = np.maximum(len_first + len_second - max_tokens, 0)
    gap = np.minimum(np.abs(len_first - len_second), excess)
    rest = excess - gap
    first_longer = len_first > len_second
    return rest // 2 + np.where(first_longer, gap, 0), rest - rest // 2 + np.where(first_longer, 0, gap)


@dataclass
class _Pairs:
    """Examples as token ranges of the unit's ids: ``[CLS] first [SEP] second [SEP]``."""

    first: tuple[np.ndarray, np.ndarray]  # starts, stops
    second: tuple[np.ndarray, np.ndarray]
    swapped: np.ndarray  # bool: `first` comes after `second` in the text


def _examples(
    unit: Unit,
    ids: np.ndarray,
    pairs: _Pairs,
    options: ExampleOptions,
    tables: VocabularyTables,
    stats: UnitStats,
    rng: np.random.Generator,
) -> UnitResult:
    """Gather every example's tokens in one go, then mask them all in one batch (unless dynamic)."""
    n = pairs.swapped.size
    cls, sep = ids.size, ids.size + 1  # the specials' positions in `source`
    source = np.concatenate([ids, [options.cls_token_id, options.sep_token_id]])
    first_size = pairs.first[1] - pairs.first[0]
    lengths = first_size + (pairs.second[1] - pairs.second[0]) + 3
    starts = np.stack([np.full(n, cls), pairs.first[0], np.full(n, sep), pairs.second[0], np.full(n, sep)], 1)
    stops = np.stack(
        [np.full(n, cls + 1), pairs.first[1], np.full(n, sep + 1), pairs.second[1], np.full(n, sep + 1)], 1
    )
    input_ids = source[concatenated_ranges(starts.ravel(), stops.ravel())]
    if options.dynamic_masking or not n:
        masked = Masked.nothing(input_ids, n, options.masking.ngram)
    else:
        masked = mask_tokens(input_ids, tables, options.masking, rng, lengths)
    stats.examples, stats.tokens, stats.predictions = n, int(lengths.sum()), int(masked.counts.sum())
    stats.swapped = int(pairs.swapped.sum())
    stats.span_words, stats.span_words_drawn = masked.span_words.tolist(), masked.span_drawn.tolist()
    dtype = np.dtype(options.token_dtype)
    return UnitResult(
        file_index=unit.file_index,
        unit_index=unit.unit_index,
        input_ids=masked.input_ids.astype(dtype),
        lengths=lengths,
        segment_a=first_size + 2,
        sentence_order=pairs.swapped.astype(np.uint8),
        prediction_counts=masked.counts,
        prediction_positions=masked.positions.astype(np.uint16),
        prediction_labels=masked.labels.astype(dtype),
        stats=stats,
    )


# --------------------------------------------------------------------------------------------
# worker-process entry points (module-level so they pickle)
# --------------------------------------------------------------------------------------------

_PROCESSOR: UnitProcessor | None = None


def init_worker(options: ExampleOptions, tokenizer_threads: bool) -> None:
    """Pool initializer: build this process's `UnitProcessor` once."""
    global _PROCESSOR
    if not tokenizer_threads:  # several worker processes already use the cores
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _PROCESSOR = UnitProcessor(options)


def process_unit(unit: Unit) -> UnitResult:
    assert _PROCESSOR is not None, "init_worker runs first"
    return _PROCESSOR(unit)
