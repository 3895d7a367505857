"""ALBERT tokenizer: SentencePiece (``spiece.model``) or WordPiece (``vocab.txt``), transformers-compatible.

One class, `AlbertTokenizer`, serves both vocabularies. Only the *engine* differs: a
`tokenizers.Tokenizer` (Rust, multithreaded batch encoding, native character offsets) built
either from a SentencePiece model or from a BERT ``vocab.txt``. Everything the caller touches -
the transformers call convention, padding, tensors, decoding, saving - is shared code on top.

SentencePiece path. ``spiece.model`` is read with a small protobuf field reader
(`SentencePieceModel`), so neither ``protobuf`` nor transformers is needed at runtime; it
yields the pieces, their scores and types, and the precompiled normalisation charsmap. The
engine is built exactly as transformers 5.24's ``AlbertTokenizer`` builds it from the same file:

* normaliser: ``\\`\\``→``"`` and ``''``→``"``, then (unless ``keep_accents``) NFKD + strip
  accents, then (if ``do_lower_case``) lower-casing, then the model's precompiled charsmap;
* pre-tokeniser: split on whitespace, then Metaspace (``▁`` prepended to every word);
* Unigram over the raw piece scores; ``[CLS] A [SEP]`` / ``[CLS] A [SEP] B [SEP]``.

The digit-comma rule. The old *slow* ALBERT tokenizer re-split pieces such as ``▁1,`` into
``▁1`` + ``,``; transformers' legacy slow→fast converter approximated that by lowering the
score of every piece ending in digit+comma by 100. transformers 5.24 has no slow tokenizer and,
loading a ``spiece.model`` directly, applies *neither* - so by default neither do we, and ids are
identical to transformers 5.24. ``split_digit_comma=True`` opts into the converter's -100
penalty (close to, not guaranteed identical to, the slow tokenizer); it is saved in
``tokenizer_config.json`` so the choice travels with the model.

Third-party SentencePiece models (special pieces ``<unk>``, ``<s>``, ``</s>`` only) load and
work: the model's own unknown piece is used, and ALBERT special tokens the vocabulary lacks
(``<pad>``, ``[CLS]``, ``[SEP]``, ``[MASK]``) are appended after it as added tokens, with a
warning naming them - ``len(tok)`` then exceeds ``tok.vocab_size`` and the model's embedding
table must have ``len(tok)`` rows. (transformers 5.24 fails on such files.) BPE SentencePiece
models load as a BPE engine whose merges are ranked by piece score, which is how SentencePiece
BPE segments; transformers' ``AlbertTokenizer`` would misread them as Unigram.

WordPiece path (``vocab.txt``, e.g. albert_zh ports that use ``BertTokenizer``): BERT
normaliser (clean text, CJK characters split, lower-casing and accent stripping as configured
by ``do_lower_case`` / ``strip_accents`` / ``tokenize_chinese_chars``), BERT pre-tokeniser,
WordPiece with ``##`` continuation, special tokens ``[PAD]``, ``[UNK]``, ``[CLS]``, ``[SEP]``,
``[MASK]`` - as transformers 5.24's ``BertTokenizer``.

numpy is imported at module level, torch only when ``return_tensors="pt"`` is asked for, so the
ONNX runtime path can tokenize without torch.
"""

from __future__ import annotations

import itertools
import json
import logging
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import AddedToken, Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram, WordPiece

from albert.errors import AlbertError

logger = logging.getLogger(__name__)

SPM_FILE = "spiece.model"
VOCAB_FILE = "vocab.txt"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
DEFAULT_MODEL_MAX_LENGTH = 512  # ALBERT's max_position_embeddings
SPIECE_UNDERLINE = "▁"

TextInput = str | Sequence[str]
EncodeInput = str | tuple[Any, Any] | list[str]
Padding = bool | Literal["longest", "max_length", "do_not_pad"]
Truncation = bool | Literal["longest_first", "only_first", "only_second", "do_not_truncate"] | None
_TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second")
_SPECIAL_NAMES = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")


# --------------------------------------------------------------------------------------------
# spiece.model reader: the handful of protobuf fields a tokenizer needs, no protobuf dependency
# --------------------------------------------------------------------------------------------

