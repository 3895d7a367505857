"""Every CLI command against a matrix of bad inputs: exit status 2, one line on stderr naming the
problem (and the fix), no traceback, and no file in the tree changed, added or left half-written.

A row is one line in `ROWS`: an id, the command line (``{name}`` is a path from the `world`
fixture) and a regular expression the error line must match. Rows run in-process through
`albert.cli.main`; the rows in `SUBPROCESS_ROWS` also run as ``python -m albert`` to see the
real exit status and stderr of a fresh interpreter.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
import test_finetune_fixtures as fx
from test_finetune_fixtures import one_thread, tiny_config, tokenizer, tokenizer_dir  # noqa: F401

from albert.cli import main


@dataclass(frozen=True)
class Row:
    id: str
    argv: str  # split like a shell command; {name} is replaced by world[name]
    message: str  # regular expression the one stderr line must match
    env: tuple[tuple[str, str], ...] = ()  # environment variables set while the row runs


PREDICT = "predict --task text-classification"
FINETUNE = "finetune --task text-classification --train {train} --dev {dev} --tokenizer {tok}"
TOKENIZER = "tokenizer train --input {corpus} --vocab-size 60"
DATA = "data --tokenizer {tok} --input {corpus}"
PRETRAIN = "pretrain --data {data} --model {tiny_config} --output {new}"
CHECKPOINTS = {  # the model directory -> what the message says
    "missing": "no directory|does not exist",
    "empty_dir": "has no config.json",
    "corrupt": "not a readable safetensors file",
    "truncated": "not a readable safetensors file",
    "evil_pickle": "can be loaded safely",
    "wrong_shape": "does not fit",
}

# a table, one row per line: kept out of the formatter
# fmt: off
ROWS = [
    # checkpoints that cannot be used, for every command that loads one
    *[Row(f"predict-{k}", f"{PREDICT} --model {{{k}}} hi", m) for k, m in CHECKPOINTS.items()],
    *[Row(f"evaluate-{k}", f"evaluate --model {{{k}}} --data {{dev}} --task text-classification", m)
      for k, m in CHECKPOINTS.items()],
    *[Row(f"export-{k}", f"export --model {{{k}}} --output {{new}}/m.onnx", m) for k, m in CHECKPOINTS.items()],
    *[Row(f"finetune-{k}", f"{FINETUNE} --model {{{k}}} --output {{new}}", m) for k, m in CHECKPOINTS.items()],
    # another tokenizer than the model's, even a smaller one
    Row("predict-other-tokenizer", f"{PREDICT} --model {{classifier}} --tokenizer {{other_tok}} hi", "not the tokenizer"),
    Row("evaluate-other-tokenizer", "evaluate --model {classifier} --data {dev} --tokenizer {other_tok}", "not the tokenizer"),
    Row("finetune-other-tokenizer", "finetune --task text-classification --train {train} --dev {dev} --model {classifier} "
        "--tokenizer {other_tok} --output {new}", "not the tokenizer"),
    Row("export-other-tokenizer", "export --model {classifier} --tokenizer {other_tok} --output {new}/m.onnx", "not the tokenizer"),
    # a tokenizer with more pieces than the model's vocabulary
    Row("predict-vocab-too-small", f"{PREDICT} --model {{small_vocab}} hi", "pieces but the model's vocab_size is 200"),
    Row("evaluate-vocab-too-small", "evaluate --model {small_vocab} --data {dev}", "pieces but the model's vocab_size is 200"),
    Row("export-vocab-too-small", "export --model {small_vocab} --output {new}/m.onnx", "tokens but the model's vocab_size is 200"),
    # a task the model's head was not trained for
    Row("predict-wrong-head", "predict --task token-classification --model {classifier} hi", "is a text-classification model"),
    Row("predict-fill-mask-on-classifier", "predict --task fill-mask --model {classifier} hi", "use --task text-classification"),
    Row("evaluate-wrong-head", "evaluate --model {classifier} --data {conll} --task token-classification",
        "is a text-classification model"),
    # inputs: missing, empty, not UTF-8, not text, malformed
    Row("predict-missing-input", f"{PREDICT} --model {{classifier}} --input {{missing}}", "input file not found"),
    Row("predict-latin1", f"{PREDICT} --model {{classifier}} --input {{latin1_txt}}", "not valid UTF-8"),
    Row("predict-bad-jsonl", f"{PREDICT} --model {{classifier}} --input {{braces}} --input-format jsonl", "line 1: not valid JSON"),
    Row("predict-jsonl-number", f"{PREDICT} --model {{classifier}} --input {{numbers_jsonl}}", "expected a JSON object"),
    Row("predict-qa-half", "predict --task question-answering --model {classifier} --question q", "both --question and --context"),
    Row("finetune-short-row", f"{FINETUNE} --model {{tiny_config}} --output {{new}} --train {{short_row}}",
        r"line 3: the row has 1 field\(s\) but the header has 2"),
    Row("finetune-long-row", f"{FINETUNE} --model {{tiny_config}} --output {{new}} --train {{long_row}}",
        r"line 2: the row has 3 field\(s\)"),
    Row("finetune-empty-train", f"{FINETUNE} --model {{tiny_config}} --output {{new}} --train {{empty_csv}}", "is empty"),
    Row("finetune-latin1-train", f"{FINETUNE} --model {{tiny_config}} --output {{new}} --train {{latin1_csv}}", "UTF-8"),
    Row("finetune-missing-train", f"{FINETUNE} --model {{tiny_config}} --output {{new}} --train {{missing}}", "not found|does not exist|no such"),
    Row("evaluate-empty-data", "evaluate --model {classifier} --data {empty_csv}", "is empty"),
    Row("tokenizer-binary", "tokenizer train --input {binary} --vocab-size 60 --output {new}", "does not look like UTF-8 text"),
    Row("tokenizer-empty", "tokenizer train --input {empty_txt} --vocab-size 60 --output {new}", "no text"),
    Row("tokenizer-missing", "tokenizer train --input {missing} --vocab-size 60 --output {new}", "does not exist"),
    Row("data-binary", "data --tokenizer {tok} --input {binary} --output {new}", "does not look like UTF-8 text"),
    Row("data-empty", "data --tokenizer {tok} --input {empty_txt} --output {new}", "no text found"),
    Row("plot-missing-run", "plot {missing}", "no metrics.jsonl"),
    # outputs that cannot be written: checked before any work
    Row("export-proc", "export --model {classifier} --output /proc/albert-x.onnx", "cannot write to /proc"),
    Row("export-under-file", "export --model {classifier} --output {afile}/x.onnx", "is a file, not a directory"),
    Row("finetune-under-file", f"{FINETUNE} --model {{tiny_config}} --output {{afile}}/ft", "is a file, not a directory"),
    Row("finetune-onto-model", "finetune --task text-classification --train {train} --dev {dev} --model {classifier} "
        "--output {classifier}", "is the --model directory.*--overwrite"),
    Row("tokenizer-under-file", f"{TOKENIZER} --output {{afile}}/tok", "is a file, not a directory"),
    Row("tokenizer-proc", f"{TOKENIZER} --output /proc/albert-tok", "cannot write to /proc"),
    Row("data-under-file", f"{DATA} --output {{afile}}/d", "is a file, not a directory"),
    Row("data-foreign-files", f"{DATA} --output {{data}}", r"did not write \(notes.txt\)"),
    Row("data-non-data-dir", f"{DATA} --output {{classifier}}", "does not hold pretraining data"),
    Row("pretrain-under-file", "pretrain --data {data} --model {tiny_config} --output {afile}/run", "is a file, not a directory"),
    Row("predict-output-under-file", f"{PREDICT} --model {{classifier}} --output {{afile}}/p.jsonl hi", "is a file, not a directory"),
    Row("predict-output-proc", f"{PREDICT} --model {{classifier}} --output /proc/albert-p.jsonl hi", "cannot write to /proc"),
    Row("predict-output-is-dir", f"{PREDICT} --model {{classifier}} --output {{tok}} hi", "is a directory"),
    Row("plot-under-file", "plot {run} --output {afile}/c.png", "is a file, not a directory"),
    Row("convert-bert-under-file", "convert-bert --teacher {classifier} --output {afile}/c", "is a file, not a directory"),
    # bad numbers, every numeric option
    *[Row(f"finetune{o.replace(' ', '')}", f"{FINETUNE} --model {{tiny_config}} --output {{new}} {o}", m) for o, m in [
        ("--epochs 0", "--epochs"), ("--batch-size 0", "--batch-size"), ("--eval-batch-size -1", "--batch-size"),
        ("--learning-rate 0", "--learning-rate"), ("--learning-rate nan", "--learning-rate"),
        ("--learning-rate inf", "--learning-rate"), ("--warmup-ratio 1", "--warmup-ratio"),
        ("--weight-decay -1", "--weight-decay"), ("--seed -1", "--seed"), ("--patience 0", "--patience"),
        ("--layerwise-lr-decay 0", "--layerwise-lr-decay"), ("--max-steps 0", "--max-steps"),
        ("--logging-steps 0", "--logging-steps"), ("--distill-alpha 2", "--distill-alpha"),
        ("--distill-temperature 0", "--distill-temperature"), ("--max-seq-length 4", "--max-seq-length"),
        ("--doc-stride 0", "--doc-stride"), ("--max-query-length 0", "--max-query-length"),
        ("--n-best 0", "--n-best"), ("--max-answer-length 0", "--max-answer-length"),
        ("--null-score-diff-threshold nan", "--null-score-diff-threshold"),
        ("--epochs x", "invalid int value"), ("--learning-rate 1e", "invalid float value"),
    ]],
    *[Row(f"predict{o.replace(' ', '')}", f"{PREDICT} --model {{classifier}} {o} hi", m) for o, m in [
        ("--batch-size 0", "batch size must be at least 1"), ("--max-seq-length 2", "--max-seq-length"),
        ("--top-k -1", "--top-k"), ("--batch-size 1.5", "invalid int value"),
    ]],
    Row("predict-fill-mask-top-k-0", "predict --task fill-mask --model {pretrained} --top-k 0 [MASK]", "--top-k"),
    Row("evaluate-batch-size-0", "evaluate --model {classifier} --data {dev} --batch-size 0", "--batch-size"),
    Row("evaluate-max-seq-length-0", "evaluate --model {classifier} --data {dev} --max-seq-length 0", "--max-seq-length"),
    *[Row(f"tokenizer{o.replace(' ', '')}", f"tokenizer train --input {{corpus}} --output {{new}} {o}", m) for o, m in [
        ("--vocab-size 3", "too small"), ("--vocab-size 60 --character-coverage 0", "character_coverage"),
        ("--vocab-size 60 --character-coverage nan", "character_coverage"),
        ("--vocab-size 60 --input-sentence-size -1", "input_sentence_size"),
        ("--vocab-size 60 --max-piece-length 0", "max_piece_length"),
    ]],
    *[Row(f"data{o.replace(' ', '')}", f"{DATA} --output {{new}} {o}", m) for o, m in [
        ("--max-seq-length 4", "max_seq_length"), ("--max-predictions-per-seq 0", "max_predictions_per_seq"),
        ("--masked-lm-prob 1", "masked_lm_prob"), ("--masked-lm-prob nan", "masked_lm_prob"), ("--ngram 0", "ngram"),
        ("--dupe-factor 0", "dupe_factor"), ("--short-seq-prob 2", "short_seq_prob"), ("--seed -1", "seed"),
        ("--workers 0", "workers"),
    ]],
    *[Row(f"pretrain{o.replace(' ', '')}", f"{PRETRAIN} {o}", m) for o, m in [
        ("--max-steps 0", "--max-steps"), ("--batch-size 0", "--batch-size"), ("--grad-accum 0", "--grad-accum"),
        ("--save-every 0", "--save-every"), ("--keep 0", "--keep"), ("--log-every 0", "--log-every"),
        ("--eval-batches 0", "--eval-batches"), ("--learning-rate 0", "--learning-rate"),
        ("--eval-every -1", "--eval-every"), ("--num-workers -1", "--num-workers"),
        ("--eval-fraction 1", "--eval-fraction"), ("--max-nan-steps -1", "--max-nan-steps"),
    ]],
    Row("convert-bert-missing-teacher", "convert-bert --teacher {missing} --output {new}", "."),
    # what --model names
    Row("finetune-preset-typo", f"{FINETUNE} --model albert-tinyy --output {{new}}", "did you mean albert-tiny"),
    Row("pretrain-preset-typo", "pretrain --data {data} --model albert-tinyy --output {new}", "did you mean albert-tiny"),
    Row("finetune-config-wrong-type", f"{FINETUNE} --model {{str_config}} --output {{new}}", "hidden_size='312' is not an integer"),
    Row("finetune-data-as-model", f"{FINETUNE} --model {{data}} --output {{new}}", "is pretraining data written by `albert data`"),
    Row("predict-hidden-size-mismatch", f"{PREDICT} --model {{wrong_hidden}} hi", "the weights have hidden_size=.* but the config says"),
    # --precision bf16 on a CPU without native bf16 (forced): says so and offers fp32, for every command with the flag
    *[Row(f"{command.split()[0]}-bf16-without-native-bf16", f"{command} --precision bf16",
          r"this CPU has no native bf16 .*--precision fp32", env=(("ALBERT_NATIVE_BF16", "0"),)) for command in [
        f"{PREDICT} --model {{classifier}} hi", "evaluate --model {classifier} --data {dev}",
        f"{FINETUNE} --model {{tiny_config}} --output {{new}}", PRETRAIN,
        "distill --teacher {classifier} --student {pretrained} --data {corpus} --output {new}",
        "serve --model {classifier}",
    ]],
    Row("serve-bf16-int8", "serve --model {classifier} --int8 --precision bf16", "drop one of them"),
    Row("serve-bf16-onnx", "serve --model {classifier} --runtime onnx --precision bf16", "exported in"),
]
# fmt: on
SUBPROCESS_ROWS = [
    "predict-missing",
    "export-proc",
    "data-binary",
    "finetune-short-row",
    "predict--batch-size1.5",
    "serve-bf16-without-native-bf16",
]


# ----------------------------------------------------------------------------------------
# the world: every file the rows point to, built once


def _tokenizer_from(text: str, folder: Path, vocab_size: int) -> Path:
    from albert.tokenizer_train import train_tokenizer

    folder.mkdir()
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    return train_tokenizer([folder / "corpus.txt"], vocab_size, folder / "tok", num_threads=1)


def _evil_pickle(path: Path, marker: Path) -> None:
    import torch

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Evil()}, path)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path, tiny_config: Path) -> dict[str, Any]:
    from albert.data.build import build_pretraining_data

    root = tmp_path_factory.mktemp("bad_inputs")
    w: dict[str, Any] = {"root": root, "missing": str(root / "missing"), "new": str(root / "new")}
    shutil.copytree(tokenizer_dir, root / "tok")
    shutil.copy(tiny_config, root / "tiny_config.json")
    w["tok"], w["tiny_config"] = root / "tok", root / "tiny_config.json"
    with gzip.open(Path(str(resources.files("albert") / "resources" / "corpus_en.txt.gz")), "rt") as f:
        other_text = "".join(line for i, line in itertools.islice(enumerate(f), 1500) if i >= 1000)
    other = _tokenizer_from(other_text, root / "other", 300)  # another vocabulary, smaller than the model's
    w["other_tok"] = other
    w["classifier"] = fx.save_tiny(
        "AlbertForSequenceClassification",
        tiny_config,
        tokenizer_dir,
        root / "classifier",
        id2label={0: "0", 1: "1"},
    )
    w["pretrained"] = fx.save_tiny("AlbertForPreTraining", tiny_config, tokenizer_dir, root / "pretrained")
    w["small_vocab"] = fx.save_tiny(
        "AlbertForSequenceClassification", tiny_config, tokenizer_dir, root / "small_vocab", vocab_size=200
    )
    (root / "empty_dir").mkdir()
    w["empty_dir"] = root / "empty_dir"
    for name in ("corrupt", "truncated", "evil_pickle", "wrong_shape"):
        shutil.copytree(w["classifier"], root / name)
        w[name] = root / name
    weights = (root / "truncated" / "model.safetensors").read_bytes()
    (root / "truncated" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    (root / "corrupt" / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    (root / "evil_pickle" / "model.safetensors").unlink()
    _evil_pickle(root / "evil_pickle" / "pytorch_model.bin", root / "pwned")
    config = json.loads((root / "wrong_shape" / "config.json").read_text())
    (root / "wrong_shape" / "config.json").write_text(json.dumps({**config, "intermediate_size": 48}))
    shutil.copytree(w["classifier"], root / "wrong_hidden")
    w["wrong_hidden"] = root / "wrong_hidden"
    (root / "wrong_hidden" / "config.json").write_text(json.dumps({**config, "hidden_size": 2 * config["hidden_size"]}))
    (root / "str_config.json").write_text(json.dumps({**config, "hidden_size": "312"}))
    w["str_config"] = root / "str_config.json"

    w["train"] = fx.write_csv(root / "train.csv", ["label", "text"], fx.sentiment_rows(16, 0))
    w["dev"] = fx.write_csv(root / "dev.csv", ["label", "text"], fx.sentiment_rows(8, 1))
    w["conll"] = fx.write_conll(root / "dev.conll", fx.NER_SENTENCES)
    (root / "short_row.csv").write_text("label,text\n1,good film\n0\n", encoding="utf-8")
    (root / "long_row.csv").write_text("label,text\n1,good, film\n", encoding="utf-8")
    (root / "empty.csv").write_text("", encoding="utf-8")
    (root / "empty.txt").write_text("", encoding="utf-8")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (root / "latin1.csv").write_bytes("label,text\n1,caf\xe9\n".encode("latin-1"))
    (root / "braces").write_text("{not json\n", encoding="utf-8")
    (root / "numbers.jsonl").write_text("5\n", encoding="utf-8")
    (root / "binary.bin").write_bytes(bytes(range(256)) * 400)
    (root / "afile.txt").write_text("I am a file\n", encoding="utf-8")
    files = {
        "short_row": "short_row.csv",
        "long_row": "long_row.csv",
        "empty_csv": "empty.csv",
        "empty_txt": "empty.txt",
        "latin1_txt": "latin1.txt",
        "latin1_csv": "latin1.csv",
        "braces": "braces",
        "numbers_jsonl": "numbers.jsonl",
        "binary": "binary.bin",
        "afile": "afile.txt",
    }
    w.update({name: root / file for name, file in files.items()})
    sentences = "\n\n".join(
        f"Emma walked to town number {i}. She bought some bread. Then she went home." for i in range(40)
    )
    (root / "corpus.txt").write_text(sentences + "\n", encoding="utf-8")
    w["corpus"] = root / "corpus.txt"
    w["data"] = root / "data"
    build_pretraining_data(
        tokenizer_dir, [w["corpus"]], w["data"], max_seq_length=32, dupe_factor=1, progress=False
    )
    (w["data"] / "notes.txt").write_text("my notes, not albert's\n", encoding="utf-8")
    (root / "run").mkdir()
    (root / "run" / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n", encoding="utf-8")
    w["run"] = root / "run"
    return {k: str(v) for k, v in w.items()}


def snapshot(root: str | Path) -> dict[str, str]:
    """Every path under `root` -> a hash of its content ("dir" for directories)."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        if "__pycache__" in path.parts:
            continue
        out[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_in_process(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors
        return int(e.code or 0)


def assert_one_line_error(status: int, stderr: str, message: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert re.search(message, lines[0]), lines[0]
    assert re.match(r"albert[\w\- ]*: (error|interrupted)", lines[0]), lines[0]


def argv_for(row: Row, world: dict[str, Any]) -> list[str]:
    return [token.format(**world) for token in shlex.split(row.argv)]


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.id)
def test_bad_input_is_one_line_and_changes_nothing(
    row: Row, world: dict[str, Any], capsys, monkeypatch
) -> None:
    for name, value in row.env:
        monkeypatch.setenv(name, value)
    before = snapshot(world["root"])
    status = run_in_process(argv_for(row, world))
    captured = capsys.readouterr()
    assert_one_line_error(status, captured.err, row.message)
    assert snapshot(world["root"]) == before
    assert not Path(world["root"], "pwned").exists()  # the malicious pickle never ran


@pytest.mark.parametrize("row_id", SUBPROCESS_ROWS)
def test_bad_input_in_a_fresh_interpreter(row_id: str, world: dict[str, Any]) -> None:
    row = next(r for r in ROWS if r.id == row_id)
    before = snapshot(world["root"])
    done = subprocess.run(
        [sys.executable, "-m", "albert", *argv_for(row, world)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **dict(row.env)},
    )
    assert_one_line_error(done.returncode, done.stderr, row.message)
    assert snapshot(world["root"]) == before
