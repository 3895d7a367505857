"""Sentences -> token ids for the data builder: SentencePiece's own engine where it is safe, else ours.

Tokenising is most of the builder's CPU time. `AlbertTokenizer`'s engine (HF ``tokenizers``) runs
its normaliser, pre-tokeniser and Unigram model with per-character offset bookkeeping the builder
never reads; the ``sentencepiece`` library segments the same Unigram model several times faster
per CPU-second (``benchmarks/bench_data.py`` prints both engines' rates). So for a SentencePiece Unigram vocabulary the builder normalises in Python exactly
as `albert.tokenization.albert_normalizer` does (whitespace collapsed, ``\\`\\``/``''`` -> ``"``,
NFKD + every combining mark dropped unless ``keep_accents``, per-character lower-casing) and lets
``sentencepiece`` apply the model's charsmap and segment. google-research/albert's
``create_pretraining_data.py`` tokenised with ``sentencepiece`` too.

The ids are the tokenizer's on all but a handful of lines: where two segmentations are exactly
equally probable the engines may break the Viterbi tie differently (``"......."`` -> ``"." "......"``
or ``"......" "."``); such lines decode to the same text. One deliberate difference: special-token
strings in raw text (``[MASK]``, ``[CLS]``, ``<pad>``) are ordinary text here, as in the original
script, whereas `AlbertTokenizer` matches them as the special tokens.

`choose_engine` takes the fast path only when it cannot change what the data means: a Unigram
``spiece.model`` without byte fallback or user-defined pieces, no ``split_digit_comma`` (the
tokenizer's own engine re-scores pieces for it), every piece keeping its id in the tokenizer (so
third-party models whose ALBERT specials were appended map unchanged, and unknown text gets the
model's unknown id, which is the tokenizer's too), and identical ids on a set of probe sentences.
Anything else - ``vocab.txt`` WordPiece, BPE, unusual options - uses the tokenizer's engine.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from albert.errors import AlbertError

if TYPE_CHECKING:
    from albert.tokenization import AlbertTokenizer

logger = logging.getLogger(__name__)

Engine = Literal["sentencepiece", "tokenizers"]
ENGINE_CHOICES = ("auto", "sentencepiece", "tokenizers")
Encoder = Callable[[list[str]], list[list[int]]]

# Sentences the fast path must encode exactly as the tokenizer does before it is used: case,
# accents, the quote rule, digits and commas, odd whitespace, Greek final sigma, CJK, unknown symbols.
PROBES = (
    "The Quick Brown Fox, aged 1,234.5 years, said: ``Hello'' -- and left.",
    "  Leading,\ttabbed\u00a0and   spaced  ",
    "Café naïve façade RÉSUMÉ Ångström Øre Æsir straße İstanbul",
    "ΟΔΟΣ Σοφία, ΚΑΛΗΜΕΡΑ ΚΌΣΜΕ",
    "中华人民共和国成立了。《人民日报》１９９８年１月１日，第１版！",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ ① ﬁne ¨diaeresis",
    "\u2603\u2604 unknown \U0001f600\U0001f601 symbols \u0915\u093e",
)


def choose_engine(tokenizer: AlbertTokenizer, tokenizer_dir: str | Path, requested: str = "auto") -> Engine:
    """The engine the builder uses for `tokenizer`: ``sentencepiece`` when it is safe (and not refused)."""
    if requested not in ENGINE_CHOICES:
        raise AlbertError(f"tokenizer engine must be one of {', '.join(ENGINE_CHOICES)}, not {requested!r}")
    if requested == "tokenizers":
        return "tokenizers"
    reason = unsafe_reason(tokenizer, tokenizer_dir)
    if reason is None:
        return "sentencepiece"
    if requested == "sentencepiece":
        raise AlbertError(
            f"the sentencepiece engine cannot tokenise for {tokenizer_dir}: {reason}; "
            "use --tokenizer-engine auto or tokenizers"
        )
    logger.info("tokenising with the tokenizers engine: %s", reason)
    return "tokenizers"


def unsafe_reason(tokenizer: AlbertTokenizer, tokenizer_dir: str | Path) -> str | None:
    """Why SentencePiece's engine could give other ids than `tokenizer`, or None when it cannot."""
    from albert.tokenization import SPM_FILE, USER_DEFINED, SentencePieceModel

    if tokenizer.kind != "sentencepiece":
        return "the vocabulary is WordPiece (vocab.txt)"
    # the options the tokenizer resolved from tokenizer_config.json (no public accessor yet)
    options = tokenizer.options
    if options.get("split_digit_comma"):
        return "split_digit_comma re-scores pieces in the tokenizer's engine only"
    data = (Path(tokenizer_dir) / SPM_FILE).read_bytes()
    model = SentencePieceModel.from_bytes(data)
    if model.model_type != "unigram":
        return f"the SentencePiece model is {model.model_type}, not unigram"
    if model.byte_fallback:
        return "the SentencePiece model uses byte fallback"
    if USER_DEFINED in model.types:
        return "the SentencePiece model has user-defined pieces, which the engines match differently"
    vocab = tokenizer.get_vocab()
    moved = [p for i, p in enumerate(model.pieces) if vocab.get(p) != i]
    if moved:
        return f"{len(moved)} piece(s) have other ids in the tokenizer (first {moved[0]!r})"
    fast = SentencePieceEncoder(data, options["do_lower_case"], options["keep_accents"])
    probes = list(PROBES)
    expected = tokenizers_encoder(tokenizer)(probes)
    differing = [p for p, a, b in zip(probes, fast(probes), expected, strict=True) if a != b]
    if differing:
        return f"its ids differ from the tokenizer's on {differing[0]!r}"
    return None


