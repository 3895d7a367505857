"""What a model spec names: the one rule behind `--model`, `AlbertConfig.from_pretrained` and
`Model.from_pretrained`.

A spec is resolved in this order; the first that applies wins:

1. an existing directory: a model directory (`config.json` + weights). A directory written by
   `albert data` (a `manifest.json`, no `config.json`) is refused as pretraining data;
2. an existing `.json` file: a bare config, so a freshly initialised model (any other existing
   file is refused: pass the directory that holds it);
3. a hub name found in the local Hugging Face cache (`org/name`; a bare name is also looked up
   under `albert/`): that snapshot's directory, so its weights. Nothing is ever downloaded;
4. a preset name (`PRESETS`): its hyper-parameters, so a freshly initialised model;
5. anything else is an error that lists the closest preset names, or says how to get a hub model.

So a name means the published model when its weights are at hand and the preset's architecture
otherwise, and a path on disk always means that path. Loading weights (`Model.from_pretrained`)
needs case 1 or 3; building a model to train (`--model`) takes any case; a config takes any case.

This module also holds `PRESETS`, the published models' hyper-parameters, since preset names are
part of the rule. It imports nothing from the rest of the package but `albert.errors`.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from albert.errors import AlbertError

CONFIG_NAME = "config.json"
DATA_MANIFEST = "manifest.json"  # what `albert data` writes into its output directory


# ----------------------------------------------------------------------------------------
# presets: the published hyper-parameters


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


def closest_presets(name: str) -> list[str]:
    """Preset names that `name` is likely a typo of (difflib similarity), closest first."""
    return difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.75)


def unknown_preset(name: str) -> AlbertError:
    """The error for a name that is no preset: the closest ones first, then all of them."""
    close = closest_presets(name)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return AlbertError(f"unknown preset {name!r}; {guess}choose one of: {', '.join(PRESETS)}")


# ----------------------------------------------------------------------------------------
# the local Hugging Face cache


def hf_cache_dirs() -> list[Path]:
    """The hub cache locations transformers would use (HF_HUB_CACHE, HF_HOME/hub, default)."""
    dirs = []
    if os.environ.get("HF_HUB_CACHE"):
        dirs.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        dirs.append(Path(os.environ["HUGGINGFACE_HUB_CACHE"]))
    home = Path(
        os.environ.get(
            "HF_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
        )
    )
    dirs.append(home / "hub")
    return dirs


def cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot directory of `repo_id` (or `albert/<repo_id>`) in the local cache, if any."""
    looks_like_repo = repo_id.count("/") <= 1 and not repo_id.startswith((".", "/", "~")) and repo_id.strip()
    if not looks_like_repo:
        return None
    candidates = [repo_id] if "/" in repo_id else [repo_id, f"albert/{repo_id}"]
    for cache in hf_cache_dirs():
        for candidate in candidates:
            repo = cache / ("models--" + candidate.replace("/", "--"))
            if not repo.is_dir():
                continue
            ref = repo / "refs" / "main"
            if ref.is_file():
                snapshot = repo / "snapshots" / ref.read_text().strip()
                if snapshot.is_dir():
                    return snapshot
            snapshots = sorted((repo / "snapshots").glob("*"), key=lambda p: p.stat().st_mtime)
            if snapshots:
                return snapshots[-1]
    return None


def _download_hint(name: str) -> str:
    return (
        f"no local Hugging Face cache entry for {name!r} (looked in {', '.join(str(d) for d in hf_cache_dirs())}); "
        f"nothing is downloaded at run time: on a machine with internet access run `huggingface-cli download "
        f"{name} --local-dir DIR`, copy DIR here and pass DIR"
    )


# ----------------------------------------------------------------------------------------
# the rule


@dataclass(frozen=True)
class ModelSpec:
    """A resolved spec: exactly one of `directory`, `config_file` and `preset` is set."""

    spec: str  # as the user gave it
    directory: Path | None = None  # a model directory (case 1) or cached snapshot (case 3): weights
    config_file: Path | None = None  # a bare config.json: fresh weights
    preset: str | None = None  # a preset name: fresh weights

    @property
    def has_weights(self) -> bool:
        return self.directory is not None

    @property
    def config_path(self) -> Path | None:
        """Where the config is read from (None for a preset)."""
        return self.directory / CONFIG_NAME if self.directory is not None else self.config_file


def resolve(spec: str | os.PathLike | ModelSpec) -> ModelSpec:
    """Decide what `spec` names (see the module docstring for the order); never downloads."""
    if isinstance(spec, ModelSpec):
        return spec
    name = str(spec)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file() and (path / DATA_MANIFEST).is_file():
            raise AlbertError(
                f"{name} is pretraining data written by `albert data`, not a model; pass it as --data and "
                "give as the model a preset (e.g. albert-base-v2), a config.json or a model directory"
            )
        return ModelSpec(name, directory=path)
    if path.is_file():
        if path.suffix == ".json":
            return ModelSpec(name, config_file=path)
        raise AlbertError(f"{name} is a file; pass the model directory that contains it")
    snapshot = cached_snapshot(name)
    if snapshot is not None:
        return ModelSpec(name, directory=snapshot)
    if name in PRESETS:
        return ModelSpec(name, preset=name)
    close = closest_presets(name) if "/" not in name else []
    if close:
        raise AlbertError(
            f"unknown model {name!r}: no such directory, config file or preset; did you mean "
            f"{' or '.join(close)}? (presets: {', '.join(PRESETS)})"
        )
    raise AlbertError(
        f"{name} does not exist as a directory or config file, and there is {_download_hint(name)}"
    )


def weights_directory(spec: str | os.PathLike | ModelSpec) -> Path:
    """The directory holding `spec`'s weights: a model directory or a cached hub snapshot."""
    resolved = resolve(spec)
    if resolved.directory is not None:
        return resolved.directory
    if resolved.preset is not None:
        raise AlbertError(
            f"{resolved.spec!r} is a preset (hyper-parameters, no weights) and there is "
            f"{_download_hint(resolved.spec)}; for a randomly initialised model use "
            f"Model.from_preset({resolved.spec!r})"
        )
    raise AlbertError(
        f"{resolved.spec} is a config file (hyper-parameters, no weights); pass the model directory that "
        "holds config.json with its weights, or build a fresh model with Model(AlbertConfig.from_json_file(FILE))"
    )
