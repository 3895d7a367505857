"""`albert` command line: one subcommand per pipeline stage, one module per subcommand.

Each module listed in `COMMANDS` exposes `add_arguments(parser)` and `run(args) -> int | None`.
Modules are imported lazily so `albert --help` stays fast and a stage's optional
dependencies are only needed when that stage runs. An `AlbertError` becomes one line on
stderr and exit status 2 - no traceback for mistakes the user can fix.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from albert.errors import AlbertError

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("albert.demo", "run the main job (the whole pipeline) on the bundled data"),
    "params": ("albert.params", "print parameter counts of presets and the paper's ablations"),
    "tokenizer": ("albert.tokenizer_cli", "train a SentencePiece tokenizer"),
    "data": (
        "albert.data.cli",
        "build pretraining data: sentence-order pairs with n-gram whole-word masking",
    ),
    "pretrain": ("albert.pretrain", "pretrain with masked-LM + sentence-order prediction (torchrun for DDP)"),
    "distill": ("albert.distill", "distil a BERT teacher into an ALBERT student (MiniLMv2 relations)"),
    "plot": ("albert.plot", "draw a run's training and evaluation curves to PNG"),
    "finetune": ("albert.finetune", "fine-tune on a labelled task; keep the best dev checkpoint"),
    "evaluate": ("albert.evaluate", "score a fine-tuned model on a labelled file (JSON metrics)"),
    "predict": ("albert.predict", "run a pipeline over texts; JSON lines out"),
    "serve": ("albert.serve", "an HTTP inference server with dynamic batching (FastAPI on uvicorn)"),
    "export": ("albert.export", "export a model to ONNX (fp32 or int8) with its config and tokenizer"),
    "convert-bert": (
        "albert.convert_bert",
        "turn a BERT checkpoint into an ALBERT (SVD embeddings, shared layers)",
    ),
    "convert-tf": (
        "albert.convert_tf",
        "convert an original TensorFlow ALBERT checkpoint (Google's or albert_zh's) without TensorFlow",
    ),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong, where to look) like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineErrorParser(prog="albert", description="ALBERT: A Lite BERT, from scratch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=module_name)
        if argv[:1] == [name]:
            importlib.import_module(module_name).add_arguments(command_parser)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        status = importlib.import_module(args._module).run(args)
    except AlbertError as e:
        print(f"albert {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"albert {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
