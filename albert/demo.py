"""`albert demo`: the main job - the whole pipeline on the bundled public-domain corpus.

    tokenize -> pretraining data -> pretrain albert-tiny -> fine-tune -> evaluate -> predict -> export

Everything runs on a laptop-class CPU in about ten minutes with no arguments: the corpus
(`albert/resources/corpus_en.txt.gz`: Jane Austen + the King James Bible) and the labelled task
("which book is this passage from?", Austen / KJV / Botchan, passages not in the corpus) ship with
the package. Each stage is the same Python API the CLI subcommands use; the closing table says what
each produced and how long it took.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from albert.data import build_pretraining_data
from albert.errors import AlbertError
from albert.evaluate import evaluate
from albert.export import export_model_dir
from albert.finetune import FinetuneConfig, finetune
from albert.pipelines import pipeline
from albert.pretrain import pretrain
from albert.tasks import default_task_files
from albert.tokenization import AlbertTokenizer
from albert.tokenizer_train import train_tokenizer

# A fresh interpreter in which `import torch` fails: whatever it prints was computed without torch.
TORCH_FREE_RUNTIME = (
    "import sys; sys.modules['torch'] = None; "
    "from albert.onnx_runtime import main; sys.exit(main(sys.argv[1:]))"
)

SAMPLE_TEXTS = [
    "And God said unto Moses, Go down and speak unto the people.",
    "She was a very pleasant young woman, and her father was a great deal too fond of her.",
    "I was sent to a country school as a teacher of mathematics, and the boys laughed at me.",
]


def default_corpus() -> Path:
    """The bundled corpus (public domain: Jane Austen and the King James Bible)."""
    return Path(str(resources.files("albert") / "resources" / "corpus_en.txt.gz"))


@dataclass
class Settings:
    """How big each stage is; `--quick` shrinks everything for a smoke test."""

    vocab_size: int = 8000
    seq_length: int = 128
    dupe_factor: int = 2
    pretrain_steps: int = 600
    pretrain_batch: int = 32
    finetune_epochs: int = 3
    finetune_max_steps: int | None = None

    @classmethod
    def quick(cls) -> Settings:
        return cls(vocab_size=2000, seq_length=64, dupe_factor=1, pretrain_steps=8, pretrain_batch=8,
                   finetune_epochs=1, finetune_max_steps=6)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/demo", help="working directory (default: runs/demo)")
    parser.add_argument("--corpus", nargs="+", help="text files to pretrain on instead of the bundled corpus")
    parser.add_argument("--vocab-size", type=int, help="tokenizer vocabulary size (default 8000)")
    parser.add_argument("--pretrain-steps", type=int, help="pretraining steps (default 600)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tuning epochs (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny smoke run of every stage (about a minute)"
    )
    parser.add_argument("--no-export", action="store_true", help="skip the ONNX export stage")


class Stages:
    """Runs named stages, prints a header for each and collects the closing summary table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []

    def run(self, title: str, work: Callable[[], tuple[Any, str]]) -> Any:
        print(f"\n== {len(self.rows) + 1}. {title}", flush=True)
        start = time.perf_counter()
        value, summary = work()
        seconds = time.perf_counter() - start
        self.rows.append((title, seconds, summary))
        print(f"   -> {summary} ({seconds:.0f}s)", flush=True)
        return value

    def table(self) -> str:
        width = max(len(title) for title, _, _ in self.rows)
        lines = [f"{'stage':<{width}}  {'time':>6}  result", f"{'-' * width}  {'-' * 6}  {'-' * 40}"]
        lines += [f"{title:<{width}}  {seconds:>5.0f}s  {summary}" for title, seconds, summary in self.rows]
        total = sum(seconds for _, seconds, _ in self.rows)
        lines.append(f"{'total':<{width}}  {total:>5.0f}s")
        return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    settings = Settings.quick() if args.quick else Settings()
    for name in ("vocab_size", "pretrain_steps", "finetune_epochs"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    output = Path(args.output)
    corpus = [Path(p) for p in args.corpus] if args.corpus else [default_corpus()]
    for path in corpus:
        if not path.is_file():
            raise AlbertError(f"corpus file not found: {path}")
    train_file, dev_file = default_task_files()
    stages = Stages()

    tokenizer_dir = stages.run(
        "train a SentencePiece tokenizer", lambda: _tokenizer(corpus, output, settings)
    )
    data_dir = stages.run(
        "build MLM + SOP pretraining data", lambda: _data(tokenizer_dir, corpus, output, settings)
    )
    checkpoint = stages.run(
        "pretrain albert-tiny (MLM + SOP)", lambda: _pretrain(data_dir, tokenizer_dir, output, settings)
    )
    model_dir = stages.run(
        "fine-tune: which book is this passage from?",
        lambda: _finetune(checkpoint, train_file, dev_file, output, settings),
    )
    stages.run("evaluate on the dev split", lambda: _evaluate(model_dir, dev_file))
    stages.run("predict", lambda: _predict(model_dir))
    if not args.no_export:
        stages.run(
            "export to ONNX (fp32 + int8), run int8 in a process without torch",
            lambda: _export(model_dir, output),
        )
    print(f"\n{stages.table()}\n\nEverything is in {output}/ (fine-tuned model: {model_dir})")
    return 0


def _tokenizer(corpus: list[Path], output: Path, settings: Settings) -> tuple[Path, str]:
    directory = train_tokenizer(corpus, settings.vocab_size, output / "tokenizer")
    tokenizer = AlbertTokenizer.from_pretrained(directory)
    print(f"   {SAMPLE_TEXTS[1]!r}\n   -> {tokenizer.tokenize(SAMPLE_TEXTS[1])}")
    return directory, f"{len(tokenizer)} pieces"


def _data(tokenizer_dir: Path, corpus: list[Path], output: Path, settings: Settings) -> tuple[Path, str]:
    manifest = build_pretraining_data(
        tokenizer_dir,
        [str(p) for p in corpus],
        output / "data",
        max_seq_length=settings.seq_length,
        max_predictions_per_seq=max(2, round(settings.seq_length * 0.15)),
        dupe_factor=settings.dupe_factor,
        workers=1,
    )
    counts = manifest["counts"]
    return output / "data", f"{counts['examples']:,} examples, {counts['tokens']:,} tokens"


def _pretrain(data_dir: Path, tokenizer_dir: Path, output: Path, settings: Settings) -> tuple[Path, str]:
    steps = settings.pretrain_steps
    result = pretrain(
        str(data_dir),
        model="albert-tiny",
        output=str(output / "pretrain"),
        tokenizer=str(tokenizer_dir),
        max_steps=steps,
        batch_size=settings.pretrain_batch,
        # AdamW, not LAMB, for a run this short and small: LAMB at the rates that move a fresh tiny
        # model in a few hundred steps collapses [CLS] to one vector (measured: fine-tuning from
        # it stays at chance), while AdamW at 1e-3 gives a start that beats random init.
        optimizer="adamw",
        learning_rate=1e-3,
        warmup_steps=max(1, steps // 10),
        save_every=steps,
        eval_every=steps,
        eval_batches=20,
    )
    checkpoint = Path(result["checkpoint"])
    evaluation = result.get("eval") or {}
    summary = f"{steps} steps; held-out MLM accuracy {evaluation.get('mlm_accuracy', float('nan')):.3f}, "
    summary += f"SOP accuracy {evaluation.get('sop_accuracy', float('nan')):.3f}"
    return checkpoint, summary


def _finetune(checkpoint: Path, train: Path, dev: Path, output: Path, settings: Settings) -> tuple[Path, str]:
    config = FinetuneConfig(
        task="text-classification",
        train=str(train),
        dev=str(dev),
        model=str(checkpoint),
        output=str(output / "classifier"),
        epochs=settings.finetune_epochs,
        max_steps=settings.finetune_max_steps,
        learning_rate=1e-4,
    )
    result = finetune(config)
    return Path(config.output), f"best epoch {result['epoch']}: dev accuracy {result['dev']['accuracy']:.3f}"


def _evaluate(model_dir: Path, dev: Path) -> tuple[dict[str, Any], str]:
    metrics = evaluate(model_dir, dev)
    shown = {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)}
    return metrics, json.dumps(shown)


def _predict(model_dir: Path) -> tuple[list[Any], str]:
    classify = pipeline("text-classification", model=model_dir)
    results = classify(SAMPLE_TEXTS)
    for text, result in zip(SAMPLE_TEXTS, results, strict=True):
        print(f"   {result['label']:>8} ({result['score']:.2f})  {text}")
    return results, ", ".join(r["label"] for r in results)


def _export(model_dir: Path, output: Path) -> tuple[Path, str]:
    fp32 = export_model_dir(model_dir, output / "onnx")
    int8 = export_model_dir(model_dir, output / "onnx", int8=True)
    torch_labels = [r["label"] for r in pipeline("text-classification", model=model_dir)(SAMPLE_TEXTS)]
    onnx_labels = labels_without_torch(int8, SAMPLE_TEXTS)
    agree = sum(a == b for a, b in zip(torch_labels, onnx_labels, strict=True))
    size = lambda p: f"{p.stat().st_size / 1e6:.1f} MB"  # noqa: E731
    return (
        int8,
        f"{fp32.name} {size(fp32)}, {int8.name} {size(int8)}; int8 ONNX, run in a fresh process where "
        f"torch cannot be imported, agrees with PyTorch on {agree}/{len(SAMPLE_TEXTS)}",
    )


def labels_without_torch(onnx_file: Path, texts: list[str]) -> list[str]:
    """Classify `texts` with `onnx_file` in a new Python process that cannot import torch (the
    demo's own process has imported it), through `python -m albert.onnx_runtime`'s entry point."""
    command = [sys.executable, "-c", TORCH_FREE_RUNTIME, str(onnx_file), "--threads", "1"]
    command += [arg for text in texts for arg in ("--text", text)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise AlbertError(f"the torch-free ONNX runtime failed on {onnx_file}: {last}")
    return [json.loads(line)["label"] for line in done.stdout.splitlines()]
