"""Can `albert-tiny` learn a rule that only word order reveals? Sequences of random tokens in
which each masked token is the token before it plus one (mod V). A bag-of-words model cannot
beat chance (loss ln V) on it; a model that learns to attend to the previous position solves it.

    python benchmarks/word_order/positional_rule.py --steps 1500
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's albert package

from albert.modeling import AlbertForPreTraining  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_init import local_attention  # noqa: E402

FIRST_ID = 5  # ids below are ALBERT's specials: <pad> <unk> [CLS] [SEP] [MASK]


def make_batch(vocab: int, length: int, batch: int) -> dict[str, torch.Tensor]:
    tokens = torch.randint(FIRST_ID, vocab + FIRST_ID, (batch, length))
    tokens[:, 0] = 2  # [CLS]
    chosen = torch.rand(batch, length) < 0.15
    chosen[:, :2] = False
    chosen &= ~torch.roll(chosen, 1, 1)  # the previous token is always visible
    rule = (tokens.roll(1, 1) - FIRST_ID + 1) % vocab + FIRST_ID
    tokens = torch.where(chosen, rule, tokens)
    labels = torch.where(chosen, tokens, torch.full_like(tokens, -100))
    return {
        "input_ids": torch.where(chosen, torch.full_like(tokens, 4), tokens),  # 4 = [MASK]
        "labels": labels,
        "attention_mask": torch.ones_like(tokens),
        "token_type_ids": torch.zeros_like(tokens),
        "sentence_order_label": torch.zeros(batch, dtype=torch.long),
    }


class UntiedWordEmbeddings(torch.nn.Module):
    """Input lookups from one matrix while `.weight` (what the MLM decoder reads) is another:
    the decoder untied from the input embeddings, without touching the model code."""

    def __init__(self, tied: torch.nn.Embedding) -> None:
        super().__init__()
        self.inputs = torch.nn.Embedding.from_pretrained(tied.weight.detach().clone(), freeze=False)
        self.weight = torch.nn.Parameter(torch.randn_like(tied.weight) * 0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inputs(ids)


def embedding_report(model: AlbertForPreTraining) -> str:
    """Norms of the shared (mean) and the distinguishing parts of the word and position rows: a growing
    shared part is the same for every token, so the embedding LayerNorm lets it drown the rest."""
    embeddings = model.albert.embeddings
    words = embeddings.word_embeddings(torch.arange(FIRST_ID, embeddings.word_embeddings.weight.shape[0]))
    parts = []
    for name, rows in (("word", words), ("pos", embeddings.position_embeddings.weight[:32])):
        mean = rows.mean(0)
        parts.append(f"{name} mean {mean.norm():.2f} spread {(rows - mean).norm(dim=1).mean():.2f}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=200)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--local-offsets", default="", help="offset heads at init (make_init.py)")
    parser.add_argument("--position-std", type=float, default=0.04)
    parser.add_argument("--word-std", type=float, default=0.0, help="word-embedding init std (0: BERT's)")
    parser.add_argument("--untie", action="store_true", help="a separate MLM decoder matrix")
    parser.add_argument("--mapping-identity", action="store_true", help="E->H projection = I (needs E = H)")
    parser.add_argument("--mapping-std", type=float, default=0.0, help="E->H projection init std (0: BERT's)")
    parser.add_argument(
        "--no-token-type", action="store_true", help="zero and freeze the token-type embedding"
    )
    parser.add_argument("--zero-token-type", action="store_true", help="start the token-type rows at zero")
    parser.add_argument("--explicit-attention", action="store_true", help="softmax(QK^T)V instead of SDPA")
    parser.add_argument(
        "--head-std", type=float, default=0.0, help="MLM transform dense init std (0: BERT's)"
    )
    parser.add_argument("--head-identity", action="store_true", help="MLM transform dense = I (needs E = H)")
    parser.add_argument("--config", default="{}", help='JSON overrides, e.g. {"share": "none"}')
    args = parser.parse_args()

    torch.manual_seed(0)
    model = AlbertForPreTraining.from_preset(
        "albert-tiny", vocab_size=args.vocab + FIRST_ID, **json.loads(args.config)
    )
    embeddings, mapping, head = (
        model.albert.embeddings,
        model.albert.encoder.embedding_hidden_mapping_in,
        model.predictions.dense,
    )
    with torch.no_grad():
        if args.local_offsets:
            local_attention(model, [int(k) for k in args.local_offsets.split(",")], args.position_std)
        if args.word_std:
            torch.nn.init.normal_(embeddings.word_embeddings.weight, std=args.word_std)
        if args.mapping_std:
            torch.nn.init.normal_(mapping.weight, std=args.mapping_std)
        if args.mapping_identity:
            mapping.weight.copy_(torch.eye(*mapping.weight.shape))
        if args.head_std:
            torch.nn.init.normal_(head.weight, std=args.head_std)
        if args.head_identity:
            head.weight.copy_(torch.eye(*head.weight.shape))
        if args.zero_token_type or args.no_token_type:
            embeddings.token_type_embeddings.weight.zero_()
    if args.no_token_type:
        embeddings.token_type_embeddings.weight.requires_grad_(False)
    if args.untie:
        embeddings.word_embeddings = UntiedWordEmbeddings(embeddings.word_embeddings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    start = time.time()
    for step in range(1, args.steps + 1):
        batch = make_batch(args.vocab, args.length, args.batch_size)
        out = model(**batch, sparse_prediction=True, output_attentions=args.explicit_attention)
        optimizer.zero_grad()
        out.mlm_loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0:
            targets = batch["labels"][batch["labels"] != -100]
            accuracy = (out.prediction_logits.argmax(-1) == targets).float().mean().item()
            print(
                f"step {step} loss {out.mlm_loss.item():.3f} accuracy {accuracy:.3f} ({time.time() - start:.0f} s)"
                f" | {embedding_report(model)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
