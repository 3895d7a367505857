"""albert: ALBERT (A Lite BERT) from scratch, for laptop-class CPUs.

The package layout follows the pipeline: tokenize -> data -> model -> train -> evaluate ->
export/serve. Public names are imported lazily so that, e.g., the ONNX runtime path never
imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AlbertError": "albert.errors",
    "AlbertConfig": "albert.config",
    "PRESETS": "albert.hub",
    "AlbertModel": "albert.modeling",
    "AlbertForPreTraining": "albert.modeling",
    "AlbertForMaskedLM": "albert.modeling",
    "AlbertForSequenceClassification": "albert.modeling",
    "AlbertForTokenClassification": "albert.modeling",
    "AlbertForQuestionAnswering": "albert.modeling",
    "AlbertForMultipleChoice": "albert.modeling",
    "AlbertTokenizer": "albert.tokenization",
    "pipeline": "albert.pipelines",
    "quantize": "albert.quantization",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'albert' has no attribute {name!r}")
