"""Loading real-world checkpoint variants, and one clear error for everything else."""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import albert
from albert import AlbertConfig, AlbertError
from albert.checkpoint import build_model
from albert.cli import main as cli_main

SMALL = dict(
    vocab_size=50,
    embedding_size=8,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
)


def _save_hf(tmp_path: Path, cls_name: str = "AlbertForPreTraining") -> Path:
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(transformers.AlbertConfig(**SMALL)).eval()
    model.save_pretrained(tmp_path)
    return tmp_path


def _rewrite(directory: Path, edit) -> None:  # type: ignore[no-untyped-def]
    state = load_file(str(directory / "model.safetensors"))
    save_file(edit(state), str(directory / "model.safetensors"), metadata={"format": "pt"})


def test_missing_sop_head_warns_once_and_initialises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = _save_hf(tmp_path)
    _rewrite(directory, lambda s: {k: v for k, v in s.items() if not k.startswith("sop_classifier.")})
    with caplog.at_level(logging.WARNING, logger="albert"):
        model = albert.AlbertForPreTraining.from_pretrained(directory)
        albert.AlbertForPreTraining.from_pretrained(directory)
    messages = [r.message for r in caplog.records if "sop_classifier" in r.message]
    assert len(messages) == 1 and "newly initialised" in messages[0]
    assert model.sop_classifier.classifier.weight.std() > 0


def test_tolerates_decoder_keys_and_position_buffers(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    reference = albert.AlbertForPreTraining.from_pretrained(directory)

    def add_extras(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state = dict(state)
        state["predictions.decoder.weight"] = state["albert.embeddings.word_embeddings.weight"].clone()
        state["predictions.decoder.bias"] = state.pop("predictions.bias")
        state["albert.embeddings.position_ids"] = torch.arange(512)[None]
        return state

    _rewrite(directory, add_extras)
    model = albert.AlbertForPreTraining.from_pretrained(directory)
    for (k, v), (_, w) in zip(reference.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(v, w), k


def test_base_checkpoint_into_head_and_head_into_base(tmp_path: Path) -> None:
    base_dir = _save_hf(tmp_path / "base", "AlbertModel")
    head = albert.AlbertForSequenceClassification.from_pretrained(base_dir, num_labels=4)
    assert head.classifier.out_features == 4
    base = transformers.AlbertModel.from_pretrained(base_dir)
    assert torch.equal(head.albert.embeddings.word_embeddings.weight, base.embeddings.word_embeddings.weight)

    head_dir = _save_hf(tmp_path / "head", "AlbertForMaskedLM")  # no pooler in this class
    model = albert.AlbertModel.from_pretrained(head_dir)
    theirs = transformers.AlbertForMaskedLM.from_pretrained(head_dir)
    assert torch.equal(
        model.encoder.embedding_hidden_mapping_in.weight,
        theirs.albert.encoder.embedding_hidden_mapping_in.weight,
    )


def test_pytorch_model_bin_is_read(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    model = albert.AlbertForPreTraining.from_pretrained(directory)
    assert torch.equal(model.predictions.bias, state["predictions.bias"])


def test_config_overrides_and_presets(tmp_path: Path) -> None:
    model = albert.AlbertModel.from_preset("albert-tiny", num_hidden_layers=2)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 312
    directory = _save_hf(tmp_path)
    dropped = albert.AlbertForPreTraining.from_pretrained(directory, hidden_dropout_prob=0.3)
    assert dropped.config.hidden_dropout_prob == 0.3
    assert build_model(albert.AlbertModel, "albert-tiny").config.hidden_size == 312
    model.config.save_pretrained(tmp_path / "cfg")
    assert build_model(albert.AlbertModel, tmp_path / "cfg" / "config.json").config.num_hidden_layers == 2


def test_preset_name_is_not_silently_random(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(AlbertError, match="from_preset"):
        albert.AlbertModel.from_pretrained("albert-base-v2")


# -- errors --------------------------------------------------------------------------------


def test_missing_directory_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(AlbertError, match="huggingface-cli download"):
        albert.AlbertModel.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(AlbertError, match="nothing is downloaded"):
        albert.AlbertModel.from_pretrained("someone/albert-base-v2")


def test_hub_name_resolves_from_local_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "hub" / "models--albert--albert-base-v2"
    snapshot = repo / "snapshots" / "abc123"
    _save_hf(snapshot, "AlbertModel")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    model = albert.AlbertModel.from_pretrained("albert-base-v2")  # short name -> albert/ org
    assert model.config.hidden_size == 16


def test_truncated_safetensors(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    data = (directory / "model.safetensors").read_bytes()
    (directory / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(AlbertError, match="truncated or corrupted"):
        albert.AlbertForPreTraining.from_pretrained(directory)


def test_vocab_size_disagreement(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    config = json.loads((directory / "config.json").read_text())
    config["vocab_size"] = 77
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(AlbertError, match="vocab_size=77 .* 50 rows"):
        albert.AlbertForPreTraining.from_pretrained(directory)


def test_pickle_that_is_not_a_state_dict(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    (directory / "model.safetensors").unlink()
    with open(directory / "pytorch_model.bin", "wb") as f:
        pickle.dump({"model": argparse.Namespace(code="arbitrary object")}, f)
    with pytest.raises(AlbertError, match="weights_only"):
        albert.AlbertForPreTraining.from_pretrained(directory)
    torch.save([1, 2, 3], directory / "pytorch_model.bin")
    with pytest.raises(AlbertError, match="does not hold a state dict"):
        albert.AlbertForPreTraining.from_pretrained(directory)


def test_missing_core_weights_name_the_keys(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    _rewrite(
        directory,
        lambda s: (
            {k: v for k, v in s.items() if "ffn_output" not in k} | {"albert.extra.weight": torch.ones(1)}
        ),
    )
    with pytest.raises(AlbertError) as info:
        albert.AlbertForPreTraining.from_pretrained(directory)
    assert "missing: albert.encoder.albert_layer_groups.0.albert_layers.0.ffn_output" in str(info.value)
    assert "unexpected: albert.extra.weight" in str(info.value)


def test_invalid_config_json(tmp_path: Path) -> None:
    directory = _save_hf(tmp_path)
    (directory / "config.json").write_text("{not json")
    with pytest.raises(AlbertError, match="not valid JSON"):
        albert.AlbertModel.from_pretrained(directory)


def test_cli_prints_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = _save_hf(tmp_path)
    (directory / "model.safetensors").write_bytes(b"\x00garbage")
    capsys.readouterr()  # drop transformers' own progress output from saving
    status = cli_main(
        ["export", "--format", "onnx", "--model", str(directory), "--output", str(tmp_path / "m.onnx")]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "truncated or corrupted" in err


def test_saved_config_keeps_labels_and_ignores_tf_keys(tmp_path: Path) -> None:
    config = AlbertConfig(
        **SMALL, id2label={0: "neg", 1: "pos"}, net_structure_type=0, gap_size=0, down_scale_factor=1
    )
    assert config.label2id == {"neg": 0, "pos": 1}
    model = albert.AlbertForSequenceClassification(config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "net_structure_type" not in saved and saved["architectures"] == ["AlbertForSequenceClassification"]
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    assert theirs.id2label == {0: "neg", 1: "pos"}
    assert AlbertConfig.from_pretrained(tmp_path).id2label == {0: "neg", 1: "pos"}
