"""Raw text in: input paths, UTF-8 line reading, layout detection, sentence splitting, work units.

Everything here runs in the main process and streams: files are read line by line (over-long
lines in bounded pieces), documents are grouped into *units* of about `UNIT_BYTES` of text, and
only a few units are ever in flight. A unit never spans two files and its boundaries depend only
on the text, so unit ``(file_index, unit_index)`` - and the random seed derived from it - is the
same whatever the number of workers. That is what makes the output reproducible.

Five layouts (``--format``):

* ``sentences``: one sentence per line, a blank line between documents (BERT/ALBERT's format);
* ``paragraphs``: raw paragraphs, one per line, split into sentences; blank lines between documents;
* ``documents``: one document per line, split into sentences;
* ``conll``: a token-classification training file (token in the first column, a blank line between
  sentences, ``-DOCSTART-`` between documents), for task-adaptive pretraining on the text a model
  will be fine-tuned on. Its sentences reach the worker as tab-joined words, which it encodes the
  way fine-tuning does (`albert.tasks.token_classification.encode_words`);
* ``table``: a text-classification file (CSV, TSV or JSON lines), for task-adaptive pretraining
  too: each row's text column(s) - ``text`` and, where present, ``text_pair`` - become one line
  of a single document, split into sentences like ``paragraphs``; labels are ignored.

``auto`` looks at the start of each file (see `detect_format`); ``.conll`` files are ``conll``,
``.csv``/``.tsv``/``.jsonl`` files ``table``.
"""

from __future__ import annotations

import glob
import gzip
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from albert.errors import AlbertError

FORMATS = ("auto", "sentences", "paragraphs", "documents", "conll", "table")
DEFAULT_TEXT_COLUMNS = ("text", "text_pair")  # `table` layout: text_pair is optional by default
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson")
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob", ".iobes")
UNIT_BYTES = 256 * 1024  # text per work unit; part of the output format (it fixes the seeds)
MAX_DOCUMENT_BYTES = UNIT_BYTES  # longer documents are cut so a unit stays bounded
MAX_LINE_BYTES = 1 << 20  # longer lines are read in pieces, never whole
SNIFF_BYTES = 1 << 16  # how much of a file `detect_format` and the binary check look at
MAX_INVALID_FRACTION = 0.1  # more undecodable bytes than this and a file is not text

# --------------------------------------------------------------------------------------------
# sentence splitting: English and Chinese punctuation, closing quotes stay with their sentence
# --------------------------------------------------------------------------------------------

_CLOSERS = "\"'”’」』》）)\\]】"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# a run of terminators and the closing quotes/brackets after it; whether it ends a sentence is
# decided by what follows (one pattern with a leading character class keeps the scan fast)
_TERMINATOR = re.compile(rf"([.!?。！？；…]+)[{_CLOSERS}]*")
_CJK_TERMINATORS = frozenset("。！？；…")
# after Latin terminators: whitespace, then something that can start a sentence
_LATIN_NEXT = re.compile(rf"\s+[\"'“‘(\[]*[A-Z0-9{_CJK}]")
_CJK_CHAR = re.compile(rf"[{_CJK}]")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e no vol fig gen col capt lt sgt rev hon mt ft jan feb "
    "mar apr jun jul aug sep sept oct nov dec inc ltd co corp u.s".split()
)
_LAST_WORD = re.compile(r"([\w.]+)$")


