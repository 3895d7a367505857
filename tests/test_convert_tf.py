"""TensorFlow checkpoints without TensorFlow, checked against real TensorFlow.

The fixtures in tests/fixtures/tf were written by TensorFlow's Saver running the original
google-research/albert and brightmart/albert_zh modeling code (see make_fixtures.py there);
`reference.npz` holds every tensor as `tf.train.load_checkpoint` read it back and the original
graphs' outputs on fixed inputs. No TensorFlow is needed here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from albert.cli import main
from albert.convert_tf import map_checkpoint
from albert.errors import AlbertError
from albert.modeling import AlbertForPreTraining
from albert.tf_checkpoint import TensorEntry, TFCheckpoint, crc32c, load_tf_checkpoint

FIXTURES = Path(__file__).parent / "fixtures" / "tf"
NAMES = ("google", "google_groups", "albert_zh", "albert_zh_preln")


def reference(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / name / "reference.npz") as data:
        return {k: data[k] for k in data.files}


def convert(checkpoint: Path, output: Path, *extra: str, config: Path | None = None) -> int:
    """`albert convert-tf` on a fixture (its own albert_config.json unless `config` is given)."""
    directory = checkpoint if checkpoint.is_dir() else checkpoint.parent
    config = config or directory / "albert_config.json"
    argv = ["convert-tf", "--checkpoint", str(checkpoint), "--config", str(config), "--output", str(output)]
    return main([*argv, *extra])


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    data = np.random.default_rng(0).integers(0, 256, (2 << 20) + 77, dtype=np.uint8)
    # the vectorised lanes + combination agree with the byte-at-a-time definition
    from albert.tf_checkpoint import _crc32c_python, _crc_bytes

    assert _crc32c_python(data) == _crc_bytes(0xFFFFFFFF, data.tobytes()) ^ 0xFFFFFFFF


@pytest.mark.parametrize("name", [*NAMES, "dtypes"])
def test_reader_is_bit_identical_to_tensorflow(name: str) -> None:
    ref = reference(name)
    expected = {k.removeprefix("tensor:"): v for k, v in ref.items() if k.startswith("tensor:")}
    tensors = load_tf_checkpoint(FIXTURES / name)
    assert set(tensors) == set(expected)
    for key, value in expected.items():
        got = tensors[key]
        assert (got.dtype, got.shape) == (value.dtype, value.shape), key
        assert got.tobytes() == value.tobytes(), key


def test_reader_accepts_directory_prefix_and_index(tmp_path: Path) -> None:
    directory = FIXTURES / "google_groups"
    names = set(load_tf_checkpoint(directory))
    assert set(load_tf_checkpoint(directory / "model.ckpt")) == names
    assert set(load_tf_checkpoint(directory / "model.ckpt.index")) == names
    # no `checkpoint` file at all
    copy = copy_fixture("google_groups", tmp_path)
    (copy / "checkpoint").unlink()
    assert set(load_tf_checkpoint(copy)) == names


def model_inputs(ref: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The fixed inputs the original code ran on."""
    return {
        "input_ids": torch.from_numpy(ref["input_ids"]).long(),
        "attention_mask": torch.from_numpy(ref["input_mask"]).long(),
        "token_type_ids": torch.from_numpy(ref["token_type_ids"]).long(),
    }


