"""Token classification (NER, POS): CoNLL files -> AlbertForTokenClassification.

CoNLL: one token per line with its columns separated by a tab (or, if the line has no tab, by
spaces), a blank line between sentences, ``-DOCSTART-`` lines skipped. Words are tokenised with
``is_split_into_words=True``; a word's first sub-word carries its tag and the other pieces get
-100 (ignored by the loss), and predictions are read back from first sub-words, so evaluation and
prediction are per word whatever the tokenizer does. Character-level data (Chinese NER: one
character per line) is detected and recorded, so prediction splits raw text into characters too.
Characters are then encoded as the pieces they are *inside* a word ("北" rather than "▁" + "北"):
with `is_split_into_words` a SentencePiece tokenizer would mark every character as a word start,
doubling the sequence with "▁" pieces and feeding a pretrained model a text it has never seen.
Tag schemes (BIO/IOB2, IOB1, IOBES) need no configuration: entities are read with conlleval's rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from albert import metrics
from albert.errors import AlbertError
from albert.postprocess import first_subword
from albert.tasks.common import IGNORE_INDEX, Feature, Task, read_text


@dataclass
class TokenExample:
    words: list[str]
    tags: list[str]
    line: int  # line number of the sentence's first token


def conll_columns(line: str) -> list[str]:
    """A CoNLL line's columns: tab-separated, or space-separated if the line has no tab."""
    return line.split("\t") if "\t" in line else line.split()


def _column(columns: list[str], index: int) -> str | None:
    return columns[index] if -len(columns) <= index < len(columns) else None


WORD_START = "\u2581"  # SentencePiece's word-start marker


def is_char_level(words: list[str]) -> bool:
    """Character-level data (Chinese NER: one character per line): 95 % of the tokens are one
    character long. The one rule for fine-tuning and for pretraining data built from CoNLL files."""
    return sum(len(w) == 1 for w in words) >= 0.95 * len(words)


def character_encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    """The ids of one character as it appears inside a word (memoised): its pieces without a
    leading word-start marker; [UNK] if normalisation leaves nothing."""
    vocab = tokenizer.get_vocab()
    cache: dict[str, list[int]] = {}

    def encode(char: str) -> list[int]:
        if char not in cache:
            pieces = tokenizer.tokenize(char)
            ids = tokenizer.encode(char, add_special_tokens=False)
            if pieces and pieces[0] == WORD_START:
                ids = ids[1:]
            elif pieces and pieces[0].startswith(WORD_START) and pieces[0][1:] in vocab:
                ids = [vocab[pieces[0][1:]], *ids[1:]]
            cache[char] = ids or [tokenizer.unk_token_id]
        return cache[char]

    return encode


def encode_words(
    tokenizer: Any, sentences: list[list[str]], char_level: bool, max_length: int
) -> list[Feature]:
    """Features (input_ids, token_type_ids, word_ids) of pre-split sentences, truncated to
    `max_length` tokens; character-level sentences get one in-word encoding per character."""
    if not char_level:
        encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
        return [
            {"input_ids": ids, "token_type_ids": types, "word_ids": encoded.word_ids(i)}
            for i, (ids, types) in enumerate(
                zip(encoded["input_ids"], encoded["token_type_ids"], strict=True)
            )
        ]
    encode = character_encoder(tokenizer)
    features = []
    for chars in sentences:
        ids: list[int] = [tokenizer.cls_token_id]
        word_ids: list[int | None] = [None]
        for index, char in enumerate(chars):
            pieces = encode(char)
            if len(ids) + len(pieces) > max_length - 1:
                break
            ids.extend(pieces)
            word_ids.extend([index] * len(pieces))
        ids.append(tokenizer.sep_token_id)
        word_ids.append(None)
        features.append({"input_ids": ids, "token_type_ids": [0] * len(ids), "word_ids": word_ids})
    return features


