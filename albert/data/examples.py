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
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from albert.data.masking import MaskingOptions, VocabularyTables, mask_tokens
from albert.data.text import Unit, split_sentences


@dataclass(frozen=True)
class ExampleOptions:
    """Everything a worker needs to turn units into examples (picklable: workers get a copy)."""

    tokenizer_dir: str
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
        self.engine = tokenizer.backend_tokenizer
        self.tables = VocabularyTables.from_tokenizer(tokenizer)
        self.max_tokens = options.max_seq_length - 3  # room for [CLS], [SEP], [SEP]

    def __call__(self, unit: Unit) -> UnitResult:
        documents, stats = self._tokenize(unit)
        rng = unit_seed(self.options.seed, unit)
        builder = _ExampleBuilder(self, stats)
        for _ in range(self.options.dupe_factor):
            for sentences in documents:
                self._document_examples(sentences, rng, builder)
        return builder.result(unit, rng)

    def _tokenize(self, unit: Unit) -> tuple[list[list[np.ndarray]], UnitStats]:
        """All sentences of the unit in one native batch call; documents as lists of id arrays."""
        if unit.format == "sentences":
            split = unit.documents
        else:
            split = [[s for line in document for s in split_sentences(line)] for document in unit.documents]
        flat = [sentence for document in split for sentence in document]
        encodings = self.engine.encode_batch_fast(flat, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        ids = np.fromiter(
            itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lengths.sum())
        )
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        stats = UnitStats()
        documents = []
        sentence = 0
        for document in split:
            pieces = [ids[bounds[i] : bounds[i + 1]] for i in range(sentence, sentence + len(document))]
            sentence += len(document)
            pieces = [p for p in pieces if p.size]
            stats.documents += 1
            stats.sentences += len(pieces)
            if len(pieces) < 2:
                stats.skipped_documents += 1
            else:
                documents.append(pieces)
        return documents, stats

    def _document_examples(
        self, sentences: list[np.ndarray], rng: np.random.Generator, builder: _ExampleBuilder
    ) -> None:
        target = self.max_tokens
        if rng.random() < self.options.short_seq_prob:
            target = int(rng.integers(2, self.max_tokens + 1))
        segments = _split_long(sentences, target, self.tables.word_start)
        for chunk in _chunks(segments, target):
            a_end = int(rng.integers(1, len(chunk)))
            first, second = np.concatenate(chunk[:a_end]), np.concatenate(chunk[a_end:])
            swapped = bool(rng.random() < 0.5)
            if swapped:
                first, second = second, first
            first, second = _truncate_pair(first, second, self.max_tokens, rng)
            builder.add(first, second, swapped)


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


def _chunks(segments: list[np.ndarray], target: int) -> list[list[np.ndarray]]:
    """Group consecutive segments into chunks of >= `target` tokens and >= 2 segments each.

    A chunk closes once it reaches the target, unless exactly one segment would be left over:
    that one joins it (the pair is then truncated), so every chunk can be split into A and B.
    """
    chunks, current, length = [], [], 0
    for i, segment in enumerate(segments):
        current.append(segment)
        length += segment.size
        left = len(segments) - i - 1
        if left == 0 or (length >= target and len(current) >= 2 and left >= 2):
            chunks.append(current)
            current, length = [], 0
    return chunks


def _truncate_pair(
    first: np.ndarray, second: np.ndarray, max_tokens: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The original's token-by-token loop in closed form.

    It removes from the longer side (the second on ties) until the pair fits, each time from the
    front or the back with probability 1/2: so each side loses a known count, a Binomial(count,
    1/2) share of it from the front.
    """
    cut_first, cut_second = _truncation_counts(first.size, second.size, max_tokens)
    if cut_first == cut_second == 0:
        return first, second
    front = rng.binomial([cut_first, cut_second], 0.5)
    first = first[front[0] : first.size - (cut_first - front[0])]
    second = second[front[1] : second.size - (cut_second - front[1])]
    return first, second


def _truncation_counts(len_first: int, len_second: int, max_tokens: int) -> tuple[int, int]:
    excess = len_first + len_second - max_tokens
    if excess <= 0:
        return 0, 0
    gap = abs(len_first - len_second)
    if gap >= excess:
        return (excess, 0) if len_first > len_second else (0, excess)
    rest = excess - gap  # once equal they alternate, the second side first
    first, second = rest // 2, rest - rest // 2
    return (first + gap, second) if len_first > len_second else (first, second + gap)


class _ExampleBuilder:
    """Collects a unit's examples; masks them all in one batch at the end unless masking is dynamic."""

    def __init__(self, processor: UnitProcessor, stats: UnitStats) -> None:
        self.options = processor.options
        self.tables = processor.tables
        self.stats = stats
        self.ids: list[np.ndarray] = []
        self.segment_a: list[int] = []
        self.sentence_order: list[int] = []
        self._specials = np.array([self.options.cls_token_id, self.options.sep_token_id], dtype=np.int64)

    def add(self, first: np.ndarray, second: np.ndarray, swapped: bool) -> None:
        cls, sep = self._specials[:1], self._specials[1:]
        self.ids.append(np.concatenate([cls, first, sep, second, sep]))
        self.segment_a.append(first.size + 2)
        self.sentence_order.append(int(swapped))

    def result(self, unit: Unit, rng: np.random.Generator) -> UnitResult:
        dtype = np.dtype(self.options.token_dtype)
        n = len(self.ids)
        lengths = np.fromiter((a.size for a in self.ids), dtype=np.int64, count=n)
        ids = np.concatenate(self.ids) if self.ids else np.zeros(0, dtype=np.int64)
        ngram = self.options.masking.ngram
        counts, positions, labels = np.zeros(n, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        spans, drawn = np.zeros(ngram, np.int64), np.zeros(ngram, np.int64)
        if not self.options.dynamic_masking and n:
            masked = mask_tokens(ids, self.tables, self.options.masking, rng, lengths)
            ids, counts, positions, labels = masked.input_ids, masked.counts, masked.positions, masked.labels
            spans, drawn = masked.span_words, masked.span_drawn
        stats = self.stats
        stats.examples, stats.tokens, stats.predictions = n, int(lengths.sum()), int(counts.sum())
        stats.swapped = sum(self.sentence_order)
        stats.span_words, stats.span_words_drawn = spans.tolist(), drawn.tolist()
        return UnitResult(
            file_index=unit.file_index,
            unit_index=unit.unit_index,
            input_ids=ids.astype(dtype),
            lengths=lengths,
            segment_a=np.asarray(self.segment_a, dtype=np.int64),
            sentence_order=np.asarray(self.sentence_order, dtype=np.uint8),
            prediction_counts=counts,
            prediction_positions=positions.astype(np.uint16),
            prediction_labels=labels.astype(dtype),
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
