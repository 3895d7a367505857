"""Augment a training set for task-specific distillation (TinyBERT-style): CSV or CoNLL.

Task-specific distillation (`albert finetune --teacher`) lets a student learn the fine-tuned
teacher's soft predictions, but on the task's own training set the student already fits the
labels, so the soft targets add little (docs/distillation.md). TinyBERT (Jiao et al. 2020) shows
the gain comes from running the teacher on many *more* in-domain inputs than were labelled. This
script makes those inputs: each copy of a review (CSV `label,text`) or of a sentence (CoNLL
`token<TAB>tag`, one token at a time, its tag kept) replaces each word, with probability
`--replace-prob`, by one of its `--neighbours` nearest words in the teacher's own input word
embeddings (cosine; a GloVe-like table that needs no download). A replacement may change the
sentiment ("good" -> "bad"): that is intended, the teacher labels every copy, so fine-tune with
`--distill-alpha 1` (the label or tags of a copy are its source's and are then ignored).

    python benchmarks/augment_text.py --input train.csv --teacher TEACHER_DIR --output aug.csv \
        --copies 4 --replace-prob 0.4 --neighbours 15 --seed 0

Words are replaced only when they have at least three letters and are one whole alphabetic
WordPiece of the teacher's vocabulary (a possessive's stem is replaced and its 's kept; contractions
are left alone); the rest of the text (punctuation, spacing, other words) is kept as it is. The
output holds every original example first, then the copies that differ from their source; it is
deterministic per seed.
"""

from __future__ import annotations

import argparse
import csv
import random
import re
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from albert.checkpoint import atomic_write

WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)?")  # "film's" and "won't" are one word each
MIN_LETTERS = 3  # "a", "of", "by"...: swapping these garbles the sentence more than it varies it
EMBEDDINGS = "embeddings.word_embeddings.weight"


def whole_words(vocab: list[str]) -> list[int]:
    """Vocabulary ids of whole alphabetic words of MIN_LETTERS or more: no `##` pieces, no
    [special] or [unused] tokens, no single letters (the neighbours of "the" include "s")."""
    return [i for i, p in enumerate(vocab) if p.isascii() and p.isalpha() and len(p) >= MIN_LETTERS]


def nearest_words(teacher: Path, words: set[str], k: int) -> dict[str, list[str]]:
    """For each of `words` found whole in the teacher's vocabulary, its k nearest whole words by
    cosine similarity of the teacher's input word embeddings (itself excluded)."""
    vocab = (teacher / "vocab.txt").read_text(encoding="utf-8").splitlines()
    with safe_open(str(teacher / "model.safetensors"), "pt") as f:
        table = f.get_tensor(EMBEDDINGS)
    ids = whole_words(vocab)
    row_of = {vocab[i]: row for row, i in enumerate(ids)}
    unit = torch.nn.functional.normalize(table[ids].float(), dim=1)
    asked = sorted(w for w in words if w in row_of)
    if not asked:
        return {}
    similarity = unit[[row_of[w] for w in asked]] @ unit.T
    similarity[torch.arange(len(asked)), [row_of[w] for w in asked]] = -2.0  # never itself
    top = similarity.topk(k, dim=1).indices.tolist()
    return {word: [vocab[ids[r]] for r in rows] for word, rows in zip(asked, top, strict=True)}


def with_case_of(source: str, word: str) -> str:
    if source.isupper() and len(source) > 1:
        return word.upper()
    return word.capitalize() if source[0].isupper() else word


def augment(text: str, neighbours: dict[str, list[str]], replace_prob: float, rng: random.Random) -> str:
    def replace(match: re.Match[str]) -> str:
        source, suffix = match.group(0), ""
        if "'" in source or "’" in source:  # a possessive keeps its 's; a contraction is kept whole
            source, _, rest = source.replace("’", "'").partition("'")
            if rest.lower() != "s":
                return match.group(0)
            suffix = match.group(0)[len(source) :]
        options = neighbours.get(source.lower()) if len(source) >= MIN_LETTERS else None
        if not options or rng.random() >= replace_prob:
            return match.group(0)
        return with_case_of(source, rng.choice(options)) + suffix

    return WORD.sub(replace, text)


Example = Any  # a CSV row (dict with a "text" field) or a CoNLL sentence (list of (token, tag))


def augment_example(example: Example, neighbours: dict[str, list[str]], replace_prob: float, rng: random.Random) -> Example:
    """One copy: a CSV row's text, or each token of a CoNLL sentence (its tag kept), augmented."""
    if isinstance(example, dict):
        return {**example, "text": augment(example["text"], neighbours, replace_prob, rng)}
    return [(augment(token, neighbours, replace_prob, rng), tag) for token, tag in example]


def text_of(example: Example) -> str:
    return example["text"] if isinstance(example, dict) else " ".join(token for token, _ in example)


def augment_rows(
    examples: list[Example], neighbours: dict[str, list[str]], copies: int, replace_prob: float, seed: int
) -> list[Example]:
    """The original examples, then up to `copies` augmented copies of each (those equal to their
    source or to an earlier copy are dropped)."""
    rng = random.Random(seed)
    out, seen = list(examples), {text_of(example) for example in examples}
    for example in examples:
        for _ in range(copies):
            copy = augment_example(example, neighbours, replace_prob, rng)
            if text_of(copy) not in seen:
                seen.add(text_of(copy))
                out.append(copy)
    return out


def read_examples(path: Path) -> tuple[list[str] | None, list[Example]]:
    """(CSV columns, rows) for a .csv file; (None, sentences) for CoNLL (`token<TAB>tag`, blank
    line between sentences)."""
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    sentences: list[Example] = [[]]
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if sentences[-1]:
                sentences.append([])
            continue
        token, _, tag = line.rpartition("\t")
        sentences[-1].append((token, tag) if token else (tag, ""))
    return None, [s for s in sentences if s]


def write_examples(path: Path, fields: list[str] | None, examples: list[Example]) -> None:
    """Atomically (albert's `atomic_write`), so an interrupted run leaves no half file."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8", newline="") as f:
            if fields is not None:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(examples)
            else:
                f.write("\n".join("\n".join(f"{t}\t{g}" if g else t for t, g in s) + "\n" for s in examples))

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def fail(message: str) -> int:
    print(f"augment_text: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="CSV with a `text` column, or CoNLL (token<TAB>tag)")
    parser.add_argument("--teacher", type=Path, required=True, help="BERT directory: vocab.txt, model.safetensors")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=4, help="augmented copies per example (default 4)")
    parser.add_argument("--replace-prob", type=float, default=0.4, help="per-word replacement probability")
    parser.add_argument("--neighbours", type=int, default=15, help="nearest words to choose from (default 15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path, what in ((args.input, "input file"), (args.teacher / "vocab.txt", "teacher vocab.txt")):
        if not path.is_file():
            return fail(f"{what} {path} does not exist")
    if not (args.teacher / "model.safetensors").is_file():
        return fail(f"{args.teacher} has no model.safetensors (the word table is read from it)")
    fields, examples = read_examples(args.input)
    if fields is not None and "text" not in fields:
        return fail(f"{args.input} has no `text` column (columns: {fields})")
    words = {w.lower() for example in examples for w in re.findall(r"[A-Za-z]+", text_of(example))}
    neighbours = nearest_words(args.teacher, words, args.neighbours)
    out = augment_rows(examples, neighbours, args.copies, args.replace_prob, args.seed)
    write_examples(args.output, fields, out)
    print(f"{len(examples)} examples + {len(out) - len(examples)} augmented copies -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