def _is_abbreviation(text: str, period: int) -> bool:
    """True when the '.' at `period` ends an abbreviation or an initial ("Mr.", "J.")."""
    match = _LAST_WORD.search(text, max(0, period - 16), period)
    if match is None:
        return False
    word = match.group(1)
    return (len(word) == 1 and word.isalpha()) or word.lower() in _ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Split a paragraph into sentences by rule (English and Chinese punctuation).

    A sentence ends at 。！？；… (closing quotes and brackets stay with it), at ! or ? right before
    a CJK character, or at . ! ? followed by whitespace and a capital, digit, opening quote or CJK
    character - unless the period ends an abbreviation or an initial ("Mr.", "J."). Good enough
    for pretraining pairs; not a linguistic tool.
    """
    sentences = []
    start = 0
    for match in _TERMINATOR.finditer(text):
        if _CJK_TERMINATORS.isdisjoint(match.group(1)) and not _ends_latin_sentence(text, match):
            continue
        sentence = text[start : match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def _ends_latin_sentence(text: str, match: re.Match[str]) -> bool:
    end = match.end()
    if _LATIN_NEXT.match(text, end):
        return match.group(1) != "." or not _is_abbreviation(text, match.start())
    return match.group(1)[-1] in "!?" and _CJK_CHAR.match(text, end) is not None


# --------------------------------------------------------------------------------------------
# input paths
# --------------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files named by `inputs` (files, directories, globs), in a fixed order, each once.

    Directories contribute their files recursively (hidden ones skipped), sorted; globs sorted.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        raise AlbertError("no inputs given; pass text files, directories or globs (plain or .gz)")
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found[path] = None
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
            if not files:
                raise AlbertError(f"input directory {path} has no files; pass text files (plain or .gz)")
            found.update(dict.fromkeys(files))
        elif glob.has_magic(str(item)):
            files = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not files:
                raise AlbertError(f"input pattern {item!r} matches no files; check the glob")
            found.update(dict.fromkeys(files))
        else:
            raise AlbertError(f"input {path} does not exist; pass text files, directories or globs")
    return list(found)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


# --------------------------------------------------------------------------------------------
# reading: bounded lines, invalid UTF-8 counted and skipped, binary files refused
# --------------------------------------------------------------------------------------------


@dataclass
class FileStats:
    """What reading one file found; ends up in the manifest."""

    path: str
    format: str = ""
    bytes: int = 0
    lines: int = 0
    invalid_utf8_lines: int = 0
    invalid_bytes: int = 0
    first_invalid: str = ""


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def _raw_lines(handle: io.BufferedIOBase) -> Iterator[tuple[bytes, bool]]:
    """Yield (line bytes, continues previous line); a line is cut into pieces of `MAX_LINE_BYTES`.

    Cuts fall on UTF-8 character boundaries so each piece decodes on its own.
    """
    carry = b""
    continued = False
    while True:
        chunk = carry + handle.readline(MAX_LINE_BYTES - len(carry))
        carry = b""
        if not chunk:
            return
        if not chunk.endswith(b"\n") and len(chunk) >= MAX_LINE_BYTES:
            cut = len(chunk)
            while cut > len(chunk) - 4 and cut > 0 and (chunk[cut - 1] & 0xC0) == 0x80:
                cut -= 1  # back off over continuation bytes ...
            if cut > 0 and chunk[cut - 1] >= 0xC0:
                cut -= 1  # ... and the lead byte of the cut character
            chunk, carry = chunk[:cut], chunk[cut:]
            yield chunk, continued
            continued = True
            continue
        yield chunk, continued
        continued = False


def read_lines(path: Path, stats: FileStats, progress: Callable[[int], None]) -> Iterator[tuple[str, bool]]:
    """Stripped UTF-8 lines of `path` as (text, continues previous line); "" for blank lines.

    Undecodable lines are skipped and counted; a file that is mostly undecodable is refused.
    `progress` is called with the number of bytes consumed (compressed bytes for .gz).
    """
    try:
        raw = open(path, "rb")  # closed below; its position drives the progress bar
    except OSError as e:
        raise AlbertError(f"cannot open {path} ({e}); check the path and permissions") from e
    with raw:
        handle = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        position = 0
        try:
            for number, (chunk, continued) in enumerate(_raw_lines(handle), 1):  # type: ignore[arg-type]
                stats.bytes += len(chunk)
                text = _decode(chunk)
                if text is None:
                    stats.invalid_utf8_lines += 1
                    stats.invalid_bytes += len(chunk)
                    stats.first_invalid = stats.first_invalid or f"{path}:{number}"
                    _check_mostly_text(stats)
                    continue
                stats.lines += 1
                if number % 4096 == 0:
                    new = raw.tell()
                    progress(new - position)
                    position = new
                yield text.strip(), continued
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise AlbertError(f"cannot read {path} ({e}); pass plain UTF-8 text or .gz files") from e
        progress(raw.tell() - position)
    _check_mostly_text(stats, final=True)


def _decode(chunk: bytes) -> str | None:
    """The line as text, or None for binary junk (invalid UTF-8, or a NUL, which text never has)."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _check_mostly_text(stats: FileStats, final: bool = False) -> None:
    """Refuse a file whose undecodable share passes `MAX_INVALID_FRACTION` (early: after 64 KiB)."""
    if not final and stats.bytes < SNIFF_BYTES:
        return
    if stats.invalid_bytes > MAX_INVALID_FRACTION * max(stats.bytes, 1):
        raise AlbertError(
            f"{stats.path} does not look like UTF-8 text ({stats.invalid_utf8_lines} undecodable line(s), "
            f"first at {stats.first_invalid}); pass plain UTF-8 text files (or .gz of them)"
        )


def detect_format(path: Path) -> str:
    """Guess the layout from the start of a file.

    Blank lines separate documents: lines that are mostly single sentences mean ``sentences``,
    otherwise ``paragraphs``. Without blank lines, multi-sentence lines mean ``documents`` (one per
    line); single sentences mean ``sentences`` (the whole file is one document, cut into pieces).
    A CoNLL suffix (``.conll``, ``.bio``, ...; before any ``.gz``) means ``conll``; a table suffix
    (``.csv``, ``.tsv``, ``.jsonl``) means ``table``.
    """
    suffix = (path.with_suffix("") if path.suffix == ".gz" else path).suffix.lower()
    if suffix in CONLL_SUFFIXES:
        return "conll"
    if suffix in TABLE_SUFFIXES:
        return "table"
    try:
        with _open_binary(path) as handle:
            sample = handle.read(SNIFF_BYTES)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise AlbertError(f"cannot read {path} ({e}); pass plain UTF-8 text or .gz files") from e
    lines = sample.decode("utf-8", errors="replace").split("\n")
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut off
    text_lines = [line.strip() for line in lines if line.strip()]
    blank = sum(1 for line in lines[:-1] if not line.strip())
    if not text_lines:
        return "sentences"
    multi = sum(len(split_sentences(line)) > 1 for line in text_lines) / len(text_lines)
    if blank:
        return "sentences" if multi < 0.5 else "paragraphs"
    return "documents" if multi >= 0.5 else "sentences"


