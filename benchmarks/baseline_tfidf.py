"""TF-IDF + logistic regression on the shared sentiment sets: the yardstick docs/results.md and docs/word_order.md compare
fine-tuned ALBERTs against, measured here rather than quoted.

English: word unigrams (lower-cased); Chinese: character 1-3-grams (no word segmenter needed).
The regularisation C is chosen by 5-fold cross-validation on the training split only; dev is
scored once.

    .venv/bin/pip install -e '.[bench]'     # scikit-learn: a benchmark-only dependency
    .venv/bin/python benchmarks/baseline_tfidf.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import warnings
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "rotten_tomatoes (en)": ("classify/en/rotten_tomatoes", dict(analyzer="word", ngram_range=(1, 1))),
    "reviews_sentiment (zh)": ("classify/zh/reviews_sentiment", dict(analyzer="char", ngram_range=(1, 3))),
}


def read_split(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


CS = [0.5, 1, 2, 4, 8, 16]  # the regularisation grid
CV_FOLDS = 5


def fit_predict(
    train_x: list[str],
    train_y: list[str],
    test_x: list[str],
    vectoriser_options: dict,
    cs: list[float] = CS,
    cv: int = CV_FOLDS,
) -> tuple[list[str], float]:
    """Predicted labels of `test_x` and the C that cross-validation on the training rows chose
    (also the label-efficiency benchmark's TF-IDF start, on its subsamples)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    vectoriser = TfidfVectorizer(sublinear_tf=True, min_df=1, **vectoriser_options)
    classifier = LogisticRegressionCV(Cs=cs, cv=cv, max_iter=2000)
    classifier.fit(vectoriser.fit_transform(train_x), train_y)
    return list(classifier.predict(vectoriser.transform(test_x))), float(classifier.C_[0])


def fit(folder: Path, vectoriser_options: dict) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    train_x, train_y = read_split(folder / "train.csv")
    dev_x, dev_y = read_split(folder / "dev.csv")
    predicted, c = fit_predict(train_x, train_y, dev_x, vectoriser_options)
    return {
        "accuracy": round(float(accuracy_score(dev_y, predicted)), 4),
        "macro_f1": round(float(f1_score(dev_y, predicted, average="macro")), 4),
        "C": c,
        "train": len(train_x),
        "dev": len(dev_x),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise SystemExit("this baseline needs scikit-learn: .venv/bin/pip install scikit-learn") from None
    warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's API-transition notices
    rows = []
    for name, (relative, options) in SETS.items():
        rows.append({"set": name, **fit(args.data / relative, options)})
        print(json.dumps(rows[-1]))
    from machine import write_results

    write_results("baseline_tfidf", {"rows": rows})


if __name__ == "__main__":
    main()
