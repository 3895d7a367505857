"""`albert params`: parameter counts of the presets and of the paper's ablations.

Counts come from building the real model on the `meta` device (no memory is allocated), so
they are the model's own numbers, not a formula. They are counted the way the paper counts:
embeddings + the E->H projection + the (shared) transformer parameters + the pooler, without
the MLM/SOP heads. BERT (E = H) has no projection in the paper, so none is counted there.
"""

from __future__ import annotations

import argparse
import json

import torch

from albert.config import PRESETS, AlbertConfig
from albert.modeling import AlbertModel

# The paper's figures (Lan et al. 2019, Tables 1-4), in millions.
PAPER_PRESETS = {
    "albert-base-v2": 12,
    "albert-large-v2": 18,
    "albert-xlarge-v2": 60,
    "albert-xxlarge-v2": 235,
    "bert-base": 108,
    "bert-large": 334,
}
PAPER_ABLATIONS = {  # (embedding size, share) -> millions, ALBERT-base geometry
    (64, "all"): 10, (128, "all"): 12, (256, "all"): 16, (768, "all"): 31,
    (64, "none"): 87, (128, "none"): 89, (256, "none"): 93, (768, "none"): 108,
    (128, "attention"): 64, (128, "ffn"): 38, (768, "attention"): 83, (768, "ffn"): 57,
}  # fmt: skip
EMBEDDING_SIZES = (64, 128, 256, 768)
SHARE_ORDER = ("all", "attention", "ffn", "none")
FOOTNOTES = {
    "albert-xlarge-v2": "the paper says 60M; 24 x H=2048 with FFN 8192 and E=128 is 58.7M (transformers agrees)",
    "albert-xxlarge-v2": "the paper says 235M; 12 x H=4096 with FFN 16384 and E=128 is 222.6M (transformers agrees)",
    "bert-base": "BERT's own 30,522-token vocabulary; with the paper's 30,000 tokens it is 109.1M (the E=768 row below)",
    "bert-large": "BERT's own 30,522-token vocabulary; with the paper's 30,000 tokens it is 334.6M",
}


def paper_count(config: AlbertConfig) -> int:
    """Parameters of `AlbertModel(config)` as the paper counts them (see module docstring)."""
    with torch.device("meta"):
        model = AlbertModel(config)
    total = model.num_parameters()
    if config.embedding_size == config.hidden_size:
        total -= model.encoder.embedding_hidden_mapping_in.weight.numel() + config.hidden_size
    return total


def preset_rows() -> list[dict[str, object]]:
    rows = []
    for name in PRESETS:
        config = AlbertConfig.from_preset(name)
        rows.append(
            {
                "preset": name,
                "layers": config.num_hidden_layers,
                "hidden": config.hidden_size,
                "embedding": config.embedding_size,
                "share": config.share,
                "params": paper_count(config),
                "paper_millions": PAPER_PRESETS.get(name.replace("-v1", "-v2")),
            }
        )
    return rows


def ablation_rows() -> list[dict[str, object]]:
    rows = []
    for embedding in EMBEDDING_SIZES:
        for share in SHARE_ORDER:
            config = AlbertConfig.from_preset("albert-base-v2", embedding_size=embedding, share=share)
            rows.append(
                {
                    "embedding": embedding,
                    "share": share,
                    "params": paper_count(config),
                    "paper_millions": PAPER_ABLATIONS.get((embedding, share)),
                }
            )
    return rows


def _millions(n: object) -> str:
    return f"{int(n) / 1e6:.1f}M"  # type: ignore[call-overload]


def format_tables(presets: list[dict[str, object]], ablations: list[dict[str, object]]) -> str:
    lines = ["Presets (embeddings + projection + shared layers + pooler; no MLM/SOP heads)", ""]
    lines.append(f"{'preset':<20}{'L':>4}{'H':>6}{'E':>6}  {'share':<10}{'params':>10}{'paper':>8}")
    for row in presets:
        paper = f"{row['paper_millions']}M" if row["paper_millions"] else "-"
        mark = " *" if row["preset"].replace("-v1", "-v2") in FOOTNOTES else ""  # type: ignore[union-attr]
        lines.append(
            f"{row['preset']:<20}{row['layers']:>4}{row['hidden']:>6}{row['embedding']:>6}  "
            f"{row['share']:<10}{_millions(row['params']):>10}{paper:>8}{mark}"
        )
    lines += [
        "",
        "Ablations on ALBERT-base (L=12, H=768): embedding size E x cross-layer sharing (Tables 3-4)",
        "",
    ]
    lines.append(f"{'E':>6}" + "".join(f"{share:>18}" for share in SHARE_ORDER))
    for embedding in EMBEDDING_SIZES:
        cells = []
        for share in SHARE_ORDER:
            row = next(r for r in ablations if r["embedding"] == embedding and r["share"] == share)
            paper = f" ({row['paper_millions']}M)" if row["paper_millions"] else ""
            cells.append(f"{_millions(row['params']) + paper:>18}")
        lines.append(f"{embedding:>6}" + "".join(cells))
    lines += ["", "(paper figures in parentheses)"]
    lines += [f"* {name}: {note}" for name, note in FOOTNOTES.items()]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of tables")


def run(args: argparse.Namespace) -> int:
    presets, ablations = preset_rows(), ablation_rows()
    if args.json:
        print(json.dumps({"presets": presets, "ablations": ablations}, indent=2))
    else:
        print(format_tables(presets, ablations))
    return 0
