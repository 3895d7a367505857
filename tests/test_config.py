"""AlbertConfig: presets, config.json round trips, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from albert import AlbertConfig, AlbertError
from albert.config import PRESETS
from albert.modeling import AlbertModel


def test_presets_have_published_hyper_parameters() -> None:
    base = AlbertConfig.from_preset("albert-base-v2")
    assert (base.num_hidden_layers, base.hidden_size, base.num_attention_heads, base.intermediate_size) == (
        12,
        768,
        12,
        3072,
    )
    assert base.embedding_size == 128 and base.hidden_act == "gelu_new" and base.hidden_dropout_prob == 0.0
    v1 = AlbertConfig.from_preset("albert-large-v1")
    assert (
        v1.hidden_act == "gelu" and v1.hidden_dropout_prob == 0.1 and v1.attention_probs_dropout_prob == 0.1
    )
    xx1 = AlbertConfig.from_preset("albert-xxlarge-v1")
    assert xx1.hidden_act == "gelu" and xx1.hidden_dropout_prob == 0.0 and xx1.num_attention_heads == 64
    tiny = AlbertConfig.from_preset("albert-tiny")
    assert (
        tiny.num_hidden_layers,
        tiny.hidden_size,
        tiny.intermediate_size,
        tiny.num_attention_heads,
        tiny.embedding_size,
    ) == (4, 312, 1248, 12, 128)
    bert = AlbertConfig.from_preset("bert-base")
    assert (
        bert.share == "none"
        and bert.embedding_size == bert.hidden_size == 768
        and bert.num_hidden_groups == 12
    )


@pytest.mark.parametrize("name", [p for p in PRESETS if p.startswith("albert-")])
def test_parameter_counts_equal_transformers(name: str) -> None:
    config = AlbertConfig.from_preset(name)
    with torch.device("meta"):
        ours = AlbertModel(config)
        theirs = transformers.AlbertModel(
            transformers.AlbertConfig(**{k: v for k, v in config.to_dict().items() if k != "share"})
        )
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())


def test_json_round_trip_with_transformers(tmp_path: Path) -> None:
    ours = AlbertConfig.from_preset("albert-large-v1", num_labels=5)
    ours.save_pretrained(tmp_path)
    theirs = transformers.AlbertConfig.from_pretrained(tmp_path)
    assert theirs.hidden_size == 1024 and theirs.num_labels == 5 and theirs.hidden_act == "gelu"
    theirs.save_pretrained(tmp_path / "back")
    assert AlbertConfig.from_pretrained(tmp_path / "back") == ours


def test_tf_config_keys_are_accepted_and_ignored() -> None:
    config = AlbertConfig.from_dict({"hidden_size": 64, "num_attention_heads": 4, "net_structure_type": 0, "gap_size": 0,
                                     "down_scale_factor": 1, "layers_to_keep": [], "num_memory_blocks": 0})  # fmt: skip
    assert config.hidden_size == 64 and "gap_size" in config.ignored_keys


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(share="some"), "share"),
        (dict(hidden_size=30, num_attention_heads=4), "divisible"),
        (dict(num_hidden_groups=20), "num_hidden_groups"),
        (dict(problem_type="ranking"), "problem_type"),
    ],
)
def test_invalid_configs_are_clear_errors(bad: dict[str, object], message: str) -> None:
    with pytest.raises(AlbertError, match=message):
        AlbertConfig(**bad)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(AlbertError, match="albert-base-v2"):
        AlbertConfig.from_preset("albert-huge")


def test_non_albert_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(AlbertError, match="model_type='gpt2'"):
        AlbertConfig.from_pretrained(tmp_path)
