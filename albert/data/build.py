"""`build_pretraining_data`: text files -> a directory of sharded SOP + masked-LM examples.

The main process streams the inputs into units (`albert.data.text`), hands them to a pool of
worker processes (`albert.data.examples`) with at most two units per worker in flight, and
appends the results to shards in unit order (`albert.data.shards`). Memory is bounded by a few
units plus one shard's index, whatever the corpus size, and the output is byte-identical for
any number of workers because each unit is seeded by its position, not by who processes it.

The directory is built under a hidden temporary name next to `output_dir` and renamed into place
only when complete; an interrupted or failed run removes it (and a killed one leaves only a
hidden directory without a manifest, which nothing mistakes for data).
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import albert
from albert.data import text
from albert.data.encoders import choose_engine
from albert.data.examples import (
    ExampleOptions,
    UnitProcessor,
    UnitResult,
    UnitStats,
    init_worker,
    process_unit,
)
from albert.data.masking import MaskingOptions, VocabularyTables
from albert.data.shards import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_FILE,
    ShardWriter,
    read_manifest,
    tokenizer_fingerprint,
    write_manifest,
)
from albert.data.text import FORMATS, FileStats, Unit, expand_inputs, read_units
from albert.errors import AlbertError
from albert.paths import check_output

logger = logging.getLogger(__name__)

STATIC_DUPE_FACTOR = 5  # static masking: 5 differently masked copies (the original used 40)
DYNAMIC_DUPE_FACTOR = 1  # dynamic masking re-masks every epoch, so one copy suffices
UNITS_IN_FLIGHT_PER_WORKER = 2


def build_pretraining_data(
    tokenizer_dir: str | Path,
    inputs: Sequence[str | Path] | str | Path,
    output_dir: str | Path,
    *,
    max_seq_length: int = 512,
    max_predictions_per_seq: int = 20,
    masked_lm_prob: float = 0.15,
    ngram: int = 3,
    dupe_factor: int | None = None,
    short_seq_prob: float = 0.1,
    seed: int = 12345,
    workers: int = 1,
    dynamic_masking: bool = False,
    input_format: str = "auto",
    text_columns: Sequence[str] | None = None,
    tokenizer_engine: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Build ALBERT pretraining data from text files; return the manifest (also in ``manifest.json``).

    `inputs` are files, directories or globs, plain or ``.gz``. `dupe_factor` defaults to
    5 with static masking and 1 with `dynamic_masking` (examples stored unmasked, masked by
    `PretrainingDataset` differently every epoch). An existing `output_dir` is replaced only if it
    holds earlier pretraining data. With ``workers > 1`` the pool starts processes with
    ``spawn``, so a script calling this needs the usual ``if __name__ == "__main__":`` guard.
    `tokenizer_engine` ``auto`` tokenises with ``sentencepiece`` where that gives the tokenizer's
    ids (see `albert.data.encoders`; special-token strings in the text are then ordinary text),
    ``tokenizers`` always with the tokenizer's own engine; the manifest records which was used.
    `text_columns` name the text columns of CSV/TSV/JSON-lines inputs (``table`` layout; default
    ``text`` and, where present, ``text_pair``).
    """
    from albert.tokenization import AlbertTokenizer

    if dupe_factor is None:
        dupe_factor = DYNAMIC_DUPE_FACTOR if dynamic_masking else STATIC_DUPE_FACTOR
    _check_options(max_seq_length, max_predictions_per_seq, masked_lm_prob, ngram, dupe_factor)
    _check_run(short_seq_prob, seed, workers, input_format)
    tokenizer = AlbertTokenizer.from_pretrained(tokenizer_dir)
    engine = choose_engine(tokenizer, tokenizer_dir, tokenizer_engine)
    paths = expand_inputs(inputs)
    output = Path(output_dir)
    _check_output(output)
    token_dtype = "uint16" if len(tokenizer) <= 1 << 16 else "uint32"
    options = ExampleOptions(
        tokenizer_dir=str(tokenizer_dir),
        tokenizer_engine=engine,
        max_seq_length=max_seq_length,
        short_seq_prob=short_seq_prob,
        dupe_factor=dupe_factor,
        seed=seed,
        dynamic_masking=dynamic_masking,
        masking=MaskingOptions(masked_lm_prob, max_predictions_per_seq, ngram, tokenizer.mask_token_id),
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        token_dtype=token_dtype,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(output)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{os.getpid()}-", dir=output.parent))
    try:
        tables = VocabularyTables.from_tokenizer(tokenizer).save(staging)
        shards, totals, files = _write_shards(
            staging, paths, options, input_format, text_columns, workers, progress
        )
        _check_examples(totals, files)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "albert_version": albert.__version__,
            "tokenizer": {
                "kind": tokenizer.kind,
                "path": str(Path(tokenizer_dir).resolve()),  # where it was; the fingerprint is what counts
                "fingerprint": tokenizer_fingerprint(tokenizer_dir),
                "vocab_size": len(tokenizer),
                "pad_token_id": tokenizer.pad_token_id,
                "cls_token_id": tokenizer.cls_token_id,
                "sep_token_id": tokenizer.sep_token_id,
                "mask_token_id": tokenizer.mask_token_id,
            },
            "tokenizer_engine": engine,
            "options": {
                "max_seq_length": max_seq_length,
                "max_predictions_per_seq": max_predictions_per_seq,
                "masked_lm_prob": masked_lm_prob,
                "ngram": ngram,
                "dupe_factor": dupe_factor,
                "short_seq_prob": short_seq_prob,
                "seed": seed,
                "dynamic_masking": dynamic_masking,
                "input_format": input_format,
                "text_columns": list(text_columns) if text_columns else None,
                "unit_bytes": text.UNIT_BYTES,
            },
            "token_dtype": token_dtype,
            "tables": tables,
            "inputs": [asdict(f) for f in files],
            "counts": _counts(totals, files),
            "shards": shards,
        }
        write_manifest(staging, manifest)
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


