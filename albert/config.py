"""`AlbertConfig`: the model's hyper-parameters, `config.json`-compatible with transformers.

Besides transformers' fields it has `share`, which selects what is shared across layers
(the paper's Table 4): "all" (ALBERT), "attention", "ffn" or "none" (BERT when
`embedding_size == hidden_size`). Named presets (`albert.hub.PRESETS`) reproduce the published
models; what a name or path given to `from_pretrained` means is decided by `albert.hub.resolve`.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from albert.errors import AlbertError
from albert.hub import CONFIG_NAME, PRESETS, ModelSpec, resolve, unknown_preset

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
        self.id2label = _read_labels(kwargs, self.id2label)
        if num_labels is not None and not _is_int(num_labels):
            raise AlbertError(f"invalid ALBERT config: num_labels={num_labels!r} is not an integer")
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
        problems = self._type_problems()
        if problems:  # the checks below assume the types
            raise AlbertError(
                f"invalid ALBERT config: {'; '.join(problems)}; give each field a value of its type "
                '(e.g. 312, not "312")'
            )
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

    def _type_problems(self) -> list[str]:
        """One entry per field whose value is not of its annotated type (e.g. "312" for an int)."""
        problems = []
        for f in dataclasses.fields(self):
            annotation = str(f.type)
            optional = annotation.endswith(" | None")
            expected = _TYPES.get(annotation.removesuffix(" | None"))
            value = getattr(self, f.name)
            if expected is None or (optional and value is None) or expected[1](value):
                continue
            problems.append(f"{f.name}={value!r} is not {expected[0]}{' or null' if optional else ''}")
        return problems

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
        try:
            return cls.from_dict(data, **overrides)
        except AlbertError as e:
            raise AlbertError(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike | ModelSpec, **overrides: Any) -> AlbertConfig:
        """The config of any model spec: a model directory, a config.json, a hub name in the local
        cache or a preset name, in the order `albert.hub.resolve` documents."""
        resolved = resolve(spec)
        if resolved.preset is not None:
            return cls.from_preset(resolved.preset, **overrides)
        path = resolved.config_path
        assert path is not None
        if not path.is_file():
            raise AlbertError(f"{path.parent} has no {CONFIG_NAME}; is this a model directory?")
        return cls.from_json_file(path, **overrides)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> AlbertConfig:
        if name not in PRESETS:
            raise unknown_preset(name)
        return cls(**{**PRESETS[name], **overrides})

    def __repr__(self) -> str:
        return f"AlbertConfig({self.to_json_string()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AlbertConfig) and self.to_dict() == other.to_dict()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size


# annotation -> (what the error calls it, the check); `X | None` fields also take null
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", _is_int),
    "float": ("a number", lambda v: isinstance(v, float) or _is_int(v)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "list[str]": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
}


def _read_labels(fields: dict[str, Any], default: dict[int, str]) -> dict[int, str]:
    """`id2label` from a config's `id2label` (or `label2id`), with JSON's string keys as ints."""
    for name, reverse in (("id2label", False), ("label2id", True)):
        if name not in fields:
            continue
        mapping = fields[name]
        try:
            pairs = [(v, k) if reverse else (k, v) for k, v in mapping.items()]
            return {int(i): str(label) for i, label in pairs}
        except (AttributeError, TypeError, ValueError):
            raise AlbertError(
                f"invalid ALBERT config: {name}={str(mapping)[:80]} is not a mapping between label ids "
                "(integers) and label names"
            ) from None
    return default
