"""The plain PyTorch transformer of plain_transformer_rule.py trained on real `albert data` output with
the masked-LM loss only: does a model without any of ALBERT's choices learn word order from real text
within a CPU budget? Prints held-out MLM loss and word-order gain (as `albert pretrain` measures it).

    python benchmarks/word_order/plain_real_text.py --data runs/data-en-128 --tokenizer runs/tok-en-8k
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's albert package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from plain_transformer_rule import PlainMaskedLM, add_model_arguments, masked_logits_and_loss  # noqa: E402

from albert.train.data import load_dataset  # noqa: E402
from albert.train.pretraining import shuffle_word_order  # noqa: E402


def masked_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return masked_logits_and_loss(model, batch)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="runs/data-en-128")
    parser.add_argument("--tokenizer", default="runs/tok-en-8k")
    add_model_arguments(parser, layers=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()

    torch.manual_seed(0)
    dataset = load_dataset(args.data, args.tokenizer)
    dataset.set_epoch(0)
    tokenizer = dataset.manifest["tokenizer"]
    specials = torch.tensor([tokenizer["cls_token_id"], tokenizer["sep_token_id"]])
    order = np.random.default_rng(0).permutation(len(dataset))
    held, train = order[:320], order[320:]
    model = PlainMaskedLM(tokenizer["vocab_size"], 512, args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 100))
    held_batches = [dataset.collate([dataset[int(i)] for i in held[k : k + 32]]) for k in range(0, 320, 32)]
    start = time.time()
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters", flush=True)
    for step in range(1, args.steps + 1):
        chosen = train[np.random.default_rng(step).integers(0, len(train), args.batch_size)]
        loss = masked_loss(model, dataset.collate([dataset[int(i)] for i in chosen]))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0:
            model.eval()
            shuffler = torch.Generator().manual_seed(0)
            with torch.no_grad():
                real = np.mean([masked_loss(model, b).item() for b in held_batches])
                mixed = np.mean(
                    [
                        masked_loss(model, shuffle_word_order(b, specials, shuffler)).item()
                        for b in held_batches
                    ]
                )
            model.train()
            print(
                f"step {step} train {loss.item():.3f} held-out {real:.3f} word-order gain {mixed - real:.3f} "
                f"({time.time() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