# SentencePiece piece types (sentencepiece_model.proto, SentencePiece.Type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# TrainerSpec.ModelType
MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at `pos`; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) for each field of one protobuf message.

    Varints come back as ints (int32 fields encode negatives as 64-bit two's complement, so
    callers use `_signed`), fixed32 as its 4 raw bytes, length-delimited fields as bytes.
    """
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == 1:
            yield number, buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire == 5:
            yield number, buf[pos : pos + 4]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _signed(value: int | bytes) -> int:
    assert isinstance(value, int)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class SentencePieceModel:
    """What a tokenizer needs from a ``spiece.model``: pieces, scores, types and normaliser data."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    types: tuple[int, ...]
    model_type: str = "unigram"
    unk_id: int = 0
    pad_id: int = -1
    byte_fallback: bool = False
    precompiled_charsmap: bytes = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> SentencePieceModel:
        """Parse ModelProto fields 1 (pieces), 2 (trainer_spec) and 3 (normalizer_spec)."""
        pieces: list[str] = []
        scores: list[float] = []
        types: list[int] = []
        spec: dict[str, Any] = {}
        for number, value in _fields(data):
            if number == 1 and isinstance(value, bytes):
                piece, score, kind = "", 0.0, NORMAL
                for sub, sub_value in _fields(value):
                    if sub == 1 and isinstance(sub_value, bytes):
                        piece = sub_value.decode("utf-8")
                    elif sub == 2 and isinstance(sub_value, bytes):
                        score = struct.unpack("<f", sub_value)[0]
                    elif sub == 3:
                        kind = _signed(sub_value)
                pieces.append(piece)
                scores.append(score)
                types.append(kind)
            elif number == 2 and isinstance(value, bytes):
                spec.update(_trainer_spec(value))
            elif number == 3 and isinstance(value, bytes):
                spec.update(_normalizer_spec(value))
        if not pieces:
            raise ValueError("no pieces in the model")
        return cls(tuple(pieces), tuple(scores), tuple(types), **spec)


def _trainer_spec(buf: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for number, value in _fields(buf):
        if number == 3:
            spec["model_type"] = MODEL_TYPES.get(_signed(value), f"type {_signed(value)}")
        elif number == 40:
            spec["unk_id"] = _signed(value)
        elif number == 43:
            spec["pad_id"] = _signed(value)
        elif number == 35:
            spec["byte_fallback"] = bool(value)
    return spec


def _normalizer_spec(buf: bytes) -> dict[str, Any]:
    for number, value in _fields(buf):
        if number == 2 and isinstance(value, bytes):
            return {"precompiled_charsmap": value}
    return {}


# --------------------------------------------------------------------------------------------
# engines: the only code that differs between the SentencePiece and WordPiece paths
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecialTokens:
    """Names of the five special tokens ALBERT uses."""

    pad_token: str
    unk_token: str
    cls_token: str
    sep_token: str
    mask_token: str

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in _SPECIAL_NAMES}


