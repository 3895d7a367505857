"""benchmarks/augment_text.py: the augmented training set for task-specific distillation."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "augment_text.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("augment_text", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


at = load_script()

# two clusters in a 2-d embedding: {good, great, fine} along x, {film, movie} along y
VOCAB = ["[PAD]", "[UNK]", "[unused0]", "##s", "good", "great", "fine", "film", "movie", "the", "a"]
VECTORS = [[0, 0], [0, 0], [1, 0.01], [1, 0.02], [1, 0], [0.99, 0.05], [0.98, -0.05], [0, 1], [0.05, 0.99], [-1, 0], [-1, -0.1]]


def fake_teacher(path: Path) -> Path:
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    save_file({at.EMBEDDINGS: torch.tensor(VECTORS, dtype=torch.float32)}, str(path / "model.safetensors"))
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["label", "text"])
        writer.writeheader()
        writer.writerows(rows)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_neighbours_are_whole_words_by_cosine(tmp_path: Path):
    teacher = fake_teacher(tmp_path / "teacher")
    near = at.nearest_words(teacher, {"good", "film", "unknown"}, 2)
    assert near == {"good": ["great", "fine"], "film": ["movie", "great"]}  # no ##s, [unused0] or itself


def test_copies_replace_words_by_neighbours_keep_the_rest_and_are_deterministic(tmp_path: Path):
    teacher = fake_teacher(tmp_path / "teacher")
    rows = [{"label": "1", "text": "My film's good, so GOOD film!"}, {"label": "0", "text": "won't"}]
    write_csv(tmp_path / "train.csv", rows)
    common = ["--input", str(tmp_path / "train.csv"), "--teacher", str(teacher), "--copies", "5"]
    common += ["--replace-prob", "1.0", "--neighbours", "2", "--seed", "3"]
    assert at.main([*common, "--output", str(tmp_path / "a.csv")]) == 0
    assert at.main([*common, "--output", str(tmp_path / "b.csv")]) == 0
    out = read_csv(tmp_path / "a.csv")
    assert out == read_csv(tmp_path / "b.csv")
    assert out[:2] == rows  # the originals first, unchanged
    copies = out[2:]
    # distinct copies, all of the first row: "won't" (a contraction) is never changed
    assert copies and len({c["text"] for c in copies}) == len(copies) <= 5
    for copy in copies:
        assert copy["label"] == "1"
        # every word of three letters or more is replaced by a neighbour in its source's case;
        # "My" and "so" (two letters), the possessive 's and the punctuation stay
        my, film, good, so, loud, film2 = copy["text"].replace("'s ", " ").replace(",", "").rstrip("!").split()
        assert (my, so) == ("My", "so") and copy["text"].count("'s ") == 1
        assert film in {"movie", "great"} and film2 in {"movie", "great"}
        assert good in {"great", "fine"} and loud in {"GREAT", "FINE"}
        assert copy["text"].endswith("!") and ", so " in copy["text"]


def test_missing_text_column_is_one_line_and_status_2(tmp_path: Path, capsys):
    teacher = fake_teacher(tmp_path / "teacher")
    (tmp_path / "bad.csv").write_text("label,sentence\n1,x\n", encoding="utf-8")
    code = at.main(["--input", str(tmp_path / "bad.csv"), "--teacher", str(teacher), "--output", str(tmp_path / "o.csv")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no `text` column" in err
    assert not (tmp_path / "o.csv").exists()


def test_script_runs_as_a_command(tmp_path: Path):
    import subprocess

    teacher = fake_teacher(tmp_path / "teacher")
    write_csv(tmp_path / "train.csv", [{"label": "1", "text": "good film"}])
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--input", str(tmp_path / "train.csv"), "--teacher", str(teacher)]
        + ["--output", str(tmp_path / "out.csv"), "--replace-prob", "1.0", "--neighbours", "1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert [r["text"] for r in read_csv(tmp_path / "out.csv")] == ["good film", "great movie"]


def test_conll_copies_keep_tokens_and_tags_aligned(tmp_path: Path):
    teacher = fake_teacher(tmp_path / "teacher")
    (tmp_path / "train.conll").write_text("My\tO\ngood\tO\nfilm\tB-product\n\nso\tO\n", encoding="utf-8")
    common = ["--input", str(tmp_path / "train.conll"), "--teacher", str(teacher), "--copies", "3"]
    assert at.main([*common, "--output", str(tmp_path / "out.conll"), "--replace-prob", "1.0", "--neighbours", "1"]) == 0
    sentences = (tmp_path / "out.conll").read_text(encoding="utf-8").strip().split("\n\n")
    # the two originals, then one distinct copy of the first ("so" has two letters: never changed)
    assert sentences == ["My\tO\ngood\tO\nfilm\tB-product", "so\tO", "My\tO\ngreat\tO\nmovie\tB-product"]


def test_missing_input_or_teacher_files_are_one_line_and_status_2(tmp_path: Path, capsys):
    teacher = fake_teacher(tmp_path / "teacher")
    write_csv(tmp_path / "train.csv", [{"label": "1", "text": "good film"}])
    out = str(tmp_path / "o.csv")
    assert at.main(["--input", str(tmp_path / "nope.csv"), "--teacher", str(teacher), "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input file" in err and "nope.csv does not exist" in err
    assert at.main(["--input", str(tmp_path / "train.csv"), "--teacher", str(tmp_path), "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "teacher vocab.txt" in err
    (teacher / "model.safetensors").unlink()
    assert at.main(["--input", str(tmp_path / "train.csv"), "--teacher", str(teacher), "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model.safetensors" in err
    assert not (tmp_path / "o.csv").exists()
