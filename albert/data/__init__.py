"""Pretraining data: raw text -> sentence-order pairs with n-gram whole-word masking -> shards.

The pipeline, one module per step:

* `text`: input files, UTF-8 reading, layout detection, sentence splitting, work units;
* `masking`: vocabulary tables and ALBERT's n-gram whole-word masking (numpy only);
* `examples`: one unit of documents -> SOP examples (tokenise, chunk, split, truncate, mask);
* `shards`: the on-disk format (flat token arrays + index per shard, JSON manifest);
* `build`: `build_pretraining_data`, parallel and reproducible;
* `dataset`: `PretrainingDataset` and `collate_pretraining` for training (torch).

Names are imported lazily so building data never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "build_pretraining_data": "albert.data.build",
    "PretrainingDataset": "albert.data.dataset",
    "collate_pretraining": "albert.data.dataset",
    "split_sentences": "albert.data.text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'albert.data' has no attribute {name!r}")