# --------------------------------------------------------------------------------------------
# documents -> work units
# --------------------------------------------------------------------------------------------


@dataclass
class Unit:
    """A few hundred KB of whole documents from one file: the unit of work and of seeding.

    Each document is a list of lines; in ``sentences`` layout a line is a sentence, in ``conll``
    layout a sentence of tab-joined words, otherwise the worker splits lines into sentences.
    """

    file_index: int
    unit_index: int
    format: str
    documents: list[list[str]] = field(default_factory=list)
    nbytes: int = 0


def read_units(
    paths: Sequence[Path],
    input_format: str,
    file_stats: list[FileStats],
    progress: Callable[[int], None],
    unit_bytes: int,
    text_columns: Sequence[str] | None = None,
) -> Iterator[Unit]:
    """Stream the documents of every file, grouped into units of about `unit_bytes`."""
    for file_index, path in enumerate(paths):
        layout = detect_format(path) if input_format == "auto" else input_format
        stats = FileStats(str(path), layout)
        file_stats.append(stats)
        if layout == "table":
            lines = table_lines(path, stats, progress, text_columns)
        else:
            lines = read_lines(path, stats, progress)
            lines = conll_sentences(lines) if layout == "conll" else lines
        yield from _file_units(file_index, layout, lines, unit_bytes)


def table_lines(
    path: Path, stats: FileStats, progress: Callable[[int], None], text_columns: Sequence[str] | None
) -> Iterator[tuple[str, bool]]:
    """The text of a CSV/TSV/JSON-lines file, row after row: each text column's value as a line.

    Read with the text-classification reader (`albert.tasks.common.read_table`), so a file that
    fine-tunes also pretrains. Columns named in `text_columns` must all be there; by default
    ``text`` must be and ``text_pair`` is used where it is.
    """
    from albert.tasks.common import read_table, require_columns

    rows = read_table(path)
    columns = list(text_columns or DEFAULT_TEXT_COLUMNS)
    require_columns(path, rows, *(columns if text_columns else columns[:1]))
    stats.bytes, stats.lines = path.stat().st_size, len(rows)
    for _, row in rows:
        for column in columns:
            value = row.get(column)
            if value is not None and str(value).strip():
                yield " ".join(str(value).split()), False
    progress(stats.bytes)


def conll_sentences(lines: Iterator[tuple[str, bool]]) -> Iterator[tuple[str, bool]]:
    """CoNLL token lines -> one line per sentence (its tokens joined by tabs), and a blank line
    where ``-DOCSTART-`` starts a new document - the ``sentences`` layout, with words kept apart.

    The token is the first column, split as `albert.tasks.token_classification` splits it; the tag
    columns are not needed for pretraining.
    """
    from albert.tasks.token_classification import conll_columns

    words: list[str] = []
    for text, _ in lines:
        if text.startswith("-DOCSTART-"):
            if words:
                yield "\t".join(words), False
            words = []
            yield "", False
        elif text:
            words.append(conll_columns(text)[0].strip())
        elif words:
            yield "\t".join(words), False
            words = []
    if words:
        yield "\t".join(words), False


def _file_units(
    file_index: int, layout: str, lines: Iterator[tuple[str, bool]], unit_bytes: int
) -> Iterator[Unit]:
    unit = Unit(file_index, 0, layout)
    document: list[str] = []
    document_bytes = 0
    max_document_bytes = min(MAX_DOCUMENT_BYTES, unit_bytes)

    def end_document() -> Unit | None:
        """Close the current document; return the unit if that filled it."""
        nonlocal unit, document, document_bytes
        if document:
            unit.documents.append(document)
            unit.nbytes += document_bytes
        document, document_bytes = [], 0
        if unit.nbytes >= unit_bytes:
            full, unit = unit, Unit(file_index, unit.unit_index + 1, layout)
            return full
        return None

    for text, continued in lines:
        # a blank line ends a document; in `documents` layout so does every new line
        if (not text or (layout == "documents" and not continued)) and (full := end_document()):
            yield full
        if not text:
            continue
        document.append(text)  # a piece of an over-long line joins the same document
        document_bytes += len(text) if text.isascii() else len(text.encode("utf-8"))
        if document_bytes >= max_document_bytes and (full := end_document()):
            yield full
    end_document()
    if unit.documents:
        yield unit
