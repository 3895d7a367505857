"""Helpers shared by the export, runtime and quantisation tests (no tests here).

Models are small configs with *trained-like* weights: random init (N(0, 0.02), unit LayerNorms)
is too gentle a test of int8 - every layer is close to the identity and all LayerNorm weights are
equal. `trained_like` widens the weight distribution, gives LayerNorms spread and a few outlier
channels (the feature that makes int8 transformers hard) and makes every tensor distinct, so a
test that counts stored weight bytes cannot be fooled by coincidentally equal tensors.
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path
from typing import Any

import pytest
import torch

from albert.config import AlbertConfig

BUNDLED_CORPUS = Path(__file__).resolve().parents[1] / "albert" / "resources" / "corpus_en.txt.gz"


def tiny_config(**overrides: Any) -> AlbertConfig:
    values: dict[str, Any] = dict(
        vocab_size=320,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=64,
        hidden_act="gelu_new",
    )
    return AlbertConfig(**{**values, **overrides})


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "LayerNorm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise)
                parameter[:2] = 4.0  # outlier channels
            elif name.endswith("bias"):
                parameter.copy_(0.05 * noise)
            else:
                parameter.copy_(0.05 * noise)
    return model.eval()


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-piece SentencePiece tokenizer trained on the bundled corpus (a few seconds)."""
    from albert.tokenizer_train import train_tokenizer

    folder = tmp_path_factory.mktemp("export-tokenizer")
    with gzip.open(BUNDLED_CORPUS, "rt", encoding="utf-8") as handle:
        lines = list(itertools.islice(handle, 2000))
    (folder / "corpus.txt").write_text("".join(lines), encoding="utf-8")
    return train_tokenizer([folder / "corpus.txt"], 300, folder / "tokenizer", num_threads=1)