# --------------------------------------------------------------------------------------------
# checks: every mistake is one AlbertError before any work is done
# --------------------------------------------------------------------------------------------


def _check_options(
    max_seq_length: int, max_predictions_per_seq: int, masked_lm_prob: float, ngram: int, dupe_factor: int
) -> None:
    if not 8 <= max_seq_length <= 65535:
        raise AlbertError(
            f"max_seq_length must be between 8 and 65535, not {max_seq_length} (ALBERT uses 512)"
        )
    if max_predictions_per_seq < 1:
        raise AlbertError(
            f"max_predictions_per_seq must be at least 1, not {max_predictions_per_seq} (ALBERT: 20)"
        )
    if not 0.0 <= masked_lm_prob < 1.0:
        raise AlbertError(f"masked_lm_prob must be in [0, 1), not {masked_lm_prob} (ALBERT uses 0.15)")
    if ngram < 1:
        raise AlbertError(f"ngram must be at least 1, not {ngram} (ALBERT uses 3)")
    if dupe_factor < 1:
        raise AlbertError(f"dupe_factor must be at least 1, not {dupe_factor}")


def _check_run(short_seq_prob: float, seed: int, workers: int, input_format: str) -> None:
    if not 0.0 <= short_seq_prob <= 1.0:
        raise AlbertError(f"short_seq_prob must be in [0, 1], not {short_seq_prob} (ALBERT uses 0.1)")
    if seed < 0:
        raise AlbertError(f"seed must be a non-negative integer, not {seed}")
    if workers < 1:
        raise AlbertError(f"workers must be at least 1, not {workers}")
    if input_format not in FORMATS:
        raise AlbertError(f"input format must be one of {', '.join(FORMATS)}, not {input_format!r}")


def _check_output(output: Path) -> None:
    """Refuse to replace anything but earlier pretraining data (or an empty directory): a data
    directory holding files `albert data` did not write (its manifest lists what it wrote) is
    refused too, since replacing the directory would delete them."""
    check_output(output, directory=True)
    if output.is_dir() and any(output.iterdir()) and not (output / MANIFEST_FILE).is_file():
        raise AlbertError(
            f"output directory {output} exists and does not hold pretraining data; "
            "choose a new --output or empty it first"
        )
    if (output / MANIFEST_FILE).is_file():
        try:
            ours = written_files(read_manifest(output))
        except AlbertError:
            raise AlbertError(
                f"output directory {output} has an unreadable {MANIFEST_FILE}, so what it holds cannot be told "
                "apart from other files; delete the directory or choose another --output"
            ) from None
        foreign = sorted(p.name for p in output.iterdir() if p.name not in ours)
        if foreign:
            raise AlbertError(
                f"output directory {output} holds earlier data and files `albert data` did not write "
                f"({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}), which replacing it would "
                "delete; move them out or choose another --output"
            )


def written_files(manifest: dict[str, Any]) -> set[str]:
    """The names `albert data` wrote into a data directory, from its manifest."""
    shards = {
        f"{shard['name']}.{kind}"
        for shard in manifest.get("shards", [])
        for kind in ("input_ids.bin", "positions.bin", "labels.bin", "index.npy")
    }
    return {MANIFEST_FILE, *manifest.get("tables", {}).values(), *shards}


def remove_stale_staging(output: Path) -> None:
    """Delete what killed runs left beside `output`: `.NAME.partial-PID-*` staging and
    `.NAME.old-PID` retired directories whose process is gone (older staging names carry no
    process id and are stale too). A live run's directories are left alone."""
    for path in output.parent.glob(f".{glob.escape(output.name)}.*"):
        match = re.fullmatch(
            rf"\.{re.escape(output.name)}\.(?:partial|old)-(?:(\d+)(?:-.*)?|[^-]*)", path.name
        )
        if match and path.is_dir() and not (match.group(1) and _process_alive(int(match.group(1)))):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _check_examples(totals: UnitStats, files: list[FileStats]) -> None:
    names = ", ".join(f.path for f in files[:3]) + (" ..." if len(files) > 3 else "")
    if totals.documents == 0:
        raise AlbertError(f"no text found in {names}; pass UTF-8 text files (plain or .gz)")
    if totals.examples == 0:
        raise AlbertError(
            f"none of the {totals.documents} document(s) in {names} has two or more sentences, so no "
            "sentence-order pair can be made; put one sentence per line with blank lines between "
            "documents, or pass --format paragraphs/documents for raw text"
        )


