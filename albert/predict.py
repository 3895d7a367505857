"""`albert predict`: run a pipeline over texts from arguments, a file or stdin; JSON lines out.

    albert predict --task text-classification --model runs/sst "a gem" "a dud"
    albert predict --task token-classification --model runs/ner --input tweets.txt
    albert predict --task question-answering --model runs/squad --question Q --context C
    cat texts.jsonl | albert predict --task feature-extraction --model runs/pretrain --pooling cls

Input files hold one text per line (``--input-format text``), or JSON lines (``jsonl``: objects
with "text" (and "text_pair") or, for question answering, "question" and "context"). The format
comes from the file's extension (.jsonl/.ndjson: JSON lines; .txt: text); otherwise it is JSON lines
only when every non-blank line is a JSON object. Output: one JSON value per input line, in input
order, so output line N always answers input line N; a blank line gets ``null``. (Inputs are
batched by length internally.) ``--runtime onnx`` runs an exported model without torch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from albert.errors import AlbertError
from albert.hardware import PRECISIONS
from albert.paths import check_output, save_guard
from albert.pipelines import PIPELINES, RUNTIMES, pipeline

INPUT_FORMATS = ("auto", "text", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt", ".text")


def _json_line(line: str, source: str, number: int) -> Any:
    """One JSON-lines input: an object (or a bare string, taken as the text)."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise AlbertError(
            f"{source} line {number}: not valid JSON ({e.msg}); fix the line, or pass --input-format text "
            "if the input is plain text"
        ) from None
    if not isinstance(value, (dict, str)):
        raise AlbertError(
            f"{source} line {number}: expected a JSON object or string, got {line.strip()[:60]!r}"
        )
    return value


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def input_format_for(source: str, lines: list[str], requested: str = "auto") -> str:
    """`requested`, else the file extension's format, else JSON lines only when every non-blank
    line is a JSON object (text whose lines merely start with "{" stays text)."""
    if requested != "auto":
        return requested
    suffix = Path(source).suffix.lower()
    if suffix in JSONL_SUFFIXES or suffix in TEXT_SUFFIXES:
        return "jsonl" if suffix in JSONL_SUFFIXES else "text"
    filled = [line for line in lines if line.strip()]
    return "jsonl" if filled and all(_is_json_object(line) for line in filled) else "text"


def parse_inputs(lines: list[str], source: str, input_format: str = "auto") -> list[Any]:
    """One item per line, in order: a text, a JSON object (JSON lines), or None for a blank line."""
    if input_format_for(source, lines, input_format) == "text":
        return [line.rstrip("\r\n") if line.strip() else None for line in lines]
    return [_json_line(line, source, n) if line.strip() else None for n, line in enumerate(lines, start=1)]


def read_inputs(args: argparse.Namespace) -> list[Any]:
    if args.question is not None or args.context is not None:
        if args.question is None or args.context is None:
            raise AlbertError("pass both --question and --context")
        return [{"question": args.question, "context": args.context}]
    if args.texts:
        return [text if text.strip() else None for text in args.texts]
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise AlbertError(f"input file not found: {path}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise AlbertError(f"{path} is not valid UTF-8 (byte {e.start}); re-save it as UTF-8") from None
        return parse_inputs(text.splitlines(), str(path), args.input_format)
    if sys.stdin.isatty():
        raise AlbertError("no input: pass texts as arguments, --input FILE, or pipe text into stdin")
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError as e:
        raise AlbertError(f"stdin is not valid UTF-8 (byte {e.start}); pipe UTF-8 text") from None
    return parse_inputs(text.splitlines(), "stdin", args.input_format)


def to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", help="input texts (default: --input FILE or stdin)")
    parser.add_argument("--task", required=True, choices=list(PIPELINES))
    parser.add_argument("--model", required=True, help="model directory (or .onnx file with --runtime onnx)")
    parser.add_argument("--tokenizer", help="tokenizer directory (default: the model's)")
    parser.add_argument("--runtime", choices=list(RUNTIMES), default="torch")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="torch runtime: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
    )
    parser.add_argument("--input", help="file with one text per line, or JSON lines")
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="text: one text per line; jsonl: one JSON object per line; auto (default): from the extension "
        "(.jsonl/.ndjson, .txt), else jsonl only if every non-blank line is a JSON object",
    )
    parser.add_argument("--output", help="write JSON lines here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, help="default: the fine-tuning run's")
    parser.add_argument(
        "--top-k",
        type=int,
        help="text-classification: labels per text (default 1, 0 = all); fill-mask: tokens (default 5)",
    )
    parser.add_argument(
        "--pooling", choices=["mean", "cls"], default="mean", help="feature-extraction pooling"
    )
    parser.add_argument("--question", help="question-answering: the question")
    parser.add_argument("--context", help="question-answering: the context")


def run(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, directory=False)
    if args.top_k is not None and args.top_k < (1 if args.task == "fill-mask" else 0):
        raise AlbertError(
            f"--top-k must be at least {1 if args.task == 'fill-mask' else 0}, not {args.top_k}"
        )
    items = read_inputs(args)
    precision = args.precision
    if args.runtime == "torch":
        from albert.hardware import announce_precision, choose_precision

        precision = choose_precision(args.precision)
    pipe = pipeline(
        args.task, args.model, args.tokenizer, args.runtime, args.batch_size, args.max_seq_length, precision
    )
    kwargs: dict[str, Any] = {}
    if args.task in ("text-classification", "fill-mask") and args.top_k is not None:
        kwargs["top_k"] = args.top_k
    if args.task == "feature-extraction":
        kwargs["pooling"] = args.pooling
    answered = iter(pipe([item for item in items if item is not None], **kwargs))
    results = [None if item is None else next(answered) for item in items]  # blank lines stay in place
    lines = "".join(json.dumps(to_json(r), ensure_ascii=False) + "\n" for r in results)
    if args.output:
        target = Path(args.output)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with save_guard(target, "no predictions file was written"):
                target.parent.mkdir(parents=True, exist_ok=True)
                partial.write_text(lines, encoding="utf-8")
                os.replace(partial, target)  # never a half-written predictions file
        finally:
            partial.unlink(missing_ok=True)
    else:
        sys.stdout.write(lines)
    if args.runtime == "torch":  # last, so that an error above stays the one line on stderr
        announce_precision("predict", args.precision, precision)
    return 0