SPM_SPECIALS = SpecialTokens("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
WORDPIECE_SPECIALS = SpecialTokens("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def albert_normalizer(do_lower_case: bool = True, keep_accents: bool = False, charsmap: bytes = b"") -> Any:
    """ALBERT's text normaliser, in transformers' order; the trainer reuses it without a charsmap."""
    steps: list[Any] = [normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    if not keep_accents:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    return normalizers.Sequence(steps)


def has_digit_comma(piece: str) -> bool:
    """True for pieces like ``▁1,`` that the slow ALBERT tokenizer re-split before the comma."""
    return len(piece) >= 2 and piece[-1] == "," and piece[-2].isdigit()


def _bpe_merges(spm: SentencePieceModel) -> list[tuple[str, str]]:
    """Merges that make a BPE engine segment like SentencePiece BPE: best-scored result first."""
    mergeable = {p: i for i, (p, t) in enumerate(zip(spm.pieces, spm.types, strict=True)) if t == NORMAL}
    found: list[tuple[float, int, int, str, str]] = []
    for piece, index in mergeable.items():
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in mergeable and right in mergeable:
                found.append((-spm.scores[index], index, mergeable[left], left, right))
    return [(left, right) for *_, left, right in sorted(found)]


def _spm_engine(spm: SentencePieceModel, options: dict[str, Any]) -> Tokenizer:
    """The engine transformers 5.24's AlbertTokenizer builds from the same ``spiece.model``."""
    if spm.model_type == "unigram":
        scores = spm.scores
        if options.get("split_digit_comma"):
            scores = tuple(
                s - 100.0 if has_digit_comma(p) else s for p, s in zip(spm.pieces, scores, strict=True)
            )
        vocab = list(zip(spm.pieces, scores, strict=True))
        engine = Tokenizer(Unigram(vocab, unk_id=spm.unk_id, byte_fallback=spm.byte_fallback))
    elif spm.model_type == "bpe":
        vocab_ids = {piece: i for i, piece in enumerate(spm.pieces)}
        unk = spm.pieces[spm.unk_id]
        bpe = BPE(vocab_ids, _bpe_merges(spm), unk_token=unk, fuse_unk=True, byte_fallback=spm.byte_fallback)
        engine = Tokenizer(bpe)
    else:
        raise AlbertError(
            f"SentencePiece model type {spm.model_type!r} is not supported; "
            "retrain it with model_type unigram or bpe (`albert tokenizer train`)"
        )
    engine.normalizer = albert_normalizer(
        options["do_lower_case"], options["keep_accents"], spm.precompiled_charsmap
    )
    engine.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(SPIECE_UNDERLINE, prepend_scheme="always"),
        ]
    )
    metaspace = decoders.Metaspace(SPIECE_UNDERLINE, prepend_scheme="always")
    byte_decoders = [decoders.ByteFallback(), decoders.Fuse()] if spm.byte_fallback else []
    engine.decoder = decoders.Sequence([*byte_decoders, metaspace]) if byte_decoders else metaspace
    # user-defined pieces match verbatim but are not special; control pieces are special
    user = [
        AddedToken(p, normalized=False)
        for p, t in zip(spm.pieces, spm.types, strict=True)
        if t == USER_DEFINED
    ]
    if user:
        engine.add_tokens(user)
    control = [
        AddedToken(p, special=True, normalized=False)
        for p, t in zip(spm.pieces, spm.types, strict=True)
        if t == CONTROL
    ]
    engine.add_special_tokens(control)
    return engine


def _wordpiece_engine(vocab: dict[str, int], specials: SpecialTokens, options: dict[str, Any]) -> Tokenizer:
    """The engine transformers 5.24's BertTokenizer builds from the same ``vocab.txt``."""
    engine = Tokenizer(WordPiece(vocab, unk_token=specials.unk_token))
    engine.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=options["tokenize_chinese_chars"],
        strip_accents=options["strip_accents"],
        lowercase=options["do_lower_case"],
    )
    engine.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    engine.decoder = decoders.WordPiece(prefix="##")
    return engine


def _finish_engine(engine: Tokenizer, specials: SpecialTokens) -> list[str]:
    """Register the special tokens and the [CLS]/[SEP] template; return those that had to be appended."""
    missing = [t for t in specials.as_dict().values() if engine.token_to_id(t) is None]
    engine.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials.as_dict().values()]
    )
    cls_id, sep_id = engine.token_to_id(specials.cls_token), engine.token_to_id(specials.sep_token)
    cls, sep = specials.cls_token, specials.sep_token
    engine.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, cls_id), (sep, sep_id)],
    )
    return list(dict.fromkeys(missing))


# --------------------------------------------------------------------------------------------
# loading helpers
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AlbertError(f"{path} is not valid JSON ({e}); fix or delete it") from e
    if not isinstance(data, dict):
        raise AlbertError(f"{path} must hold a JSON object; fix or delete it")
    return data


