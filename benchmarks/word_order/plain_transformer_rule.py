"""The positional rule of positional_rule.py on a plain PyTorch transformer (post-LN, 2 layers by default,
d 128, 4 heads): the reference that shows the rule is learnable in a few hundred steps, and which
of ALBERT's choices (tied output, embedding LayerNorm, MLM transform, BERT init) slow it down.

    python benchmarks/word_order/plain_transformer_rule.py --init bert --tie
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from positional_rule import FIRST_ID, make_batch  # noqa: E402


class PlainMaskedLM(nn.Module):
    def __init__(self, vocab: int, length: int, args: argparse.Namespace) -> None:
        super().__init__()
        self.args = args
        width = args.width
        self.words = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(length, width)
        layer = nn.TransformerEncoderLayer(width, args.heads, args.ffn or 4 * width, 0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
        self.embedding_norm = nn.LayerNorm(width)
        self.transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.output = nn.Linear(width, vocab)
        if args.init == "bert":  # N(0, 0.02) for every matrix, zero biases: BERT's and ALBERT's init
            for name, parameter in self.named_parameters():
                if parameter.dim() == 2:
                    nn.init.normal_(parameter, std=0.02)
                elif args.zero_bias and name.endswith("bias") and "norm" not in name:
                    nn.init.zeros_(parameter)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.words(ids) + self.positions.weight[None, : ids.shape[1]]
        if self.args.embedding_ln:
            hidden = self.embedding_norm(hidden)
        padding = None if attention_mask is None else attention_mask == 0
        hidden = self.encoder(hidden, src_key_padding_mask=padding)
        if self.args.transform:
            hidden = self.transform(hidden)
        if self.args.tie:
            return hidden @ self.words.weight.T + self.output.bias
        return self.output(hidden)


def add_model_arguments(parser: argparse.ArgumentParser, layers: int) -> None:
    """The plain model's options, shared with plain_real_text.py."""
    parser.add_argument("--init", choices=["bert", "pytorch"], default="bert")
    parser.add_argument("--tie", action="store_true", help="output layer = input embeddings")
    parser.add_argument("--embedding-ln", action="store_true")
    parser.add_argument("--transform", action="store_true", help="BERT's dense-GELU-LayerNorm MLM transform")
    parser.add_argument("--zero-bias", action="store_true", help="with --init bert: zero the biases too")
    parser.add_argument("--layers", type=int, default=layers)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=0, help="FFN width (0: 4 x width)")


def masked_logits_and_loss(
    model: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at the masked positions and their cross-entropy."""
    chosen = batch["labels"] != -100
    logits = model(batch["input_ids"], batch.get("attention_mask"))[chosen]
    return logits, nn.functional.cross_entropy(logits, batch["labels"][chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser, layers=2)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()

    torch.manual_seed(0)
    vocab, length, batch_size = 200, 32, 64
    model = PlainMaskedLM(vocab + FIRST_ID, length, args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    start = time.time()
    for step in range(1, args.steps + 1):
        batch = make_batch(vocab, length, batch_size)
        logits, loss = masked_logits_and_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0:
            accuracy = (logits.argmax(-1) == batch["labels"][batch["labels"] != -100]).float().mean().item()
            print(
                f"step {step} loss {loss.item():.3f} accuracy {accuracy:.3f} ({time.time() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
