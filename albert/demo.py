"""`albert demo`: the main job, end to end on the bundled public-domain corpus.

Today it shows what exists: train an ALBERT SentencePiece tokenizer, build `albert-tiny`, save
it in the Hugging Face layout, reload it, encode text and run the model. It grows into the full
pipeline (pretrain -> fine-tune -> evaluate -> export) as those stages land.
"""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

import torch

from albert.config import AlbertConfig
from albert.errors import AlbertError

SAMPLE_TEXTS = [
    "Hello, world!",
    "Emma Woodhouse, handsome, clever, and rich, had lived nearly twenty-one years in the world.",
    "In the beginning God created the heaven and the earth.",
]


def default_corpus() -> Path:
    """The bundled corpus (public domain: Jane Austen and the King James Bible)."""
    return Path(str(resources.files("albert") / "resources" / "corpus_en.txt.gz"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="runs/demo", help="working directory (default: runs/demo)")
    parser.add_argument("--corpus", nargs="+", help="text files to use instead of the bundled corpus")
    parser.add_argument(
        "--vocab-size", type=int, default=8000, help="tokenizer vocabulary size (default 8000)"
    )
    parser.add_argument("--model", help="an existing model directory to load instead of building albert-tiny")


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from albert.modeling import AlbertForPreTraining, AlbertModel
    from albert.tokenization import AlbertTokenizer

    output = Path(args.output)
    existing = AlbertModel.from_pretrained(args.model) if args.model else None

    start = _step("1. train a SentencePiece tokenizer (the ALBERT way)")
    from albert.tokenizer_train import train_tokenizer

    corpus = [Path(p) for p in args.corpus] if args.corpus else [default_corpus()]
    tokenizer_dir = train_tokenizer(corpus, args.vocab_size, output / "tokenizer")
    tokenizer = AlbertTokenizer.from_pretrained(tokenizer_dir)
    print(f"   vocabulary {len(tokenizer)} pieces -> {tokenizer_dir} ({time.perf_counter() - start:.1f}s)")
    print(f"   {SAMPLE_TEXTS[1]!r}\n   -> {tokenizer.tokenize(SAMPLE_TEXTS[1])}")

    _step("2. build albert-tiny: factorised embeddings + one shared block")
    if existing is not None:
        model = existing
        if model.config.vocab_size != len(tokenizer):
            raise AlbertError(
                f"--model has vocab_size={model.config.vocab_size} but the tokenizer has {len(tokenizer)} pieces; "
                "pass --vocab-size to match"
            )
    else:
        torch.manual_seed(0)
        model = AlbertForPreTraining(AlbertConfig.from_preset("albert-tiny", vocab_size=len(tokenizer)))
    config = model.config
    unshared = AlbertModel(
        AlbertConfig(**{**config.to_dict(), "share": "none", "embedding_size": config.hidden_size})
    )
    print(
        f"   L={config.num_hidden_layers} H={config.hidden_size} E={config.embedding_size} share={config.share}"
    )
    print(
        f"   parameters: {model.num_parameters() / 1e6:.2f}M (a BERT of the same shape: {unshared.num_parameters() / 1e6:.2f}M)"
    )

    _step("3. save in the Hugging Face layout and reload")
    model_dir = output / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    reloaded = type(model).from_pretrained(model_dir).eval()
    same = all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), reloaded.state_dict().values(), strict=True)
    )
    files = ", ".join(sorted(p.name for p in model_dir.iterdir()))
    print(f"   {model_dir}: {files}; weights identical after reload: {same}")

    _step("4. encode text and run the model")
    batch = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")
    base = reloaded.base_model if hasattr(reloaded, "albert") else reloaded
    with torch.no_grad():
        out = base(**batch)
    for name, tensor in batch.items():
        print(f"   {name:<16}{tuple(tensor.shape)}")
    print(
        f"   last_hidden_state {tuple(out.last_hidden_state.shape)}  pooler_output {tuple(out.pooler_output.shape)}"
    )
    print(f"\nDone. Everything is in {output}/")
    return 0