def _token_name(value: Any) -> str | None:
    """Special tokens in transformers' JSON files are strings or AddedToken dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _special_tokens(defaults: SpecialTokens, *configs: dict[str, Any]) -> SpecialTokens:
    names = defaults.as_dict()
    for config in configs:
        for name in _SPECIAL_NAMES:
            token = _token_name(config.get(name))
            if token:
                names[name] = token
    return SpecialTokens(**names)


def _read_vocab_txt(data: bytes, path: Path) -> dict[str, int]:
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise AlbertError(f"{path} is not UTF-8 ({e}); a BERT vocab.txt has one UTF-8 token per line") from e
    if lines and lines[-1] == "":
        lines.pop()
    vocab = {token.rstrip("\r"): i for i, token in enumerate(lines)}
    if not vocab:
        raise AlbertError(f"{path} is empty; a BERT vocab.txt has one token per line")
    return vocab


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


class BatchEncoding(dict):
    """transformers-style encoding result: a dict (so ``model(**enc)`` works) with attribute access.

    ``word_ids(i)``, ``tokens(i)`` and ``sequence_ids(i)`` read the engine's per-sequence
    encodings. Unless offsets or pre-split words were asked for, the batch is encoded without
    offset/word tracking (measurably faster); those encodings are then recomputed on first use
    of an accessor, so the accessors always work.
    """

    def __init__(
        self,
        data: dict[str, Any],
        encodings: Callable[[], list[Encoding]] | list[Encoding] | None = None,
        padded_to: int | None = None,
        pad_token: str = "",
    ) -> None:
        super().__init__(data)
        self._encodings = encodings
        self._padded_to = padded_to or 0
        self._pad_token = pad_token

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def encodings(self) -> list[Encoding]:
        if callable(self._encodings):
            self._encodings = self._encodings()
        return self._encodings or []

    def _padded(self, values: list[Any], pad: Any) -> list[Any]:
        return values + [pad] * (self._padded_to - len(values)) if self._padded_to else values

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """Index of the input word each token came from (None for special and padding tokens)."""
        return self._padded(self.encodings[batch_index].word_ids, None)

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        return self._padded(self.encodings[batch_index].sequence_ids, None)

    def tokens(self, batch_index: int = 0) -> list[str]:
        return self._padded(self.encodings[batch_index].tokens, self._pad_token)

    def to(self, device: Any) -> BatchEncoding:
        """Move torch tensors to `device` (other values are left alone)."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


@dataclass(frozen=True)
class _Plan:
    """Resolved padding/truncation for one call (transformers' rules)."""

    pad: Literal["no", "longest", "max_length"]
    truncate: str | None
    max_length: int | None
    pad_to_multiple_of: int | None = None


_NO_PADDING = _Plan("no", None, None)


def _is_batch(text: Any, is_split_into_words: bool) -> bool:
    if isinstance(text, str):
        return False
    if not isinstance(text, (list, tuple)):
        raise AlbertError(f"text must be a string or a list of strings, not {type(text).__name__}")
    if is_split_into_words:
        return bool(text) and isinstance(text[0], (list, tuple))
    return True


def _check_texts(texts: Sequence[Any], is_split_into_words: bool, what: str) -> None:
    if not is_split_into_words and all(type(t) is str for t in texts):
        return  # the common case: one cheap pass, details only when something is wrong
    for i, item in enumerate(texts):
        words = item if is_split_into_words else [item]
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
            expected = "a list of strings (words)" if is_split_into_words else "a string"
            raise AlbertError(f"{what}[{i}] must be {expected}, not {type(item).__name__}")


def _rows_to_array(rows: list[Any], lengths: np.ndarray, width: int, pad: int, inner: int = 1) -> np.ndarray:
    """Right-pad ragged rows into one int64 array without a Python loop over tokens."""
    flat = itertools.chain.from_iterable(rows)
    if inner > 1:
        flat = itertools.chain.from_iterable(flat)
    values = np.fromiter(flat, dtype=np.int64, count=int(lengths.sum()) * inner)
    shape = (len(rows), width) if inner == 1 else (len(rows), width, inner)
    out = np.full(shape, pad, dtype=np.int64)
    out[np.arange(width) < lengths[:, None]] = values.reshape(-1, inner) if inner > 1 else values
    return out


def _rows_to_lists(rows: list[list[Any]], width: int | None, pad: Any) -> list[list[Any]]:
    if width is None:
        return rows
    return [r + [pad] * (width - len(r)) for r in rows]


# --------------------------------------------------------------------------------------------
# the tokenizer
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """The vocabulary file as loaded, kept verbatim so save_pretrained can write it back."""

    filename: str
    data: bytes
    options: dict[str, Any] = field(default_factory=dict)


