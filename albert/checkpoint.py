"""Reading and writing model directories in the Hugging Face layout.

A directory holds `config.json` and `model.safetensors` (or `pytorch_model.bin`, possibly
sharded with an `*.index.json`). Which directory a name or path means is `albert.hub.resolve`'s
rule (never the network). Pickles are read with `weights_only=True`, so a checkpoint can never
run code.

Real checkpoints differ in small ways that must not stop a load (no SOP head, tied decoder
weights present or absent, stray `position_ids` buffers, base-model weights in a head class or
the reverse); everything else that does not fit is one error naming the keys.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from albert.config import CONFIG_NAME, AlbertConfig
from albert.errors import AlbertError
from albert.hub import ModelSpec, resolve, weights_directory

if TYPE_CHECKING:
    from albert.modeling import AlbertPreTrainedModel

logger = logging.getLogger("albert")
SAFETENSORS_NAME = "model.safetensors"
PICKLE_NAME = "pytorch_model.bin"
BASE_PREFIXES = ("embeddings.", "encoder.", "pooler.")
HEAD_PREFIXES = ("predictions.", "sop_classifier.", "classifier.", "qa_outputs.", "dropout.")
_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)


# ----------------------------------------------------------------------------------------
# reading weights


def _read_safetensors(file: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(file))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise AlbertError(
            f"{file} is not a readable safetensors file ({str(e).splitlines()[0]}); it may be truncated or "
            "corrupted: re-download or re-save it"
        ) from None


def _read_pickle(file: Path) -> dict[str, Tensor]:
    try:
        state = torch.load(str(file), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AlbertError(
            f"{file} is not a PyTorch state dict that can be loaded safely ({first[:200]}); only plain "
            "tensor checkpoints are read (weights_only=True): re-save it with torch.save(model.state_dict())"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise AlbertError(f"{file} does not hold a state dict (a mapping of names to tensors)")
    return state


def _read_sharded(index_file: Path, reader: Any) -> dict[str, Tensor]:
    try:
        weight_map = json.loads(index_file.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as e:
        raise AlbertError(f"{index_file} is not a valid shard index ({e})") from None
    state: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (index_file.parent / shard).is_file():
            raise AlbertError(
                f"shard {shard} listed in {index_file.name} is missing from {index_file.parent}"
            )
        state.update(reader(index_file.parent / shard))
    return state


def read_state_dict(directory: Path) -> dict[str, Tensor]:
    """The raw tensors of a checkpoint directory (safetensors preferred)."""
    for name, reader in ((SAFETENSORS_NAME, _read_safetensors), (PICKLE_NAME, _read_pickle)):
        if (directory / name).is_file():
            return reader(directory / name)
        index = directory / (name + ".index.json")
        if index.is_file():
            return _read_sharded(index, reader)
    raise AlbertError(
        f"{directory} has no {SAFETENSORS_NAME} or {PICKLE_NAME}; is this a model directory? "
        "(save one with model.save_pretrained(DIR))"
    )


# ----------------------------------------------------------------------------------------
# fitting a checkpoint's keys to a model


def _normalise_keys(state: dict[str, Tensor], model: AlbertPreTrainedModel) -> dict[str, Tensor]:
    """Rename/drop the harmless differences between real checkpoints and this model."""
    has_prefix = hasattr(model, "albert")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.endswith((".position_ids", ".token_type_ids")) or key == "predictions.decoder.weight":
            continue  # buffers, and the decoder tied to the word embeddings
        if key == "predictions.decoder.bias":
            key = "predictions.bias"
            if key in state:
                continue
        if has_prefix and key.startswith(BASE_PREFIXES):
            key = "albert." + key  # a base-model checkpoint loaded into a head class
        elif not has_prefix and key.startswith("albert."):
            key = key[len("albert.") :]  # a head checkpoint loaded into AlbertModel
        out[key] = value
    return out


def _is_optional(key: str) -> bool:
    """Keys a checkpoint may lack: task heads and the pooler (re-initialised with a warning)."""
    bare = key.removeprefix("albert.")
    return key.startswith(HEAD_PREFIXES) or bare.startswith("pooler.")


# config fields that a tensor's shape fixes: key suffix -> field per dimension (None: another's)
_SIZED_BY = {
    "embeddings.word_embeddings.weight": ("vocab_size", "embedding_size"),
    "embeddings.position_embeddings.weight": ("max_position_embeddings", None),
    "embeddings.token_type_embeddings.weight": ("type_vocab_size", None),
    "encoder.embedding_hidden_mapping_in.weight": ("hidden_size", None),
    ".ffn.weight": ("intermediate_size", None),
}


def sizes_of_weights(state: dict[str, Tensor]) -> dict[str, int]:
    """The config sizes a checkpoint's tensors were made with (those their shapes reveal)."""
    sizes: dict[str, int] = {}
    for key, tensor in state.items():
        for suffix, names in _SIZED_BY.items():
            if key.endswith(suffix) and tensor.dim() == len(names):
                sizes.update((name, int(n)) for name, n in zip(names, tensor.shape, strict=True) if name)
    return sizes


