"""`AlbertConfig`: the model's hyper-parameters, `config.json`-compatible with transformers.

Besides transformers' fields it has `share`, which selects what is shared across layers
(the paper's Table 4): "all" (ALBERT), "attention", "ffn" or "none" (BERT when
`embedding_size == hidden_size`). Named presets reproduce the published models.

Two options express brightmart/albert_zh's TensorFlow layout (defaults are ALBERT's, as
Google and transformers build it):
- `embedding_projection`: "after_sum" sums word, position and token-type vectors of width E,
  normalises them and projects E->H (`embedding_hidden_mapping_in`); "word_only" projects only
  the word vectors E->H (no bias; `embeddings.word_projection`), adds position and token-type
  vectors of width H and normalises at width H, and its MLM head works at width H and maps back
  through the transposed projection before the tied word embeddings.
- `layer_norm_position`: "post" (the paper's block) or "pre" (LayerNorm before attention and
  before the FFN, residuals un-normalised, no final LayerNorm: albert_zh's `ln_type: "preln"`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from albert.errors import AlbertError

CONFIG_NAME = "config.json"
SHARE_MODES = ("all", "attention", "ffn", "none")
EMBEDDING_PROJECTIONS = ("after_sum", "word_only")
LAYER_NORM_POSITIONS = ("post", "pre")
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


@dataclass
class AlbertConfig:
    """Hyper-parameters of an ALBERT model (defaults: transformers' `AlbertConfig`, i.e. xxlarge)."""

    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_size: int = 4096
    num_hidden_layers: int = 12
    num_hidden_groups: int = 1
    num_attention_heads: int = 64
    intermediate_size: int = 16384
    inner_group_num: int = 1
    hidden_act: str = "gelu_new"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    classifier_dropout_prob: float | None = 0.1
    pad_token_id: int | None = 0
    bos_token_id: int | None = 2
    eos_token_id: int | None = 3
    tie_word_embeddings: bool = True
    share: str = "all"
    embedding_projection: str = "after_sum"
    layer_norm_position: str = "post"
    id2label: dict[int, str] = field(default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"})
    problem_type: str | None = None
    architectures: list[str] | None = None
    model_type: str = "albert"

    def __init__(self, num_labels: int | None = None, **kwargs: Any) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        for f in dataclasses.fields(self):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            setattr(self, f.name, kwargs[f.name] if f.name in kwargs else default)
        # transformers writes these; they carry no information we need (e.g. the TF
        # configs' net_structure_type, gap_size, down_scale_factor): accept and drop.
        self.ignored_keys = sorted(k for k in kwargs if k not in names and k != "label2id")
        if "id2label" in kwargs:
            self.id2label = {int(k): str(v) for k, v in kwargs["id2label"].items()}
        elif "label2id" in kwargs:
            self.id2label = {int(v): str(k) for k, v in kwargs["label2id"].items()}
        if num_labels is not None and num_labels != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
        self._validate()
        if self.share == "none":
            # With nothing shared every layer is its own group: the transformers layout
            # (and so transformers itself) represents this exactly.
            self.num_hidden_groups = self.num_hidden_layers

    # -- derived -----------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if n != len(self.id2label):
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}

    @property
    def label2id(self) -> dict[str, int]:
        return {v: k for k, v in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def _validate(self) -> None:
        problems = []
        if self.share not in SHARE_MODES:
            problems.append(f"share={self.share!r} is not one of {', '.join(SHARE_MODES)}")
        if self.embedding_projection not in EMBEDDING_PROJECTIONS:
            problems.append(
                f"embedding_projection={self.embedding_projection!r} is not one of {', '.join(EMBEDDING_PROJECTIONS)}"
            )
        if self.layer_norm_position not in LAYER_NORM_POSITIONS:
            problems.append(
                f"layer_norm_position={self.layer_norm_position!r} is not one of {', '.join(LAYER_NORM_POSITIONS)}"
            )
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        if self.num_hidden_groups < 1 or self.num_hidden_groups > self.num_hidden_layers:
            problems.append(
                f"num_hidden_groups={self.num_hidden_groups} must be between 1 and num_hidden_layers={self.num_hidden_layers}"
            )
        if self.inner_group_num < 1:
            problems.append(f"inner_group_num={self.inner_group_num} must be at least 1")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            problems.append(f"problem_type={self.problem_type!r} is not one of {', '.join(PROBLEM_TYPES)}")
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be positive")
        if problems:
            raise AlbertError("invalid ALBERT config: " + "; ".join(problems))

    # -- serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            out[f.name] = getattr(self, f.name)
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = self.label2id
        if out["architectures"] is None:
            del out["architectures"]
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> AlbertConfig:
        model_type = data.get("model_type", "albert")
        if model_type not in ("albert", "bert"):
            raise AlbertError(
                f"config has model_type={model_type!r}; this package loads ALBERT checkpoints only "
                "(use `albert convert-bert` for BERT models)"
            )
        merged = {**data, **overrides}
        merged["model_type"] = "albert"
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> AlbertConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AlbertError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AlbertError(f"{path} is not valid JSON ({e}); fix or regenerate the config") from None
        if not isinstance(data, dict):
            raise AlbertError(f"{path} must hold a JSON object of config fields")
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **overrides: Any) -> AlbertConfig:
        """Load from a directory (or `config.json`, a preset name, or a local HF cache entry)."""
        path = Path(name_or_path)
        if path.is_file():
            return cls.from_json_file(path, **overrides)
        if str(name_or_path) in PRESETS and not path.exists():
            return cls.from_preset(str(name_or_path), **overrides)
        from albert.checkpoint import resolve_model_dir

        directory = resolve_model_dir(name_or_path)
        if not (directory / CONFIG_NAME).is_file():
            raise AlbertError(f"{directory} has no {CONFIG_NAME}; is this a model directory?")
        return cls.from_json_file(directory / CONFIG_NAME, **overrides)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AlbertConfig:
        if name not in PRESETS:
            raise AlbertError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def __repr__(self) -> str:
        return f"AlbertConfig({self.to_json_string()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AlbertConfig) and self.to_dict() == other.to_dict()


def _albert(layers: int, hidden: int, heads: int, version: int, vocab: int = 30000) -> dict[str, Any]:
    """The published ALBERT hyper-parameters: FFN = 4H, E = 128, vocab 30k, 512 positions."""
    preset: dict[str, Any] = dict(
        vocab_size=vocab,
        embedding_size=128,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
    )
    xxlarge = hidden == 4096
    if version == 1:
        dropout = 0.0 if xxlarge else 0.1
        preset.update(hidden_act="gelu", hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    else:
        preset.update(hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return preset


def _bert(layers: int, hidden: int, heads: int) -> dict[str, Any]:
    """BERT as an unshared ALBERT with E = H (plus the E→H projection ALBERT always has)."""
    return dict(
        vocab_size=30522,
        embedding_size=hidden,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        share="none",
    )


_SIZES = {"base": (12, 768, 12), "large": (24, 1024, 16), "xlarge": (24, 2048, 16), "xxlarge": (12, 4096, 64)}

PRESETS: dict[str, dict[str, Any]] = {
    f"albert-{size}-v{version}": _albert(*dims, version=version)
    for version in (1, 2)
    for size, dims in _SIZES.items()
}
PRESETS["albert-tiny"] = dict(_albert(4, 312, 12, version=2), intermediate_size=1248)
PRESETS["bert-base"] = _bert(12, 768, 12)
PRESETS["bert-large"] = _bert(24, 1024, 16)
