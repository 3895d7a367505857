"""Rebuild the bundled labelled task (`task_train.csv`, `task_dev.csv`) from public-domain text.

    python albert/resources/task_make.py ../shared/data/pretrain/en

"Which book is this passage from?": Jane Austen's novels (label `austen`), the King James Bible
(`kjv`) or Natsume Soseki's *Botchan* in Yasotaro Morri's 1918 translation (`botchan`), all in
the public domain. Passages are 1-3 consecutive sentences of 60-220 characters, so length gives
little away. No passage shares a paragraph or verse with the bundled pretraining corpus
(`corpus_en.txt.gz`): Austen paragraphs and KJV verses that occur there are skipped, so
fine-tuning after pretraining on the default corpus measures transfer, not recall.
Deterministic: the same inputs always give the same files.
"""

from __future__ import annotations

import csv
import gzip
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_LABEL = {"train": 800, "dev": 200}
MIN_CHARS, MAX_CHARS = 60, 220
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def austen_units(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def kjv_units(path: Path) -> list[str]:
    return austen_units(path)  # one verse per line


def botchan_units(path: Path) -> list[str]:
    """The novel's text (Gutenberg header, translator's preface and licence removed), re-joined
    from its hard-wrapped lines."""
    text = path.read_text(encoding="utf-8-sig")
    body = text[text.index("CHAPTER I") : text.index("*** END OF THIS PROJECT")]
    lines = [line.strip() for line in body.splitlines() if line.strip() and not line.startswith("CHAPTER")]
    return [" ".join(lines)]


def passages(units: list[str], excluded: set[str], rng: random.Random) -> list[str]:
    """Consecutive sentences of one paragraph/verse packed up to a random target length in
    MIN_CHARS..MAX_CHARS (sentences longer than MAX_CHARS are left out)."""
    out = []
    for unit in units:
        if unit in excluded:
            continue
        current, target = "", rng.randint(MIN_CHARS, MAX_CHARS)
        for sentence in SENTENCE_END.split(unit):
            candidate = f"{current} {sentence}".strip()
            if len(candidate) > MAX_CHARS:
                if len(current) >= MIN_CHARS:
                    out.append(current)
                current = sentence if len(sentence) <= MAX_CHARS else ""
            else:
                current = candidate
            if len(current) >= target:
                out.append(current)
                current, target = "", rng.randint(MIN_CHARS, MAX_CHARS)
        if len(current) >= MIN_CHARS:
            out.append(current)
    return out


def main(source: Path) -> None:
    with gzip.open(HERE / "corpus_en.txt.gz", "rt", encoding="utf-8") as f:
        corpus = {line.strip() for line in f if line.strip()}
    books = {
        "austen": austen_units(source / "austen.txt"),
        "kjv": kjv_units(source / "kjv.txt"),
        "botchan": botchan_units(source / "botchan.txt"),
    }
    rng = random.Random(20191226)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "dev": []}
    for label, units in books.items():
        pool = list(dict.fromkeys(passages(units, corpus, rng)))  # no duplicates across splits
        rng.shuffle(pool)
        start = 0
        for split, count in PER_LABEL.items():
            splits[split].extend((label, text) for text in pool[start : start + count])
            start += count
    for split, rows in splits.items():
        rng.shuffle(rows)
        with open(HERE / f"task_{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["label", "text"])
            writer.writerows(rows)
        print(f"task_{split}.csv: {len(rows)} passages")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[2] / "shared" / "data" / "pretrain" / "en")