# --------------------------------------------------------------------------------------------
# the pipeline
# --------------------------------------------------------------------------------------------


def _write_shards(
    directory: Path,
    paths: list[Path],
    options: ExampleOptions,
    input_format: str,
    text_columns: Sequence[str] | None,
    workers: int,
    progress: bool,
) -> tuple[list[dict[str, Any]], UnitStats, list[FileStats]]:
    files: list[FileStats] = []
    totals = UnitStats()
    writer = ShardWriter(directory)
    total_bytes = sum(p.stat().st_size for p in paths)
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, desc="albert data", disable=not progress or None
    ) as bar:
        units = read_units(paths, input_format, files, bar.update, text.UNIT_BYTES, text_columns)
        try:
            for result in _process(units, options, workers):
                writer.add(result)
                totals.add(result.stats)
                bar.set_postfix(examples=totals.examples, refresh=False)
        except BaseException:
            writer.abort()
            raise
    for stats in files:
        if stats.invalid_utf8_lines:
            logger.warning(
                "skipped %d line(s) of %s that are not valid UTF-8 (first at %s)",
                stats.invalid_utf8_lines,
                stats.path,
                stats.first_invalid,
            )
    return writer.close(), totals, files


def _process(units: Iterable[Unit], options: ExampleOptions, workers: int) -> Iterator[UnitResult]:
    """Results in unit order: in this process for one worker, else from a bounded window of a pool."""
    if workers == 1:
        processor = UnitProcessor(options)
        yield from map(processor, units)
        return
    context = multiprocessing.get_context("spawn")  # no forked tokenizer threads; same on every OS
    with context.Pool(workers, initializer=init_worker, initargs=(options, False)) as pool:
        pending: deque[Any] = deque()
        for unit in units:
            pending.append(pool.apply_async(process_unit, (unit,)))
            if len(pending) >= workers * UNITS_IN_FLIGHT_PER_WORKER:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _counts(totals: UnitStats, files: list[FileStats]) -> dict[str, Any]:
    tokens = max(totals.tokens, 1)
    return {
        "files": len(files),
        "bytes": sum(f.bytes for f in files),
        "invalid_utf8_lines": sum(f.invalid_utf8_lines for f in files),
        "documents": totals.documents,
        "skipped_documents": totals.skipped_documents,
        "sentences": totals.sentences,
        "examples": totals.examples,
        "tokens": totals.tokens,
        "predictions": totals.predictions,
        "masked_fraction": round(totals.predictions / tokens, 6),
        "sentence_order_swapped": totals.swapped,
        "span_words": totals.span_words,
        "span_words_drawn": totals.span_words_drawn,
    }


def _publish(staging: Path, output: Path) -> None:
    """Move the finished directory into place, replacing earlier data only after it is complete."""
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    if not output.exists():
        staging.rename(output)
        return
    retired = output.with_name(f".{output.name}.old-{os.getpid()}")
    output.rename(retired)
    staging.rename(output)
    shutil.rmtree(retired, ignore_errors=True)


def summary(manifest: dict[str, Any], seconds: float) -> str:
    """The lines `albert data` prints at the end."""
    counts, options = manifest["counts"], manifest["options"]
    examples = max(counts["examples"], 1)
    swapped = counts["sentence_order_swapped"]
    span_text = "/".join(f"{share:.2f}" for share in _shares(counts["span_words"]))
    drawn_text = "/".join(f"{share:.2f}" for share in _shares(counts["span_words_drawn"]))
    masking = (
        "dynamic (masked when loaded, anew every epoch)"
        if options["dynamic_masking"]
        else f"{100 * counts['masked_fraction']:.1f}% of tokens, spans of 1/2/3.. words {span_text} "
        f"(drawn {drawn_text})"
    )
    megabytes = counts["bytes"] / 1e6
    return "\n".join(
        [
            f"read      {counts['files']} file(s), {megabytes:.1f} MB, {counts['documents']} documents "
            f"({counts['skipped_documents']} with one sentence skipped), {counts['sentences']} sentences",
            f"wrote     {counts['examples']} examples ({options['dupe_factor']} pass(es)), {counts['tokens']} tokens "
            f"in {len(manifest['shards'])} shard(s)",
            f"masked    {masking}",
            f"SOP       {swapped} swapped / {counts['examples'] - swapped} in order "
            f"({100 * swapped / examples:.1f}% swapped)",
            f"speed     {seconds:.1f} s, {megabytes / max(seconds, 1e-9):.2f} MB/s",
        ]
    )


def _shares(histogram: list[int]) -> np.ndarray:
    counts = np.asarray(histogram, dtype=float)
    return counts / max(counts.sum(), 1.0)