def strided_windows(feature: Feature, max_length: int, cls_id: int, sep_id: int) -> list[Feature]:
    """`feature` (a whole text's encoding) as windows of at most `max_length` tokens overlapping
    by half, as transformers' token-classification pipeline strides over long texts; in a window,
    only a word's first sub-word keeps its word id, so a window starting mid-word never stands in
    for the word's first sub-word. A text that fits is its own single window."""
    ids, words = feature["input_ids"][1:-1], feature["word_ids"][1:-1]
    width = max_length - 2
    if len(ids) <= width:
        return [feature]
    first = [w if w is not None and (i == 0 or words[i - 1] != w) else None for i, w in enumerate(words)]
    step = max(1, width // 2)
    starts = [*range(0, len(ids) - width, step), len(ids) - width]
    return [
        {
            "input_ids": [cls_id, *ids[start : start + width], sep_id],
            "token_type_ids": [0] * (width + 2),
            "word_ids": [None, *first[start : start + width], None],
        }
        for start in starts
    ]


class TokenClassificationTask(Task):
    name = "token-classification"
    model_class = "AlbertForTokenClassification"
    sequence_outputs = ("logits",)

    id2label: dict[int, str]

    def read(self, path: str | Path) -> list[TokenExample]:
        o = self.options
        examples: list[TokenExample] = []
        words: list[str] = []
        tags: list[str] = []
        first_line = 0
        lines = read_text(path).splitlines()
        for number, raw in enumerate([*lines, ""], start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if words:
                    examples.append(TokenExample(words, tags, first_line))
                words, tags = [], []
                continue
            columns = [c.strip() for c in conll_columns(line)]
            token, tag = _column(columns, o.token_column), _column(columns, o.tag_column)
            if not token or not tag or len(columns) < 2:
                raise AlbertError(
                    f"{path} line {number}: expected a token and a tag in columns {o.token_column} and "
                    f"{o.tag_column}, got {line!r}; fix the line or pass --token-column/--tag-column"
                )
            if not words:
                first_line = number
            words.append(token)
            tags.append(tag)
        if not examples:
            raise AlbertError(
                f"{path} holds no sentences (token<TAB>tag lines, blank line between sentences)"
            )
        return examples

    # -- labels -----------------------------------------------------------------------
    def fit_labels(self, examples: list[TokenExample]) -> dict[str, Any]:
        names = {t for e in examples for t in e.tags}
        ordered = (["O"] if "O" in names else []) + sorted(names - {"O"}, key=lambda t: (t[2:], t))
        self.id2label = dict(enumerate(ordered))
        if self.options.char_level is None:
            self.options.char_level = is_char_level([w for e in examples for w in e.words])
        return {"id2label": self.id2label}

    def restore_labels(self, config: dict[str, Any]) -> None:
        self.id2label = {int(k): v for k, v in config["id2label"].items()}

    def check_labels(self, examples: list[TokenExample], path: str | Path) -> None:
        known = set(self.id2label.values())
        for e in examples:
            for offset, tag in enumerate(e.tags):
                if tag not in known:
                    raise AlbertError(
                        f"{path} line {e.line + offset}: tag {tag!r} does not occur in the training data "
                        f"(known tags: {', '.join(known)})"
                    )

    # -- features and metrics ---------------------------------------------------------
    def features(self, examples: list[TokenExample], tokenizer: Any, training: bool) -> list[Feature]:
        features = encode_words(
            tokenizer, [e.words for e in examples], bool(self.options.char_level), self.options.max_seq_length
        )
        label2id = {v: k for k, v in self.id2label.items()}
        for e, feature in zip(examples, features, strict=True):
            if training:
                labels, previous = [], None
                for word in feature["word_ids"]:
                    first_piece = word is not None and word != previous
                    labels.append(label2id[e.tags[word]] if first_piece else IGNORE_INDEX)
                    previous = word
                feature["labels"] = labels
        return features

    def predict_tags(self, example: TokenExample, feature: Feature, logits: np.ndarray) -> list[str]:
        """One tag per word: the first sub-word's argmax; "O" for words cut off by truncation."""
        word_logits, seen = first_subword(logits, feature["word_ids"], len(example.words))
        ids = word_logits.argmax(-1)
        return [self.id2label[int(i)] if ok else "O" for i, ok in zip(ids, seen, strict=True)]

    def metrics(
        self, examples: list[TokenExample], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> dict[str, Any]:
        predicted = [
            self.predict_tags(e, f, o["logits"]) for e, f, o in zip(examples, features, outputs, strict=True)
        ]
        return metrics.entity_scores([e.tags for e in examples], predicted)

    def primary_metric(self, metrics: dict[str, Any]) -> str:
        """Entity F1 for chunk tags (B-/I-/E-/S- prefixes); token accuracy for plain tags (POS)."""
        chunked = any(len(t) > 2 and t[0] in "BIES" and t[1] in "-_" for t in self.id2label.values())
        return "f1" if chunked else "token_accuracy"

    def saved_options(self) -> dict[str, Any]:
        return {"char_level": self.options.char_level}
