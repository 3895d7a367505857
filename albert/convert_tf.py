"""`albert convert-tf`: the original TensorFlow ALBERT checkpoints -> a Hugging Face-layout directory.

Two TF layouts exist in the world and both map exactly onto `AlbertForPreTraining`:

* Google's (google-research/albert, and the `albert_*_zh` / `albert_tiny_google_zh` releases):
  `bert/embeddings/*` (E-wide), `bert/encoder/embedding_hidden_mapping_in`,
  `bert/encoder/transformer/group_N/inner_group_M/{attention_1,ffn_1,LayerNorm,LayerNorm_1}`,
  `bert/pooler/dense`, `cls/predictions/*`, `cls/seq_relationship/*`. Transformers' layout is
  the same model, so the result also loads in transformers.
* brightmart/albert_zh's own (`albert_{tiny,small,base,large,xlarge}_zh`): the word vectors are
  projected by `bert/embeddings/word_embeddings_2` (E x H, no bias) before H-wide position and
  token-type vectors are added, the layers are BERT-named under `bert/encoder/layer_shared/`,
  the MLM transform is H-wide, and `ln_type: "preln"` configs put LayerNorm before each
  sub-block. This needs `embedding_projection="word_only"` (and `layer_norm_position="pre"`),
  which this package's model has and transformers' does not: such a directory loads here only.

Kernels are transposed (TF stores `in x out`, PyTorch `out x in`); optimizer slots
(`adam_m`/`adam_v`, LAMB's `lamb_m`/`lamb_v`, ...) and `global_step` are skipped on purpose;
any other variable the mapping does not know is an error naming it, so nothing is silently
left at its random initialisation. Tensors are streamed from the checkpoint into the output
`model.safetensors` one at a time, so memory stays near the size of the largest tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from albert.checkpoint import SAFETENSORS_NAME, warn_once
from albert.config import CONFIG_NAME, AlbertConfig
from albert.errors import AlbertError
from albert.tf_checkpoint import TensorEntry, TFCheckpoint, checkpoint_prefix

GOOGLE, ALBERT_ZH = "google", "albert_zh"
OPTIMIZER_SLOTS = ("adam_m", "adam_v", "lamb_m", "lamb_v", "Adam", "Adam_1", "Momentum", "Adagrad")
BOOKKEEPING = ("global_step", "beta1_power", "beta2_power", "_CHECKPOINTABLE_OBJECT_GRAPH")
HEAD_PREFIXES = ("predictions.", "sop_classifier.")
TF_CONFIG_NAMES = ("albert_config.json", "bert_config.json")

# TF config keys that carry no information the model needs (BERT pooler leftovers, notes)
INFORMATIONAL_KEYS = (
    "directionality",
    "pooler_fc_size",
    "pooler_num_attention_heads",
    "pooler_num_fc_layers",
    "pooler_size_per_head",
    "pooler_type",
)
# TF config keys with one supported value: other values select code no released model uses
FIXED_KEYS = {"net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0, "down_scale_factor": 1}
# google-research/albert and albert_zh's `get_activation`: their "gelu" is the tanh approximation
TF_ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "tanh": "tanh"}

LEAVES = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}
GOOGLE_BLOCK = {
    "attention_1/self/query": "attention.query",
    "attention_1/self/key": "attention.key",
    "attention_1/self/value": "attention.value",
    "attention_1/output/dense": "attention.dense",
    "LayerNorm": "attention.LayerNorm",
    "ffn_1/intermediate/dense": "ffn",
    "ffn_1/intermediate/output/dense": "ffn_output",
    "LayerNorm_1": "full_layer_layer_norm",
}
ALBERT_ZH_BLOCK = {
    "attention/self/query": "attention.query",
    "attention/self/key": "attention.key",
    "attention/self/value": "attention.value",
    "attention/output/dense": "attention.dense",
    "attention/output/LayerNorm": "attention.LayerNorm",
    "intermediate/dense": "ffn",
    "output/dense": "ffn_output",
    "output/LayerNorm": "full_layer_layer_norm",
}
SHARED_MODULES = {
    "bert/embeddings/LayerNorm": "albert.embeddings.LayerNorm",
    "bert/encoder/embedding_hidden_mapping_in": "albert.encoder.embedding_hidden_mapping_in",
    "bert/pooler/dense": "albert.pooler",
    "cls/predictions/transform/dense": "predictions.dense",
    "cls/predictions/transform/LayerNorm": "predictions.LayerNorm",
}
SHARED_TENSORS = {
    "bert/embeddings/word_embeddings": "albert.embeddings.word_embeddings.weight",
    "bert/embeddings/position_embeddings": "albert.embeddings.position_embeddings.weight",
    "bert/embeddings/token_type_embeddings": "albert.embeddings.token_type_embeddings.weight",
    "cls/predictions/output_bias": "predictions.bias",
    "cls/seq_relationship/output_weights": "sop_classifier.classifier.weight",  # already out x in
    "cls/seq_relationship/output_bias": "sop_classifier.classifier.bias",
}


@dataclass
class Mapped:
    """One TF variable and where it goes: our state-dict key, and whether it is a kernel
    (reshaped to 2-D, then transposed)."""

    entry: TensorEntry
    key: str
    kernel: bool

    @property
    def shape(self) -> tuple[int, ...]:
        if not self.kernel:
            return self.entry.shape
        return tuple(reversed(_kernel_2d_shape(self.entry.name, self.entry.shape)))


def _kernel_2d_shape(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """Google's code may store attention kernels 3-D (H x heads x head_dim, or heads x
    head_dim x H for the output projection); as matrices they are H x H."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if name.endswith("output/dense/kernel"):
        return int(np.prod(shape[:-1])), shape[-1]
    return shape[0], int(np.prod(shape[1:]))


