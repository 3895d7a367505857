"""``albert tokenizer ACTION``: tokenizer tools. ``train`` builds an ALBERT SentencePiece vocabulary.

Actions are nested subcommands so later ones (inspect, convert, ...) slot in beside ``train``
without changing how existing invocations parse.
"""

from __future__ import annotations

import argparse

from albert.errors import AlbertError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="tokenizer_action", metavar="ACTION")
    train = actions.add_parser(
        "train",
        help="train an ALBERT SentencePiece vocabulary",
        description="Train a SentencePiece vocabulary the ALBERT way and write a tokenizer directory "
        "(spiece.model + transformers JSON files).",
    )
    train.add_argument(
        "--input", nargs="+", required=True, metavar="FILE", help="UTF-8 text files, plain or .gz"
    )
    train.add_argument(
        "--vocab-size", type=int, required=True, metavar="N", help="vocabulary size (ALBERT: 30000)"
    )
    train.add_argument("--output", required=True, metavar="DIR", help="directory to write the tokenizer to")
    train.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram", help="default: unigram")
    train.add_argument(
        "--character-coverage", type=float, default=0.9995, metavar="F", help="default: 0.9995"
    )
    train.add_argument(
        "--input-sentence-size",
        type=int,
        default=2_000_000,
        metavar="N",
        help="sample at most N sentences (bounds memory; 0 = all); default: 2000000",
    )
    train.add_argument(
        "--max-piece-length",
        type=int,
        default=16,
        metavar="N",
        help="longest piece in characters; 1 = character-level (Chinese BERT's vocabulary); default: 16",
    )
    train.add_argument("--seed", type=int, default=12345, help="sampling seed; default: 12345")
    train.add_argument(
        "--cased", action="store_true", help="keep upper case (default: lower-case like ALBERT)"
    )
    train.add_argument("--keep-accents", action="store_true", help="keep accents (default: strip them)")
    train.add_argument(
        "--threads", type=int, default=None, metavar="N", help="trainer threads (default: all cores)"
    )


def run(args: argparse.Namespace) -> int:
    if args.tokenizer_action == "train":
        return _train(args)
    raise AlbertError("choose an action: `albert tokenizer train --input FILE --vocab-size N --output DIR`")


def _train(args: argparse.Namespace) -> int:
    from albert.tokenization import AlbertTokenizer
    from albert.tokenizer_train import train_tokenizer

    output = train_tokenizer(
        args.input,
        args.vocab_size,
        args.output,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        input_sentence_size=args.input_sentence_size,
        seed=args.seed,
        do_lower_case=not args.cased,
        keep_accents=args.keep_accents,
        num_threads=args.threads,
        max_piece_length=args.max_piece_length,
    )
    pieces = len(AlbertTokenizer.from_pretrained(output))  # below --vocab-size when character-level
    print(f"wrote tokenizer ({pieces} pieces) to {output}")
    return 0