def make_encoder(tokenizer: AlbertTokenizer, tokenizer_dir: str | Path, engine: Engine) -> Encoder:
    """A function from sentences to their token ids (no special tokens) using `engine`."""
    if engine == "tokenizers":
        return tokenizers_encoder(tokenizer)
    from albert.tokenization import SPM_FILE

    options = tokenizer.options
    data = (Path(tokenizer_dir) / SPM_FILE).read_bytes()
    return SentencePieceEncoder(data, options["do_lower_case"], options["keep_accents"])


def tokenizers_encoder(tokenizer: AlbertTokenizer) -> Encoder:
    """The tokenizer's own engine, in one native batch call without offset tracking."""
    engine = tokenizer.backend_tokenizer

    def encode(sentences: list[str]) -> list[list[int]]:
        return [e.ids for e in engine.encode_batch_fast(sentences, add_special_tokens=False)]

    return encode


class SentencePieceEncoder:
    """``sentencepiece`` segmentation after `albert_normalizer`'s steps done in Python (one thread)."""

    def __init__(self, model: bytes, do_lower_case: bool, keep_accents: bool, load: bool = True) -> None:
        import sentencepiece

        self.processor = sentencepiece.SentencePieceProcessor()
        if load:  # `load=False` leaves only `normalize` usable
            self.processor.LoadFromSerializedProto(model)
        self.do_lower_case, self.keep_accents = do_lower_case, keep_accents

    def __call__(self, sentences: list[str]) -> list[list[int]]:
        normalized = [self.normalize(s) for s in sentences]
        return self.processor.encode(normalized, out_type=int, num_threads=1)

    def normalize(self, text: str) -> str:
        """`albert_normalizer` minus the charsmap (``sentencepiece`` applies that itself)."""
        text = " ".join(text.split()).replace("``", '"').replace("''", '"')
        if not self.keep_accents and not text.isascii():
            text = strip_marks(unicodedata.normalize("NFKD", text))
        if self.do_lower_case:
            # the tokenizer lower-cases character by character: no word-final sigma
            text = text.replace("Σ", "σ").lower() if "Σ" in text else text.lower()
        return text


def strip_marks(text: str) -> str:
    """Drop every character of general category M (Mn, Mc, Me): what ``StripAccents`` removes.

    One regular expression for the Basic Multilingual Plane (Python matches such a class with a
    bitmap, hundreds of MB/s) and, only for text that has characters beyond it, a table for the rest
    (a class with those in it would make `re` test them one by one, 100x slower on Chinese text).
    """
    bmp, astral, table = _mark_tables()
    text = bmp.sub("", text)
    return text.translate(table) if astral.search(text) else text


@functools.cache
def _mark_tables() -> tuple[re.Pattern[str], re.Pattern[str], dict[int, None]]:
    marks = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    bmp = re.compile("[" + "".join(chr(c) for c in marks if c <= 0xFFFF) + "]")
    return bmp, re.compile("[\U00010000-\U0010ffff]"), dict.fromkeys(c for c in marks if c > 0xFFFF)
