"""``albert data``: build ALBERT pretraining data (SOP pairs, n-gram whole-word masking) from text."""

from __future__ import annotations

import argparse
import time

from albert.data.encoders import ENGINE_CHOICES
from albert.data.text import FORMATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tokenizer", required=True, metavar="DIR", help="tokenizer directory (spiece.model or vocab.txt)"
    )
    parser.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help="text (or CoNLL) files, directories or globs, plain or .gz",
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="data directory to write (replaces earlier `albert data` output; refuses one holding other files)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="input layout: one sentence per line with blank lines between documents (sentences), raw "
        "paragraphs (paragraphs), one document per line (documents), or a token-classification training "
        "file (conll: its words, encoded as fine-tuning encodes them) or a text-classification file "
        "(table: CSV/TSV/JSONL text columns), the last two for task-adaptive pretraining; default: auto, "
        "per file (.conll files are conll, .csv/.tsv/.jsonl files table)",
    )
    parser.add_argument(
        "--text-column",
        nargs="+",
        metavar="NAME",
        help="text columns of CSV/TSV/JSONL inputs; default: text, and text_pair where present",
    )
    parser.add_argument("--max-seq-length", type=int, default=512, metavar="N", help="default: 512")
    parser.add_argument("--max-predictions-per-seq", type=int, default=20, metavar="N", help="default: 20")
    parser.add_argument("--masked-lm-prob", type=float, default=0.15, metavar="P", help="default: 0.15")
    parser.add_argument(
        "--ngram", type=int, default=3, metavar="N", help="longest masked n-gram in words; default: 3"
    )
    parser.add_argument(
        "--dupe-factor",
        type=int,
        metavar="N",
        help="passes over the data with different masks; default: 5, or 1 with --dynamic-masking",
    )
    parser.add_argument("--short-seq-prob", type=float, default=0.1, metavar="P", help="default: 0.1")
    parser.add_argument("--seed", type=int, default=12345, help="default: 12345")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes; default: 1")
    parser.add_argument(
        "--dynamic-masking",
        action="store_true",
        help="store unmasked examples; the dataset masks them anew every epoch",
    )
    parser.add_argument(
        "--tokenizer-engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="auto (default): sentencepiece's fast engine where it gives the tokenizer's ids, in which "
        "case special-token strings in the text are ordinary text; tokenizers: always the tokenizer's own",
    )


def run(args: argparse.Namespace) -> int:
    from albert.data.build import build_pretraining_data, summary

    start = time.perf_counter()
    manifest = build_pretraining_data(
        args.tokenizer,
        args.input,
        args.output,
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        ngram=args.ngram,
        dupe_factor=args.dupe_factor,
        short_seq_prob=args.short_seq_prob,
        seed=args.seed,
        workers=args.workers,
        dynamic_masking=args.dynamic_masking,
        input_format=args.format,
        text_columns=args.text_column,
        tokenizer_engine=args.tokenizer_engine,
    )
    print(summary(manifest, time.perf_counter() - start))
    print(f"-> {args.output}")
    return 0
