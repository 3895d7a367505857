"""Train a SentencePiece vocabulary the ALBERT way and write a loadable tokenizer directory.

ALBERT's recipe (google-research/albert README): unigram model, ``<pad>``=0, ``<unk>``=1,
``[CLS]``=2, ``[SEP]``=3, ``[MASK]``=4 as control symbols, no BOS/EOS, very high character
coverage (so Chinese, whose long tail of characters is the vocabulary, keeps them) and a random
sample of ``input_sentence_size`` sentences so memory stays bounded on any corpus size.

One addition: training text goes through the same normaliser the tokenizer applies at encode
time (quote replacement, accent stripping, lower-casing). Otherwise a lower-casing tokenizer
would carry a vocabulary half spent on capitalised pieces it can never produce.

Input files may be plain or ``.gz``; they are streamed line by line into the trainer. A line
that is not valid UTF-8 is skipped (and counted in a warning) rather than aborting a long run
or feeding mojibake into the vocabulary; a file that is mostly not text is refused, by the same
rule `albert data` applies (`albert.data.text.read_lines`).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from albert.data.text import FileStats, read_lines
from albert.errors import AlbertError
from albert.paths import check_output
from albert.tokenization import SPM_FILE, AlbertTokenizer, albert_normalizer

logger = logging.getLogger(__name__)

ALBERT_CONTROL_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")
MODEL_TYPES = ("unigram", "bpe")
DEFAULT_PIECE_LENGTH, MAX_PIECE_LENGTH = 16, 512  # SentencePiece's default and ceiling (characters)
MAX_SENTENCE_BYTES = 1 << 14  # SentencePiece's default (4 KiB) drops most Chinese paragraphs


@dataclass
class _ReadStats:
    """What the line reader saw, for the summary warning."""

    lines: int = 0
    invalid_utf8: int = 0
    first_invalid: str = ""


def _lines(paths: Sequence[Path], stats: _ReadStats) -> Iterator[str]:
    """Non-empty, stripped UTF-8 lines of every file, read by `albert data`'s reader so both apply
    one rule of what text is: undecodable lines are counted and skipped, a binary file is refused."""
    for path in paths:
        file_stats = FileStats(str(path))
        for line, _ in read_lines(path, file_stats, lambda _: None):
            if line:
                stats.lines += 1
                yield line
        stats.invalid_utf8 += file_stats.invalid_utf8_lines
        stats.first_invalid = stats.first_invalid or file_stats.first_invalid


def _check_arguments(
    paths: Sequence[Path],
    vocab_size: int,
    model_type: str,
    character_coverage: float,
    input_sentence_size: int,
    max_piece_length: int,
) -> None:
    if not paths:
        raise AlbertError("no input files given; pass at least one text file (plain or .gz)")
    for path in paths:
        if not path.is_file():
            raise AlbertError(f"input file {path} does not exist; pass text files (plain or .gz)")
    if model_type not in MODEL_TYPES:
        raise AlbertError(f"model_type must be one of {', '.join(MODEL_TYPES)}, not {model_type!r}")
    minimum = 2 + len(ALBERT_CONTROL_SYMBOLS) + 1
    if vocab_size < minimum:
        raise AlbertError(f"vocab_size {vocab_size} is too small; use at least {minimum} (ALBERT uses 30000)")
    if not 0.0 < character_coverage <= 1.0:
        raise AlbertError(f"character_coverage must be in (0, 1], not {character_coverage}")
    if input_sentence_size < 0:
        raise AlbertError(f"input_sentence_size must be >= 0 (0 = use all), not {input_sentence_size}")
    if not 1 <= max_piece_length <= MAX_PIECE_LENGTH:
        raise AlbertError(
            f"max_piece_length must be in 1..{MAX_PIECE_LENGTH} (1 = one character per piece), not {max_piece_length}"
        )


def train_tokenizer(
    inputs: Sequence[str | Path],
    vocab_size: int,
    output_dir: str | Path,
    *,
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    input_sentence_size: int = 2_000_000,
    seed: int = 12345,
    do_lower_case: bool = True,
    keep_accents: bool = False,
    user_defined_symbols: Sequence[str] = (),
    num_threads: int | None = None,
    max_piece_length: int = DEFAULT_PIECE_LENGTH,
) -> Path:
    """Train ``spiece.model`` on `inputs` and write a tokenizer directory; return its path.

    The directory holds ``spiece.model``, ``tokenizer_config.json`` and
    ``special_tokens_map.json``, loadable by `AlbertTokenizer.from_pretrained` here and by
    transformers' ``AlbertTokenizer.from_pretrained``. `seed` fixes SentencePiece's sentence
    sampling; with ``num_threads=1`` training is reproducible bit for bit. `max_piece_length`
    caps a piece's characters: 1 gives Chinese BERT's character-level vocabulary, so pretraining
    sees Chinese text in the same single-character pieces that character-level NER data is
    encoded in (with the default, most characters hide inside multi-character pieces). With 1 the
    vocabulary is the training text's characters, so `vocab_size` is then an upper bound.
    """
    import sentencepiece as spm  # training-only dependency; loading needs no sentencepiece

    paths = [Path(p) for p in inputs]
    _check_arguments(paths, vocab_size, model_type, character_coverage, input_sentence_size, max_piece_length)
    check_output(output_dir, directory=True)
    normalizer = albert_normalizer(do_lower_case, keep_accents)
    stats = _ReadStats()
    sentences = (normalizer.normalize_str(line) for line in _lines(paths, stats))
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            max_sentence_length=MAX_SENTENCE_BYTES,
            max_sentencepiece_length=max_piece_length,
            hard_vocab_limit=max_piece_length > 1,
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            control_symbols=",".join(ALBERT_CONTROL_SYMBOLS),
            user_defined_symbols=",".join(user_defined_symbols),
            num_threads=num_threads or os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise AlbertError(_trainer_message(e, stats)) from e
    if stats.invalid_utf8:
        logger.warning(
            "skipped %d line(s) that are not valid UTF-8 (first at %s)",
            stats.invalid_utf8,
            stats.first_invalid,
        )
    return _write_directory(model.getvalue(), Path(output_dir), do_lower_case, keep_accents)


def _trainer_message(error: RuntimeError, stats: _ReadStats) -> str:
    """Turn SentencePiece's trainer errors into one actionable line."""
    text = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
    if stats.lines == 0:
        return "the input files contain no text lines; pass UTF-8 text files (plain or .gz)"
    if "smaller than required_chars" in text:
        return f"SentencePiece could not train: {text.split('] ', 1)[-1]} (raise --vocab-size)"
    if "Vocabulary size too high" in text:
        return (
            f"SentencePiece could not train: {text.split('] ', 1)[-1]} (lower --vocab-size or add more text)"
        )
    return f"SentencePiece could not train: {text}"


def _write_directory(model_bytes: bytes, output_dir: Path, do_lower_case: bool, keep_accents: bool) -> Path:
    """Write spiece.model, then let the tokenizer write the JSON files transformers reads."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SPM_FILE).write_bytes(model_bytes)
    tokenizer = AlbertTokenizer.from_pretrained(
        output_dir, do_lower_case=do_lower_case, keep_accents=keep_accents
    )
    tokenizer.save_pretrained(output_dir)
    return output_dir