def _check_sizes(config: AlbertConfig, state: dict[str, Tensor], source: str) -> None:
    """One line with the cause and the fix when the config's sizes are not the weights' (a wrong
    or edited config.json), instead of a list of every mis-shaped tensor. A vocabulary that
    alone differs is left to `fit_state_dict`, which words it as the tokenizer question it is."""
    sizes = sizes_of_weights(state)
    differ = {
        f.name: sizes[f.name]
        for f in fields(config)
        if f.name in sizes and getattr(config, f.name) != sizes[f.name]
    }
    if not set(differ) - {"vocab_size"}:
        return
    weights = ", ".join(f"{k}={v}" for k, v in differ.items())
    configured = ", ".join(f"{k}={getattr(config, k)}" for k in differ)
    raise AlbertError(
        f"checkpoint {source} does not fit its config: the weights have {weights} but the config says "
        f"{configured}; use the config.json saved with these weights (or set {weights} in it)"
    )


def fit_state_dict(model: AlbertPreTrainedModel, state: dict[str, Tensor], source: str) -> None:
    """Load `state` into `model` or raise one AlbertError naming every problem."""
    state = _normalise_keys(state, model)
    _check_sizes(model.config, state, source)
    expected = model.state_dict()
    unexpected = [k for k in state if k not in expected and not _is_optional(k)]
    missing = [k for k in expected if k not in state]
    required_missing = [k for k in missing if not _is_optional(k)]
    problems = []
    word_key = next((k for k in expected if k.endswith("embeddings.word_embeddings.weight")), None)
    if word_key in state and state[word_key].shape != expected[word_key].shape:
        rows = state[word_key].shape[0]
        problems.append(
            f"config vocab_size={model.config.vocab_size} but the checkpoint's word embeddings have {rows} rows "
            f"(and width {state[word_key].shape[1]} vs embedding_size={model.config.embedding_size}); "
            f"fix config.json or pass vocab_size={rows}"
        )
    shape_errors = [
        f"{k} {tuple(state[k].shape)} vs expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and k != word_key and state[k].shape != v.shape
    ]
    if shape_errors:
        problems.append(
            "mis-shaped: " + ", ".join(shape_errors[:8]) + (" ..." if len(shape_errors) > 8 else "")
        )
    if required_missing:
        problems.append(
            "missing: " + ", ".join(required_missing[:8]) + (" ..." if len(required_missing) > 8 else "")
        )
    if unexpected:
        problems.append("unexpected: " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
    if problems:
        raise AlbertError(
            f"checkpoint {source} does not fit {type(model).__name__} with its config.json: "
            + "; ".join(problems)
        )
    newly_initialised = [k for k in missing if _is_optional(k)]
    if newly_initialised:
        warn_once(
            f"{type(model).__name__}: {source} has no weights for {', '.join(sorted(newly_initialised))}; "
            "they are newly initialised (train them before use)"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


# ----------------------------------------------------------------------------------------
# public entry points


def load_model(
    cls: type[AlbertPreTrainedModel],
    name_or_path: str | os.PathLike | ModelSpec,
    config: AlbertConfig | None = None,
    **config_overrides: Any,
) -> AlbertPreTrainedModel:
    """`cls` with the weights `name_or_path` names (a model directory or a cached hub name)."""
    directory = weights_directory(name_or_path)
    from albert.convert_tf import is_tf_model_dir, load_tf_directory

    tf_state = None
    if config is None and is_tf_model_dir(directory):  # a released TF checkpoint + albert_config.json
        config, tf_state = load_tf_directory(directory, **config_overrides)
    if config is None:
        if not (directory / CONFIG_NAME).is_file():
            raise AlbertError(f"{directory} has no {CONFIG_NAME}; is this a model directory?")
        config = AlbertConfig.from_json_file(directory / CONFIG_NAME, **config_overrides)
    state = read_state_dict(directory) if tf_state is None else tf_state
    model = cls(config)  # heads absent from the checkpoint keep the usual initialisation
    fit_state_dict(model, state, str(directory))
    return model.eval()


def build_model(
    cls: type[AlbertPreTrainedModel], spec: str | os.PathLike | ModelSpec, **config_overrides: Any
) -> AlbertPreTrainedModel:
    """What the CLI's `--model` means (`albert.hub.resolve`): a preset or a bare config gives a
    freshly initialised model; a directory (or cached hub name) loads its weights."""
    resolved = resolve(spec)
    if resolved.has_weights:
        return load_model(cls, resolved, **config_overrides)
    return cls(AlbertConfig.from_pretrained(resolved, **config_overrides))


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a temporary file beside `target`, then rename it into place: readers see the
    old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: AlbertPreTrainedModel, directory: Path) -> None:
    """`config.json` + `model.safetensors`, loadable here and by transformers."""
    state = model.state_dict()
    packed = [k for k, v in state.items() if not isinstance(v, Tensor) or v.is_quantized]
    if packed:  # e.g. albert.quantize()'s int8 layers: not a float checkpoint anyone could load
        raise AlbertError(
            f"an int8 model cannot be saved as a checkpoint ({packed[0]} is a quantized weight); save the fp32 "
            "model and call albert.quantize() after loading it, or export with `albert export --int8`"
        )
    directory.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write(
        directory / SAFETENSORS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"})
    )
    atomic_write(directory / CONFIG_NAME, lambda tmp: tmp.write_text(model.config.to_json_string()))