def _outputs(model: AlbertForPreTraining, ref: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(
            **model_inputs(ref),
            output_hidden_states=True,
            return_dict=True,
        )
        pooled = model.albert(
            **model_inputs(ref),
            return_dict=True,
        ).pooler_output
    logits = out.prediction_logits
    return {
        "sequence_output": out.hidden_states[-1].numpy(),
        "all_encoder_layers": torch.stack(out.hidden_states[1:]).numpy(),
        "pooled_output": pooled.numpy(),
        "mlm_log_probs": logits.log_softmax(-1).reshape(-1, logits.shape[-1]).numpy(),
        "sop_log_probs": out.sop_logits.log_softmax(-1).numpy(),
    }


def assert_matches_original(model: AlbertForPreTraining, name: str) -> None:
    ref = reference(name)
    got = _outputs(model.eval(), ref)
    for key, value in got.items():
        np.testing.assert_allclose(value, ref[key], rtol=0, atol=1e-5, err_msg=f"{name}: {key}")


@pytest.mark.parametrize("name", NAMES)
def test_from_pretrained_on_tf_directory_reproduces_original_code(name: str) -> None:
    model = AlbertForPreTraining.from_pretrained(FIXTURES / name)
    assert_matches_original(model, name)


@pytest.mark.parametrize("name", ["google", "google_groups"])
def test_converted_directory_loads_in_transformers_with_same_outputs(name: str, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "out"
    assert convert(FIXTURES / name, out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert_matches_original(AlbertForPreTraining.from_pretrained(out), name)
    theirs = transformers.AlbertForPreTraining.from_pretrained(out).eval()
    ref = reference(name)
    with torch.no_grad():
        result = theirs(
            **model_inputs(ref),
            output_hidden_states=True,
        )
    logits = result.prediction_logits
    np.testing.assert_allclose(result.hidden_states[-1].numpy(), ref["sequence_output"], atol=1e-5)
    np.testing.assert_allclose(
        logits.log_softmax(-1).reshape(-1, logits.shape[-1]).numpy(), ref["mlm_log_probs"], atol=1e-5
    )
    np.testing.assert_allclose(result.sop_logits.log_softmax(-1).numpy(), ref["sop_log_probs"], atol=1e-5)


@pytest.mark.parametrize("name", ["albert_zh", "albert_zh_preln"])
def test_albert_zh_converts_with_its_vocab(name: str, tmp_path: Path) -> None:
    from albert.tokenization import AlbertTokenizer

    out = tmp_path / "out"
    assert convert(FIXTURES / name / "model.ckpt.index", out, "--vocab", str(FIXTURES / "vocab.txt")) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["embedding_projection"] == "word_only"
    assert config["layer_norm_position"] == ("pre" if name.endswith("preln") else "post")
    assert_matches_original(AlbertForPreTraining.from_pretrained(out), name)
    tokenizer = AlbertTokenizer.from_pretrained(out)
    # BERT's Chinese tokenizer: every CJK character is its own token, Latin words lower-cased
    assert tokenizer.tokenize("我喜欢这电影 Movies") == ["我", "喜", "欢", "这", "电", "影", "movie", "##s"]


# ----------------------------------------------------------------------------------------
# errors: one line naming the file


def _expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(AlbertError) as info:
        load_tf_checkpoint(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_wrong_magic(tmp_path: Path) -> None:
    copy = copy_fixture("google", tmp_path)
    index = copy / "model.ckpt.index"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(bytes(data))
    _expect_error(copy, str(index), "magic")


def test_corrupt_index_block(tmp_path: Path) -> None:
    copy = copy_fixture("google", tmp_path)
    index = copy / "model.ckpt.index"
    data = bytearray(index.read_bytes())
    data[20] ^= 0x01
    index.write_bytes(bytes(data))
    _expect_error(copy, str(index), "checksum mismatch")


def test_truncated_and_corrupt_shard(tmp_path: Path) -> None:
    copy = copy_fixture("google", tmp_path)
    shard = copy / "model.ckpt.data-00000-of-00001"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    _expect_error(copy, str(shard), "truncated")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(flipped))
    _expect_error(copy, str(shard), "checksum mismatch")


def test_missing_shard(tmp_path: Path) -> None:
    copy = copy_fixture("google_groups", tmp_path)
    (copy / "model.ckpt.data-00001-of-00002").unlink()
    _expect_error(copy, "missing shard", "data-00001-of-00002")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    _expect_error(tmp_path, str(tmp_path), "no TensorFlow checkpoint")


def test_config_contradicting_tensors_names_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads((FIXTURES / "google" / "albert_config.json").read_text())
    config["hidden_size"] = 32
    config["num_attention_heads"] = 2
    path = tmp_path / "albert_config.json"
    path.write_text(json.dumps(config))
    code = convert(FIXTURES / "google", tmp_path / "out", config=path)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "hidden_size=32" in err and "bert/pooler/dense/kernel" in err
    assert not (tmp_path / "out").exists()


def test_unknown_tf_config_key_is_reported(tmp_path: Path) -> None:
    config = json.loads((FIXTURES / "google" / "albert_config.json").read_text())
    config["num_memory_blocks"] = 4
    path = tmp_path / "albert_config.json"
    path.write_text(json.dumps(config))
    assert convert(FIXTURES / "google", tmp_path / "o", config=path) == 2


def test_unknown_variable_is_an_error_naming_it() -> None:
    from albert.convert_tf import albert_config_from_tf, read_tf_config

    with TFCheckpoint(FIXTURES / "google") as ckpt:
        entries = dict(ckpt.entries)
    config = albert_config_from_tf(
        read_tf_config(FIXTURES / "google" / "albert_config.json"), "google", "cfg"
    )
    entries["output_weights"] = TensorEntry("output_weights", 1, (3, 16), 0, 0, 192, 0)
    with pytest.raises(AlbertError, match="unknown variable output_weights"):
        map_checkpoint(entries, config, "google", "cfg")
    # optimizer slots and the step counter are skipped on purpose
    entries.pop("output_weights")
    assert any(n.endswith("/adam_m") for n in entries) and "global_step" in entries
    from albert.convert_tf import expected_state

    assert {m.key for m in map_checkpoint(entries, config, "google", "cfg")} == set(expected_state(config))


# ----------------------------------------------------------------------------------------
# Chinese end to end: convert -> fine-tune -> export, no extra step


@pytest.mark.parametrize(
    "name", ["albert_zh_preln", "google"]
)  # albert_zh's and Google's albert_*_zh layouts
def test_chinese_checkpoint_converts_finetunes_and_exports(name: str, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model_dir = tmp_path / "converted"
    vocab = FIXTURES / "vocab.txt"
    assert convert(FIXTURES / name, model_dir, "--vocab", str(vocab)) == 0
    rows = [("1", "我喜欢这电影"), ("0", "这电影太差了"), ("1", "很好看"), ("0", "不好看")] * 4
    train = tmp_path / "train.csv"
    train.write_text("label,text\n" + "".join(f"{y},{t}\n" for y, t in rows), encoding="utf-8")
    tuned = tmp_path / "tuned"
    args = ["finetune", "--task", "text-classification", "--train", str(train), "--dev", str(train)]
    args += ["--model", str(model_dir), "--output", str(tuned), "--epochs", "1", "--batch-size", "4"]
    assert main([*args, "--max-seq-length", "16", "--max-steps", "2"]) == 0
    tuned_config = json.loads((tuned / "config.json").read_text())
    zh = name.startswith("albert_zh")
    assert tuned_config["embedding_projection"] == ("word_only" if zh else "after_sum")
    assert tuned_config["layer_norm_position"] == ("pre" if zh else "post")
    assert (tuned / "vocab.txt").is_file()
    assert main(["export", "--model", str(tuned), "--output", str(tmp_path / "onnx")]) == 0
    assert any(p.suffix == ".onnx" for p in (tmp_path / "onnx").iterdir())
