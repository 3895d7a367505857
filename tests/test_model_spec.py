"""What a model spec names (`albert.hub.resolve`), and one clear line for each way to get it wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# fixtures shared between test files (pytest puts this folder on sys.path)
from test_export_fixtures import tiny_config as small_config
from test_finetune_fixtures import (  # noqa: F401
    one_thread,
    sentiment_rows,
    tiny_config,
    tokenizer,
    tokenizer_dir,
    write_csv,
)

from albert import AlbertConfig, AlbertError, AlbertModel
from albert.checkpoint import build_model
from albert.cli import main as cli_main
from albert.hub import resolve


def _save(directory: Path, **overrides: int) -> Path:
    torch.manual_seed(0)
    AlbertModel(small_config(**overrides)).save_pretrained(directory)
    return directory


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run `albert ARGV...`: it must fail with status 2 and one line, no traceback; that line."""
    capsys.readouterr()
    status = cli_main(list(argv))
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_config_imports_neither_checkpoint_nor_modeling() -> None:
    code = (
        "import albert.config, sys; "
        "assert 'albert.checkpoint' not in sys.modules and 'albert.modeling' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """directory > config.json > cached hub name > preset, the same for configs and models."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    name = "albert-tiny"

    # a preset, nothing cached: its config; a model to train, but no weights to load
    assert resolve(name).preset == name and not resolve(name).has_weights
    assert AlbertConfig.from_pretrained(name) == AlbertConfig.from_preset(name)
    assert build_model(AlbertModel, name).config == AlbertConfig.from_preset(name)
    with pytest.raises(AlbertError, match="is a preset .* no weights"):
        AlbertModel.from_pretrained(name)

    # the same name cached locally: config and model both come from the cache
    snapshot = _save(tmp_path / "hub" / "models--albert--albert-tiny" / "snapshots" / "abc", hidden_size=64)
    assert resolve(name).directory == snapshot
    model = AlbertModel.from_pretrained(name)
    assert AlbertConfig.from_pretrained(name) == model.config and model.config.hidden_size == 64
    loaded = build_model(AlbertModel, name)
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True))

    # a config.json: fresh weights with that config, whatever a name would mean
    small_config().save_pretrained(tmp_path / "cfg")
    assert resolve("cfg/config.json").config_file == Path("cfg/config.json")
    assert build_model(AlbertModel, "cfg/config.json").config.hidden_size == 32
    with pytest.raises(AlbertError, match="is a config file"):
        AlbertModel.from_pretrained("cfg/config.json")

    # a directory of that name in the working directory wins over the cache and the preset
    _save(tmp_path / name, hidden_size=8)
    assert resolve(name).directory == Path(name)
    assert (
        AlbertConfig.from_pretrained(name).hidden_size
        == AlbertModel.from_pretrained(name).config.hidden_size
        == 8
    )


# ----------------------------------------------------------------------------------------
# mistakes: one line, exit status 2 via the CLI, AlbertError via the API


@pytest.fixture
def task_files(tmp_path: Path) -> list[str]:
    train = write_csv(tmp_path / "train.csv", ["label", "text"], sentiment_rows(8, 0))
    return ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(train)]


def test_preset_typo_lists_the_closest_presets(
    tmp_path: Path, task_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = _cli_error(capsys, *task_files, "--model", "albert-tinyy", "--output", str(tmp_path / "out"))
    assert "did you mean albert-tiny?" in err and "huggingface-cli" not in err
    with pytest.raises(AlbertError, match="did you mean albert-base-v2 or albert-base-v1"):
        AlbertModel.from_pretrained("albert-base-v3")
    with pytest.raises(AlbertError, match="did you mean albert-tiny"):
        AlbertConfig.from_preset("albert-tinyy")
    assert not (tmp_path / "out").exists()


def test_pretraining_data_as_model_says_so(
    tmp_path: Path, tokenizer_dir: Path, task_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from albert.data import build_pretraining_data

    text = tmp_path / "text.txt"
    text.write_text(
        "".join(f"{t}.\n" if i % 4 else f"\n{t}.\n" for i, (_, t) in enumerate(sentiment_rows(80, 1)))
    )
    data = tmp_path / "data"
    build_pretraining_data(tokenizer_dir, [text], data, max_seq_length=32, progress=False)
    err = _cli_error(capsys, *task_files, "--model", str(data), "--output", str(tmp_path / "out"))
    assert "is pretraining data written by `albert data`" in err and "--data" in err
    with pytest.raises(AlbertError, match="pretraining data"):
        AlbertConfig.from_pretrained(data)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("hidden_size", "312", "hidden_size='312' is not an integer"),
        ("hidden_size", None, "hidden_size=None is not an integer"),
        ("hidden_size", 4.5, "hidden_size=4.5 is not an integer"),
        ("hidden_dropout_prob", "x", "hidden_dropout_prob='x' is not a number"),
        ("tie_word_embeddings", 1, "tie_word_embeddings=1 is not true or false"),
        ("classifier_dropout_prob", "0.1", "classifier_dropout_prob='0.1' is not a number or null"),
    ],
)
def test_config_field_of_the_wrong_type(
    tmp_path: Path,
    tiny_config: Path,
    tokenizer_dir: Path,
    task_files: list[str],
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: object,
    expected: str,
) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**json.loads(tiny_config.read_text()), field: value}))
    argv = [
        *task_files,
        "--model",
        str(bad),
        "--tokenizer",
        str(tokenizer_dir),
        "--output",
        str(tmp_path / "o"),
    ]
    err = _cli_error(capsys, *argv)
    assert f"{bad}: invalid ALBERT config: {expected}" in err
    with pytest.raises(AlbertError, match=expected.replace("(", r"\(")):
        AlbertConfig.from_pretrained(bad)


def test_hidden_size_mismatch_leads_with_the_cause_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _save(tmp_path / "model")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "hidden_size": 64, "intermediate_size": 96}))
    err = _cli_error(capsys, "export", "--model", str(directory), "--output", str(tmp_path / "m.onnx"))
    assert (
        "the weights have hidden_size=32, intermediate_size=48 but the config says hidden_size=64, "
        "intermediate_size=96; use the config.json saved with these weights"
    ) in err
    assert len(err) - len(str(directory)) < 300 and "albert_layer_groups" not in err
    with pytest.raises(AlbertError, match="the weights have hidden_size=32"):
        AlbertModel.from_pretrained(directory)
    assert not (tmp_path / "m.onnx").exists()