def is_training_state(name: str) -> bool:
    """Optimizer slots and step counters: saved for resuming TF training, not part of the model."""
    return name in BOOKKEEPING or name.rsplit("/", 1)[-1] in OPTIMIZER_SLOTS


def detect_layout(names: list[str]) -> str:
    if any(
        n.startswith(("bert/encoder/transformer/", "bert/encoder/embedding_hidden_mapping_in")) for n in names
    ):
        return GOOGLE
    if any(n.startswith("bert/encoder/layer_") or n == "bert/embeddings/word_embeddings_2" for n in names):
        return ALBERT_ZH
    raise AlbertError(
        "the checkpoint holds neither Google's ALBERT variables (bert/encoder/transformer/...) nor "
        "albert_zh's (bert/encoder/layer_shared/...); is it an ALBERT checkpoint?"
    )


def _module_and_leaf(name: str) -> tuple[str, str]:
    module, _, leaf = name.rpartition("/")
    return module, leaf


def map_variable(name: str, layout: str) -> tuple[str, bool] | None:
    """(our key, is_kernel) for a TF variable name, or None if the layout does not know it."""
    if name in SHARED_TENSORS:
        return SHARED_TENSORS[name], False
    if layout == ALBERT_ZH and name == "bert/embeddings/word_embeddings_2":
        return "albert.embeddings.word_projection.weight", True
    module, leaf = _module_and_leaf(name)
    if leaf not in LEAVES:
        return None
    target = SHARED_MODULES.get(module)
    if target is None and layout == GOOGLE:
        match = re.fullmatch(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/(.+)", module)
        if match and match.group(3) in GOOGLE_BLOCK:
            group, inner, part = match.groups()
            target = f"albert.encoder.albert_layer_groups.{group}.albert_layers.{inner}.{GOOGLE_BLOCK[part]}"
    elif target is None:
        match = re.fullmatch(r"bert/encoder/layer_(shared|\d+)/(.+)", module)
        if match and match.group(2) in ALBERT_ZH_BLOCK:
            group = "0" if match.group(1) == "shared" else match.group(1)
            target = f"albert.encoder.albert_layer_groups.{group}.albert_layers.0.{ALBERT_ZH_BLOCK[match.group(2)]}"
    if target is None:
        return None
    return f"{target}.{LEAVES[leaf]}", leaf == "kernel"


# ----------------------------------------------------------------------------------------
# the TF config


def read_tf_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise AlbertError(f"config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # invalid JSON or not UTF-8
        raise AlbertError(
            f"{path} is not valid JSON ({e}); pass the albert_config.json released with it"
        ) from None
    if not isinstance(data, dict):
        raise AlbertError(f"{path} must hold a JSON object (an albert_config.json)")
    return data


def albert_config_from_tf(tf_config: dict[str, Any], layout: str, source: str) -> AlbertConfig:
    """Our config for a TF `albert_config.json`: every key is mapped, known to be irrelevant,
    or an error naming it."""
    fields: dict[str, Any] = {}
    for key in (
        "vocab_size",
        "embedding_size",
        "hidden_size",
        "num_hidden_layers",
        "num_hidden_groups",
        "num_attention_heads",
        "intermediate_size",
        "inner_group_num",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "max_position_embeddings",
        "type_vocab_size",
        "initializer_range",
    ):
        if key in tf_config:
            fields[key] = tf_config[key]
    act = tf_config.get("hidden_act", "gelu")
    if act not in TF_ACTIVATIONS:
        raise AlbertError(f"{source}: hidden_act={act!r} is not one of {', '.join(TF_ACTIVATIONS)}")
    fields["hidden_act"] = TF_ACTIVATIONS[act]
    for key, supported in FIXED_KEYS.items():
        if tf_config.get(key, supported) != supported:
            raise AlbertError(
                f"{source}: {key}={tf_config[key]!r} is not supported (only {supported}, what every released "
                "ALBERT uses); the original modeling code does not implement other values either"
            )
    ln_type = tf_config.get("ln_type") or "postln"
    if ln_type not in ("postln", "preln"):
        raise AlbertError(f"{source}: ln_type={ln_type!r} is not 'postln' or 'preln'")
    if layout == GOOGLE and ln_type == "preln":
        raise AlbertError(
            f"{source}: ln_type='preln' with a Google-layout checkpoint; Google's code has no pre-LN blocks"
        )
    known = set(fields) | set(FIXED_KEYS) | set(INFORMATIONAL_KEYS) | {"hidden_act", "ln_type"}
    unknown = sorted(set(tf_config) - known)
    if unknown:
        raise AlbertError(
            f"{source}: unknown TF config key(s) {', '.join(unknown)}; this converter does not know what they change"
        )
    fields.update(
        layer_norm_eps=1e-12,  # tf.contrib.layers.layer_norm's fixed epsilon
        embedding_projection="word_only" if layout == ALBERT_ZH else "after_sum",
        layer_norm_position="pre" if ln_type == "preln" else "post",
        classifier_dropout_prob=fields.get("hidden_dropout_prob", 0.1),
        architectures=["AlbertForPreTraining"],
    )
    if layout == ALBERT_ZH:
        fields.setdefault("embedding_size", 128)
    return AlbertConfig(**fields)


# ----------------------------------------------------------------------------------------
# mapping a whole checkpoint


def expected_state(config: AlbertConfig) -> dict[str, tuple[int, ...]]:
    """Our AlbertForPreTraining's keys and shapes, without allocating its weights."""
    from albert.modeling import AlbertForPreTraining

    with torch.device("meta"):
        model = AlbertForPreTraining(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_config_matches(
    config: AlbertConfig, entries: dict[str, TensorEntry], source: str, layout: str
) -> None:
    """A config that contradicts the tensors is one error naming the config key and the tensor."""
    probes = [
        ("bert/embeddings/word_embeddings", 0, "vocab_size"),
        ("bert/embeddings/word_embeddings", 1, "embedding_size"),
        ("bert/embeddings/position_embeddings", 0, "max_position_embeddings"),
        ("bert/embeddings/token_type_embeddings", 0, "type_vocab_size"),
        ("bert/pooler/dense/kernel", 0, "hidden_size"),
    ]
    ffn = next(
        (n for n in entries if n.endswith(("ffn_1/intermediate/dense/kernel", "/intermediate/dense/kernel"))),
        None,
    )
    if ffn is not None and not is_training_state(ffn):
        probes.append((ffn, 1, "intermediate_size"))
    for name, dim, key in probes:
        entry = entries.get(name)
        if entry is not None and len(entry.shape) > dim and entry.shape[dim] != getattr(config, key):
            raise AlbertError(
                f"{source} says {key}={getattr(config, key)} but the checkpoint's {name} has shape "
                f"{list(entry.shape)}; pass the config released with this checkpoint"
            )
    groups = {
        int(m.group(1)) for n in entries if (m := re.match(r"bert/encoder/transformer/group_(\d+)/", n))
    }
    if layout == GOOGLE and groups and max(groups) + 1 != config.num_hidden_groups:
        raise AlbertError(
            f"{source} says num_hidden_groups={config.num_hidden_groups} but the checkpoint has "
            f"{max(groups) + 1} (bert/encoder/transformer/group_{max(groups)}/...); pass the config released with it"
        )
    layers = {int(m.group(1)) for n in entries if (m := re.match(r"bert/encoder/layer_(\d+)/", n))}
    if layers:
        config.num_hidden_groups = len(layers)  # albert_zh with sharing turned off: one group per layer


def map_checkpoint(
    entries: dict[str, TensorEntry], config: AlbertConfig, layout: str, source: str
) -> list[Mapped]:
    """Every model variable of the checkpoint with its destination, checked against the model:
    unknown variables, shape mismatches and missing encoder weights are errors."""
    _check_config_matches(config, entries, source, layout)
    expected = expected_state(config)
    mapped, seen = [], set()
    for name in sorted(entries):
        if is_training_state(name):
            continue
        target = map_variable(name, layout)
        if target is None or target[0] not in expected:
            raise AlbertError(
                f"unknown variable {name} {list(entries[name].shape)} in the checkpoint ({layout} layout); "
                "it is not part of AlbertForPreTraining, so converting would silently drop it"
            )
        item = Mapped(entries[name], target[0], target[1])
        if item.shape != expected[item.key]:
            raise AlbertError(
                f"{name} has shape {list(entries[name].shape)} but {source} implies {list(expected[item.key])} "
                f"for {item.key}; pass the config released with this checkpoint"
            )
        mapped.append(item)
        seen.add(item.key)
    missing = sorted(k for k in expected if k not in seen)
    missing_base = [k for k in missing if not k.startswith(HEAD_PREFIXES)]
    if missing_base:
        raise AlbertError(
            f"the checkpoint lacks {len(missing_base)} model weight(s), e.g. {missing_base[0]}; "
            "it is incomplete or does not match the config"
        )
    if missing:
        warn_once(
            f"the checkpoint has no pretraining heads ({', '.join(missing)}); they keep their random initialisation"
        )
    return mapped


def read_mapped(ckpt: TFCheckpoint, item: Mapped) -> np.ndarray:
    """The tensor in our layout: kernels reshaped to matrices and transposed (contiguous)."""
    array = ckpt.read_tensor(item.entry.name)
    if item.kernel:
        array = np.ascontiguousarray(array.reshape(_kernel_2d_shape(item.entry.name, item.entry.shape)).T)
    return array


@dataclass
class TFModel:
    """An opened TF checkpoint, its layout, our config, and the variable mapping."""

    ckpt: TFCheckpoint
    layout: str
    config: AlbertConfig
    mapped: list[Mapped]


def open_tf_model(checkpoint: str | os.PathLike, config_path: str | os.PathLike) -> TFModel:
    ckpt = TFCheckpoint(checkpoint)
    try:
        layout = detect_layout(list(ckpt.entries))
        config = albert_config_from_tf(read_tf_config(config_path), layout, str(config_path))
        return TFModel(ckpt, layout, config, map_checkpoint(ckpt.entries, config, layout, str(config_path)))
    except BaseException:
        ckpt.close()
        raise


# ----------------------------------------------------------------------------------------
# loading straight from a TF directory (from_pretrained)


def find_tf_config(directory: Path) -> Path | None:
    for name in TF_CONFIG_NAMES:
        if (directory / name).is_file():
            return directory / name
    candidates = sorted(directory.glob("albert_config*.json"))
    return candidates[0] if len(candidates) == 1 else None


def is_tf_model_dir(directory: Path) -> bool:
    """A released TF ALBERT directory: a checkpoint plus its albert_config.json, no config.json."""
    return (
        directory.is_dir()
        and not (directory / CONFIG_NAME).is_file()
        and any(directory.glob("*.index"))
        and find_tf_config(directory) is not None
    )


def load_tf_directory(
    directory: str | os.PathLike, **config_overrides: Any
) -> tuple[AlbertConfig, dict[str, torch.Tensor]]:
    """(config, state dict) of a TF checkpoint directory, for `from_pretrained`."""
    directory = Path(directory)
    config_path = find_tf_config(directory)
    if config_path is None:
        raise AlbertError(f"{directory} has a TF checkpoint but no albert_config.json next to it")
    warn_once(
        f"loading the TensorFlow checkpoint in {directory} directly; `albert convert-tf` makes a directory that loads faster"
    )
    model = open_tf_model(directory, config_path)
    with model.ckpt:
        state = {item.key: torch.from_numpy(read_mapped(model.ckpt, item)) for item in model.mapped}
    config = model.config
    if config_overrides:
        config = AlbertConfig.from_dict({**config.to_dict(), **config_overrides})
    return config, state


# ----------------------------------------------------------------------------------------
# writing the output directory


SAFETENSORS_DTYPES = {
    "float32": "F32",
    "float16": "F16",
    "float64": "F64",
    "int32": "I32",
    "int64": "I64",
    "bool": "BOOL",
    "bfloat16": "F32",
}


def write_safetensors(model: TFModel, path: Path) -> None:
    """Stream the mapped tensors into a safetensors file: the header is computed from the
    index, then each tensor is read, transposed if needed, and written before the next."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    items = sorted(model.mapped, key=lambda m: m.key)
    for item in items:
        dtype = SAFETENSORS_DTYPES.get(item.entry.dtype_name)
        if dtype is None:
            raise AlbertError(f"{item.entry.name} has {item.entry.dtype_name}, which no ALBERT weight uses")
        size = int(np.prod(item.shape, dtype=np.int64)) * (
            4 if dtype in ("F32", "I32") else 8 if dtype in ("F64", "I64") else 2 if dtype == "F16" else 1
        )
        header[item.key] = {
            "dtype": dtype,
            "shape": list(item.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for item in items:
            write_mapped(f, model.ckpt, item)


TRANSPOSE_BLOCK_BYTES = 16 << 20


def write_mapped(f: BinaryIO, ckpt: TFCheckpoint, item: Mapped) -> None:
    """One tensor in our layout; a kernel is transposed in 16 MB slabs, so a 268 MB xxlarge FFN
    kernel never needs a second full-size copy."""
    array = ckpt.read_tensor(item.entry.name)
    if not item.kernel:
        f.write(memoryview(np.ascontiguousarray(array)).cast("B"))
        return
    matrix = array.reshape(_kernel_2d_shape(item.entry.name, item.entry.shape))
    rows = max(1, TRANSPOSE_BLOCK_BYTES // max(1, matrix.shape[0] * matrix.itemsize))
    for start in range(0, matrix.shape[1], rows):
        f.write(memoryview(np.ascontiguousarray(matrix[:, start : start + rows].T)).cast("B"))


def write_tokenizer(vocab: Path, output: Path, vocab_size: int) -> None:
    """The tokenizer files (spiece.model or vocab.txt + transformers' JSON files)."""
    from albert.tokenization import SPM_FILE, VOCAB_FILE, AlbertTokenizer

    if not vocab.is_file():
        raise AlbertError(f"vocabulary file not found: {vocab}")
    name = VOCAB_FILE if vocab.suffix == ".txt" else SPM_FILE
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(vocab, Path(tmp) / name)
        tokenizer = AlbertTokenizer.from_pretrained(tmp)
    if len(tokenizer) > vocab_size:
        raise AlbertError(
            f"{vocab} has {len(tokenizer)} tokens but the model's vocab_size is {vocab_size}; pass the "
            "vocabulary released with this checkpoint"
        )
    tokenizer.save_pretrained(output)


@contextmanager
def _staged(output: Path) -> Iterator[Path]:
    """A staging directory renamed to `output` when the block succeeds, removed when it fails:
    `output` is complete or absent, never half-written."""
    from albert.convert_bert import _publish, _staging_dir

    staging = _staging_dir(output)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _publish(staging, output)


def convert_tf(
    checkpoint: str | os.PathLike,
    config_path: str | os.PathLike,
    vocab: str | os.PathLike | None,
    output: str | os.PathLike,
) -> TFModel:
    """Write `output` (config.json, model.safetensors, tokenizer files) atomically."""
    model = open_tf_model(checkpoint, config_path)
    with model.ckpt, _staged(Path(output)) as staging:
        if vocab is not None:
            write_tokenizer(Path(vocab), staging, model.config.vocab_size)
        write_safetensors(model, staging / SAFETENSORS_NAME)
        (staging / CONFIG_NAME).write_text(model.config.to_json_string(), encoding="utf-8")
    return model


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint", required=True, help="TF checkpoint: directory, PREFIX or PREFIX.index"
    )
    parser.add_argument("--config", required=True, help="the albert_config.json released with the checkpoint")
    parser.add_argument(
        "--vocab", default=None, help="its vocabulary: spiece.model (30k-clean.model) or vocab.txt"
    )
    parser.add_argument("--output", required=True, help="new directory for the converted model")


def run(args: argparse.Namespace) -> int:
    checkpoint_prefix(args.checkpoint)  # fail early, before any other work, on a wrong path
    model = convert_tf(args.checkpoint, args.config, args.vocab, args.output)
    note = (
        ""
        if model.layout == GOOGLE
        else " (albert_zh layout: loads with this package; transformers has no such model)"
    )
    print(f"converted {len(model.mapped)} tensors ({model.layout} layout) to {args.output}{note}")
    return 0
