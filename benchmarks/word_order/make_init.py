"""Write a from-scratch `albert-tiny` checkpoint with a modified initialisation, for the
plateau probes of docs/results.md: `albert pretrain --model OUT` then trains it.

    python benchmarks/word_order/make_init.py runs/init-sin2 --position sinusoidal --position-std 0.04 \
        --mapping-std 0.088
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository's albert package

from albert.modeling import AlbertForPreTraining  # noqa: E402
from albert.tokenization import AlbertTokenizer  # noqa: E402


def sinusoid_table(rows: int, omega: torch.Tensor) -> torch.Tensor:
    """Rows of (sin, cos) pairs at frequencies `omega`, unit std: shifting a position by k rotates
    each pair by k * omega."""
    angle = torch.arange(rows).float()[:, None] * omega
    table = torch.zeros(rows, 2 * len(omega))
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table / table.std()


def transformer_frequencies(width: int) -> torch.Tensor:
    """Vaswani et al.'s frequencies: 10000^(-2i/width), all at most 1 radian per position."""
    return torch.exp(-math.log(10000.0) * torch.arange(0, width, 2).float() / width)


def offset_frequencies(width: int) -> torch.Tensor:
    """Frequencies spread linearly over (0, pi): sums of their sinusoids peak sharply at one
    offset, which the transformer's frequencies cannot do."""
    pairs = width // 2
    return math.pi * (torch.arange(pairs).float() + 0.5) / pairs


def mimetic_query_key(attention: torch.nn.Module, heads: int, beta: float) -> None:
    """Trockman & Kolter (2023): each head's W_q W_k^T ~ 0.7 Z + beta I (rank-d_head SVD)."""
    hidden = attention.query.weight.shape[0]
    width = hidden // heads
    for head in range(heads):
        target = 0.7 * torch.randn(hidden, hidden) / math.sqrt(hidden) + beta * torch.eye(hidden)
        u, s, vh = torch.linalg.svd(target)
        rows = slice(head * width, (head + 1) * width)
        attention.query.weight[rows] = (u[:, :width] * s[:width].sqrt()).T
        attention.key.weight[rows] = (vh[:width].T * s[:width].sqrt()).T


def local_attention(model: AlbertForPreTraining, offsets: list[int], position_std: float) -> None:
    """Heads that attend to a fixed relative offset from step 0 (ConViT-style locality, for
    text): with an offset table, shifting position j by k rotates each frequency pair by k*omega,
    so a head whose key map applies that rotation scores p_i . p_(j+k), which peaks at j = i - k.
    The E->H projection is a scaled semi-orthogonal map, so the positions survive into H."""
    config = model.config
    width, hidden, heads = config.embedding_size, config.hidden_size, config.num_attention_heads
    head_width, pairs = hidden // heads, width // 2
    omega = offset_frequencies(width)
    positions = model.albert.embeddings.position_embeddings.weight
    positions.copy_(sinusoid_table(positions.shape[0], omega) * position_std)
    q, _ = torch.linalg.qr(torch.randn(hidden, width))  # orthonormal columns
    scale = math.sqrt(hidden / width)
    model.albert.encoder.embedding_hidden_mapping_in.weight.copy_(q * scale)
    attention = model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention
    to_e = q.T / scale  # H -> E, undoing the projection
    stride = max(1, pairs // (head_width // 2))
    for head in range(heads):
        chosen = [(head + stride * m) % pairs for m in range(head_width // 2)]
        k = offsets[head % len(offsets)]
        select = torch.zeros(head_width, width)
        rotate = torch.zeros(head_width, head_width)
        for m, f in enumerate(chosen):
            select[2 * m, 2 * f] = select[2 * m + 1, 2 * f + 1] = 1.0
            c, s = math.cos(k * omega[f]), math.sin(k * omega[f])
            rotate[2 * m : 2 * m + 2, 2 * m : 2 * m + 2] = torch.tensor([[c, s], [-s, c]])
        rows = slice(head * head_width, (head + 1) * head_width)
        attention.query.weight[rows] = select @ to_e
        attention.key.weight[rows] = rotate @ select @ to_e


def report_locality(model: AlbertForPreTraining, tokenizer: AlbertTokenizer) -> None:
    """Print where each head of layers 0 and 3 looks at init: the mean attention at offsets -2..2."""
    text = "It is a truth universally acknowledged, that a single man in possession of a good fortune"
    enc = tokenizer(text * 3, return_tensors="pt", truncation=True, max_length=64)
    model.eval()
    with torch.no_grad():
        attentions = model.albert(**enc, output_attentions=True).attentions
    model.train()
    for layer in (0, len(attentions) - 1):
        probs = attentions[layer][0]
        shares = [torch.diagonal(probs, -k, dim1=-2, dim2=-1).mean(-1) for k in (-2, -1, 0, 1, 2)]
        table = torch.stack(shares, -1)
        print(
            f"layer {layer}, attention at offsets -2..2 per head:",
            [[round(x, 2) for x in row] for row in table.tolist()],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--tokenizer", default="runs/tok-en-8k")
    parser.add_argument("--position", choices=["random", "sinusoidal"], default="random")
    parser.add_argument("--position-std", type=float, default=0.02)
    parser.add_argument("--word-std", type=float, default=0.02, help="std of the (tied) word embeddings")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--mimetic-beta", type=float, default=0.0, help="0: BERT's init for Q/K")
    parser.add_argument("--local-offsets", default="", help="e.g. -1,1,-2,2: offset heads")
    parser.add_argument("--mapping-std", type=float, default=0.02, help="std of the E->H projection")
    parser.add_argument("--mapping-identity", action="store_true", help="E->H projection = I (needs E = H)")
    parser.add_argument("--zero-token-type", action="store_true", help="start the segment rows at zero")
    parser.add_argument("--config", default="{}", help='JSON overrides, e.g. {"hidden_size": 128}')
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = AlbertTokenizer.from_pretrained(args.tokenizer)
    model = AlbertForPreTraining.from_preset(
        "albert-tiny", vocab_size=len(tokenizer), num_attention_heads=args.heads, **json.loads(args.config)
    )
    positions = model.albert.embeddings.position_embeddings.weight
    attention = model.albert.encoder.albert_layer_groups[0].albert_layers[0].attention
    with torch.no_grad():
        if args.position == "sinusoidal":
            rows, width = positions.shape
            positions.copy_(sinusoid_table(rows, transformer_frequencies(width)) * args.position_std)
        else:
            torch.nn.init.normal_(positions, std=args.position_std)
        torch.nn.init.normal_(model.albert.embeddings.word_embeddings.weight, std=args.word_std)
        torch.nn.init.normal_(model.albert.encoder.embedding_hidden_mapping_in.weight, std=args.mapping_std)
        if args.mapping_identity:
            mapping = model.albert.encoder.embedding_hidden_mapping_in.weight
            mapping.copy_(torch.eye(*mapping.shape))
        if args.zero_token_type:
            model.albert.embeddings.token_type_embeddings.weight.zero_()
        if args.local_offsets:
            local_attention(model, [int(k) for k in args.local_offsets.split(",")], args.position_std)
        if args.mimetic_beta:
            mimetic_query_key(attention, args.heads, args.mimetic_beta)
    report_locality(model, tokenizer)
    model.save_pretrained(args.output)
    tokenizer.save_pretrained(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
