"""`albert predict`: run a pipeline over texts from arguments, a file or stdin; JSON lines out.

    albert predict --task text-classification --model runs/sst "a gem" "a dud"
    albert predict --task token-classification --model runs/ner --input tweets.txt
    albert predict --task question-answering --model runs/squad --question Q --context C
    cat texts.jsonl | albert predict --task feature-extraction --model runs/pretrain --pooling cls

Input files hold one text per line, or JSON lines (objects with "text" (and "text_pair") or, for
question answering, "question" and "context"). Output: one JSON value per input, in input order
(inputs are batched by length internally). ``--runtime onnx`` runs an exported model without torch.
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
from albert.pipeline import PIPELINES, RUNTIMES


def parse_inputs(lines: list[str], source: str) -> list[Any]:
    """Texts, or objects when the input is JSON lines (every non-blank line a JSON object)."""
    lines = [line for line in lines if line.strip()]
    if lines and all(line.lstrip().startswith("{") for line in lines):
        items = []
        for number, line in enumerate(lines, start=1):
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise AlbertError(f"{source} line {number}: not valid JSON ({e.msg})") from None
        return items
    return [line.rstrip("\r\n") for line in lines]


def read_inputs(args: argparse.Namespace) -> list[Any]:
    if args.question is not None or args.context is not None:
        if args.question is None or args.context is None:
            raise AlbertError("pass both --question and --context")
        return [{"question": args.question, "context": args.context}]
    if args.texts:
        return list(args.texts)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise AlbertError(f"input file not found: {path}")
        try:
            return parse_inputs(path.read_text(encoding="utf-8-sig").splitlines(), str(path))
        except UnicodeDecodeError as e:
            raise AlbertError(f"{path} is not valid UTF-8 (byte {e.start}); re-save it as UTF-8") from None
    if sys.stdin.isatty():
        raise AlbertError("no input: pass texts as arguments, --input FILE, or pipe text into stdin")
    return parse_inputs(sys.stdin.read().splitlines(), "stdin")


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
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="torch runtime: auto = bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32",
    )
    parser.add_argument("--input", help="file with one text per line, or JSON lines")
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
    from albert.pipeline import pipeline

    items = read_inputs(args)
    precision = args.precision
    if args.runtime == "torch":
        from albert.hardware import announce_precision, choose_precision

        precision = choose_precision(args.precision)
    pipe = pipeline(
        args.task, args.model, args.tokenizer, args.runtime, args.batch_size, args.max_seq_length, precision
    )
    if args.runtime == "torch":
        announce_precision("predict", args.precision, precision)
    kwargs: dict[str, Any] = {}
    if args.task in ("text-classification", "fill-mask") and args.top_k is not None:
        kwargs["top_k"] = args.top_k
    if args.task == "feature-extraction":
        kwargs["pooling"] = args.pooling
    results = pipe(items, **kwargs)
    lines = "".join(json.dumps(to_json(r), ensure_ascii=False) + "\n" for r in results)
    if args.output:
        target = Path(args.output)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(lines, encoding="utf-8")
        os.replace(partial, target)  # never a half-written predictions file
    else:
        sys.stdout.write(lines)
    return 0