class AlbertTokenizer:
    """ALBERT tokenizer with transformers' call convention; see the module docstring for the engines.

    Build it with `from_pretrained(directory)`; `tok(text)` returns ``input_ids``,
    ``token_type_ids`` and ``attention_mask`` so ``model(**tok(text, return_tensors="pt"))`` works.
    """

    def __init__(
        self,
        engine: Tokenizer,
        specials: SpecialTokens,
        source: _Source,
        model_max_length: int,
        base_size: int,
    ) -> None:
        self._engine = engine
        self._specials = specials
        self._source = source
        self.model_max_length = model_max_length
        self._base_size = base_size
        self._lock = threading.Lock()  # truncation is engine state; set + encode must not interleave
        self._truncation: dict[str, Any] | None = None
        self.kind: Literal["sentencepiece", "wordpiece"] = (
            "sentencepiece" if source.filename == SPM_FILE else "wordpiece"
        )

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        *,
        do_lower_case: bool | None = None,
        keep_accents: bool | None = None,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool | None = None,
        split_digit_comma: bool | None = None,
        model_max_length: int | None = None,
    ) -> AlbertTokenizer:
        """Load ``spiece.model`` or ``vocab.txt`` (+ optional transformers JSON files) from `directory`.

        Keyword arguments override ``tokenizer_config.json``; unset ones fall back to ALBERT's
        defaults (lower-case, strip accents) for SentencePiece and BERT's for WordPiece.
        """
        root = Path(directory)
        if not root.is_dir():
            raise AlbertError(
                f"tokenizer directory {root} does not exist; pass a directory with {SPM_FILE} or {VOCAB_FILE}"
            )
        config = _read_json(root / CONFIG_FILE)
        specials_map = _read_json(root / SPECIAL_TOKENS_FILE)
        overrides = {
            "do_lower_case": do_lower_case,
            "keep_accents": keep_accents,
            "strip_accents": strip_accents,
            "tokenize_chinese_chars": tokenize_chinese_chars,
            "split_digit_comma": split_digit_comma,
        }
        options = {**config, **{k: v for k, v in overrides.items() if v is not None}}
        max_length = int(model_max_length or config.get("model_max_length") or DEFAULT_MODEL_MAX_LENGTH)
        max_length = min(max_length, 1 << 31)  # transformers writes 1e30 for "unbounded"
        if (root / SPM_FILE).is_file():
            return cls._from_spm(root / SPM_FILE, options, config, specials_map, max_length)
        if (root / VOCAB_FILE).is_file():
            return cls._from_vocab_txt(root / VOCAB_FILE, options, config, specials_map, max_length)
        raise AlbertError(
            f"{root} has neither {SPM_FILE} nor {VOCAB_FILE}; "
            "train one with `albert tokenizer train` or point at a tokenizer directory"
        )

    @classmethod
    def _from_spm(
        cls, path: Path, options: dict[str, Any], config: dict, specials_map: dict, max_length: int
    ) -> AlbertTokenizer:
        data = path.read_bytes()
        try:
            spm = SentencePieceModel.from_bytes(data)
        except (ValueError, UnicodeDecodeError, struct.error) as e:
            raise AlbertError(
                f"{path} is not a SentencePiece model ({e}); retrain it with `albert tokenizer train`"
            ) from e
        options = {
            "do_lower_case": bool(options.get("do_lower_case", True)),
            "keep_accents": bool(options.get("keep_accents", False)),
            "split_digit_comma": bool(options.get("split_digit_comma", False)),
        }
        unk = spm.pieces[spm.unk_id] if 0 <= spm.unk_id < len(spm.pieces) else SPM_SPECIALS.unk_token
        pad = spm.pieces[spm.pad_id] if 0 <= spm.pad_id < len(spm.pieces) else SPM_SPECIALS.pad_token
        defaults = replace(SPM_SPECIALS, unk_token=unk, pad_token=pad)
        specials = _special_tokens(defaults, config, specials_map)
        engine = _spm_engine(spm, options)
        return cls._finish(
            engine, specials, _Source(SPM_FILE, data, options), max_length, len(spm.pieces), path
        )

    @classmethod
    def _from_vocab_txt(
        cls, path: Path, options: dict[str, Any], config: dict, specials_map: dict, max_length: int
    ) -> AlbertTokenizer:
        data = path.read_bytes()
        vocab = _read_vocab_txt(data, path)
        strip = options.get("strip_accents")
        options = {
            "do_lower_case": bool(options.get("do_lower_case", True)),
            "strip_accents": None if strip is None else bool(strip),
            "tokenize_chinese_chars": bool(options.get("tokenize_chinese_chars", True)),
        }
        specials = _special_tokens(WORDPIECE_SPECIALS, config, specials_map)
        engine = _wordpiece_engine(vocab, specials, options)
        return cls._finish(engine, specials, _Source(VOCAB_FILE, data, options), max_length, len(vocab), path)

    @classmethod
    def _finish(
        cls,
        engine: Tokenizer,
        specials: SpecialTokens,
        source: _Source,
        max_length: int,
        base: int,
        path: Path,
    ) -> AlbertTokenizer:
        missing = _finish_engine(engine, specials)
        if missing:
            logger.warning(
                "%s lacks the special tokens %s; they were appended after its %d pieces (ids %d..), "
                "so the model's vocab_size must be %d",
                path,
                ", ".join(missing),
                base,
                base,
                engine.get_vocab_size(with_added_tokens=True),
            )
        return cls(engine, specials, source, max_length, base)

    def save_pretrained(self, directory: str | Path) -> tuple[Path, ...]:
        """Write the vocabulary file and the JSON files transformers' tokenizers load."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        vocab_path = root / self._source.filename
        vocab_path.write_bytes(self._source.data)
        config: dict[str, Any] = {
            "tokenizer_class": "AlbertTokenizer" if self.kind == "sentencepiece" else "BertTokenizer",
            **{k: v for k, v in self._source.options.items() if k != "split_digit_comma" or v},
            "model_max_length": self.model_max_length,
            **self._specials.as_dict(),
        }
        if self.kind == "sentencepiece":
            config.update(bos_token=self._specials.cls_token, eos_token=self._specials.sep_token)
        config_path, specials_path = root / CONFIG_FILE, root / SPECIAL_TOKENS_FILE
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        specials_path.write_text(json.dumps(self._specials.as_dict(), indent=2) + "\n", encoding="utf-8")
        return vocab_path, config_path, specials_path

    # ---- vocabulary ----------------------------------------------------------------------

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """The `tokenizers.Tokenizer` engine (shared; do not change its padding or truncation)."""
        return self._engine

    @property
    def options(self) -> dict[str, Any]:
        """The resolved normalisation options (`do_lower_case`, `keep_accents`, ...); a copy."""
        return dict(self._source.options)

    @property
    def vocab_size(self) -> int:
        """Size of the loaded vocabulary file, without appended special tokens."""
        return self._base_size

    def __len__(self) -> int:
        return self._engine.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._engine.get_vocab(with_added_tokens=True)

    @property
    def special_tokens(self) -> SpecialTokens:
        return self._specials

    pad_token = property(lambda self: self._specials.pad_token)
    unk_token = property(lambda self: self._specials.unk_token)
    cls_token = property(lambda self: self._specials.cls_token)
    sep_token = property(lambda self: self._specials.sep_token)
    mask_token = property(lambda self: self._specials.mask_token)
    pad_token_id = property(lambda self: self._id(self._specials.pad_token))
    unk_token_id = property(lambda self: self._id(self._specials.unk_token))
    cls_token_id = property(lambda self: self._id(self._specials.cls_token))
    sep_token_id = property(lambda self: self._id(self._specials.sep_token))
    mask_token_id = property(lambda self: self._id(self._specials.mask_token))

    @property
    def all_special_tokens(self) -> list[str]:
        return list(self._specials.as_dict().values())

    @property
    def all_special_ids(self) -> list[int]:
        return [self._id(t) for t in self.all_special_tokens]

    def _id(self, token: str) -> int:
        index = self._engine.token_to_id(token)
        assert index is not None, f"special token {token} is always registered"
        return index

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Ids of `tokens`; tokens outside the vocabulary map to the unknown token's id."""
        if isinstance(tokens, str):
            index = self._engine.token_to_id(tokens)
            return self.unk_token_id if index is None else index
        return [self.convert_tokens_to_ids(t) for t in tokens]  # type: ignore[misc]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, (int, np.integer)):
            return self._engine.id_to_token(int(ids))
        special = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._engine.id_to_token(int(i)) for i in ids if int(i) not in special]

    # ---- text → ids ----------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """The engine's normalisation of `text` (what the vocabulary actually sees)."""
        return self._engine.normalizer.normalize_str(text)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The pieces of `text` (and `pair`), as strings."""
        _check_texts([text] if pair is None else [text, pair], False, "text")
        item: EncodeInput = text if pair is None else (text, pair)
        return self._encode([item], _NO_PADDING, add_special_tokens, False, True)[0].tokens

    def encode(
        self,
        text: str | list[str],
        text_pair: str | list[str] | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: Truncation = None,
        max_length: int | None = None,
        is_split_into_words: bool = False,
    ) -> list[int]:
        """Ids of one text (or pair), as a list."""
        if _is_batch(text, is_split_into_words):
            raise AlbertError("encode takes one text (or pair); call the tokenizer itself for a batch")
        encoded = self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            truncation=truncation,
            max_length=max_length,
            is_split_into_words=is_split_into_words,
            return_token_type_ids=False,
            return_attention_mask=False,
        )
        return encoded["input_ids"]

    def __call__(
        self,
        text: TextInput | Sequence[Sequence[str]],
        text_pair: TextInput | Sequence[Sequence[str]] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: Padding = False,
        truncation: Truncation = None,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        is_split_into_words: bool = False,
        return_tensors: Literal["pt", "np"] | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
    ) -> BatchEncoding:
        """Encode one text, a pair, or a batch of either, like a transformers tokenizer.

        Single inputs give flat lists (a batch of one with ``return_tensors``); batches give
        lists of lists or int64 arrays/tensors. Offsets are character spans in the original text.
        """
        batched = _is_batch(text, is_split_into_words)
        texts: list[Any] = list(text) if batched else [text]  # type: ignore[arg-type]
        _check_texts(texts, is_split_into_words, "text")
        inputs: list[EncodeInput] = texts
        if text_pair is not None:
            pairs: list[Any] = list(text_pair) if batched else [text_pair]  # type: ignore[arg-type]
            if _is_batch(text_pair, is_split_into_words) != batched or len(pairs) != len(texts):
                raise AlbertError(
                    "text and text_pair must both be single inputs or batches of the same length"
                )
            _check_texts(pairs, is_split_into_words, "text_pair")
            inputs = list(zip(texts, pairs, strict=True))
        if return_tensors not in (None, "pt", "np"):
            raise AlbertError(f"return_tensors must be None, 'pt' or 'np', not {return_tensors!r}")
        plan = self._plan(padding, truncation, max_length, pad_to_multiple_of)
        track = return_offsets_mapping or is_split_into_words
        encodings = self._encode(inputs, plan, add_special_tokens, is_split_into_words, track)

        def full_encodings() -> list[Encoding]:
            return self._encode(inputs, plan, add_special_tokens, is_split_into_words, True)

        wanted = {
            "input_ids": True,
            "token_type_ids": return_token_type_ids is not False,
            "attention_mask": return_attention_mask is not False,
            "special_tokens_mask": return_special_tokens_mask,
            "offset_mapping": return_offsets_mapping,
        }
        data, width = self._collate(encodings, plan, wanted, return_tensors, paired=text_pair is not None)
        if return_tensors == "pt":
            import torch  # lazily: the ONNX runtime path tokenizes without torch

            data = {k: torch.from_numpy(v) for k, v in data.items()}
        if not batched and return_tensors is None:
            data = {k: v[0] for k, v in data.items()}
        return BatchEncoding(data, encodings if track else full_encodings, width, self.pad_token)

    def _plan(
        self, padding: Padding, truncation: Truncation, max_length: int | None, multiple: int | None
    ) -> _Plan:
        """transformers' `_get_padding_truncation_strategies`, minus its warnings."""
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        pad_modes = {
            False: "no",
            "do_not_pad": "no",
            True: "longest",
            "longest": "longest",
            "max_length": "max_length",
        }
        if padding not in pad_modes:
            raise AlbertError(f"padding must be one of False, True, 'longest', 'max_length', not {padding!r}")
        pad = pad_modes[padding]  # type: ignore[index]
        if truncation in (None, False, "do_not_truncate"):
            strategy = None
        elif truncation is True:
            strategy = "longest_first"
        elif truncation in _TRUNCATION_STRATEGIES:
            strategy = str(truncation)
        else:
            raise AlbertError(
                f"truncation must be True, False or one of {', '.join(_TRUNCATION_STRATEGIES)}, not {truncation!r}"
            )
        if max_length is None and (pad == "max_length" or strategy is not None):
            max_length = self.model_max_length
        if max_length is not None and max_length < 0:
            raise AlbertError(f"max_length must be positive, not {max_length}")
        return _Plan(pad, strategy, max_length, multiple)

    def _encode(
        self, inputs: list[EncodeInput], plan: _Plan, specials: bool, split: bool, track: bool
    ) -> list[Encoding]:
        """Run the engine over the whole batch (Rust threads); `track=False` skips offsets/words."""
        target = None
        if plan.truncate is not None:
            target = {
                "max_length": plan.max_length,
                "stride": 0,
                "strategy": plan.truncate,
                "direction": "right",
            }
        encode = self._engine.encode_batch if track else self._engine.encode_batch_fast
        with self._lock:
            if target != self._truncation:
                if target is None:
                    self._engine.no_truncation()
                else:
                    self._engine.enable_truncation(**target)
                self._truncation = target
            try:
                return encode(inputs, is_pretokenized=split, add_special_tokens=specials)
            except Exception as e:  # the engine raises plain Exception for truncation it cannot do
                raise AlbertError(f"could not encode the input: {e}; check truncation and max_length") from e

    def _collate(
        self,
        encodings: list[Encoding],
        plan: _Plan,
        wanted: dict[str, bool],
        tensors: str | None,
        paired: bool,
    ) -> tuple[dict[str, Any], int | None]:
        """Gather the requested fields, padding them here rather than in the engine (fewer copies)."""
        ids = [e.ids for e in encodings]
        lengths = [len(row) for row in ids]
        width = self._pad_width(lengths, plan)
        pads = {"input_ids": self.pad_token_id, "token_type_ids": 0, "special_tokens_mask": 1}
        data: dict[str, Any] = {}
        if tensors is not None:
            if width is None and len(set(lengths)) > 1:
                raise AlbertError("sequences have different lengths; pass padding=True to get tensors")
            width = max(lengths, default=0) if width is None else width
            length_array = np.asarray(lengths, dtype=np.int64)
            data["input_ids"] = _rows_to_array(ids, length_array, width, pads["input_ids"])
            mask = np.arange(width) < length_array[:, None]
        for name in ("token_type_ids", "attention_mask", "special_tokens_mask", "offset_mapping"):
            if not wanted[name]:
                continue
            if tensors is not None:
                data[name] = self._field_array(name, encodings, mask, length_array, width, paired, pads)
            else:
                data[name] = self._field_lists(name, encodings, lengths, width, paired, pads)
        if tensors is None:
            data = {"input_ids": _rows_to_lists(ids, width, pads["input_ids"]), **data}
        else:
            data = {"input_ids": data.pop("input_ids"), **data}
        return data, width

    def _pad_width(self, lengths: list[int], plan: _Plan) -> int | None:
        if plan.pad == "no":
            return None
        width = (
            plan.max_length
            if plan.pad == "max_length" and plan.max_length is not None
            else max(lengths, default=0)
        )
        width = max(width, max(lengths, default=0))
        if plan.pad_to_multiple_of:
            width = -(-width // plan.pad_to_multiple_of) * plan.pad_to_multiple_of
        return width

    @staticmethod
    def _field_array(
        name: str,
        encodings: list[Encoding],
        mask: np.ndarray,
        lengths: np.ndarray,
        width: int,
        paired: bool,
        pads: dict[str, int],
    ) -> np.ndarray:
        if name == "attention_mask":
            return mask.astype(np.int64)
        if name == "token_type_ids" and not paired:
            return np.zeros(mask.shape, dtype=np.int64)
        if name == "offset_mapping":
            return _rows_to_array([e.offsets for e in encodings], lengths, width, 0, inner=2)
        attr = "type_ids" if name == "token_type_ids" else name
        return _rows_to_array([getattr(e, attr) for e in encodings], lengths, width, pads[name])

    @staticmethod
    def _field_lists(
        name: str,
        encodings: list[Encoding],
        lengths: list[int],
        width: int | None,
        paired: bool,
        pads: dict[str, int],
    ) -> list[list[Any]]:
        pad_to = width if width is not None else 0
        if name == "attention_mask":
            return [[1] * n + [0] * (max(pad_to - n, 0)) for n in lengths]
        if name == "token_type_ids" and not paired:
            return [[0] * max(n, pad_to) for n in lengths]
        if name == "offset_mapping":
            return _rows_to_lists([e.offsets for e in encodings], width, (0, 0))
        attr = "type_ids" if name == "token_type_ids" else name
        return _rows_to_lists([getattr(e, attr) for e in encodings], width, pads[name])

    # ---- ids → text ----------------------------------------------------------------------

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (list, numpy array or tensor); pieces are joined the engine's way."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        return self._engine.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Any, skip_special_tokens: bool = False) -> list[str]:
        if hasattr(batch, "tolist"):
            batch = batch.tolist()
        return self._engine.decode_batch(
            [list(ids) for ids in batch], skip_special_tokens=skip_special_tokens
        )

    def __repr__(self) -> str:
        return f"AlbertTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size}, specials={self._specials})"
