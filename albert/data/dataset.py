"""`PretrainingDataset`: memory-mapped shards -> the tensors `AlbertForPreTraining` takes.

Items are dicts of 1-D LongTensors ``input_ids``, ``token_type_ids``, ``attention_mask``,
``labels`` (-100 where nothing is predicted) and a 0-d LongTensor ``sentence_order_label``;
`collate_pretraining` pads a list of them into a batch. With data built using
``--dynamic-masking`` the stored examples are unmasked and each item is masked when read, by
the same recipe as static masking, seeded by ``(seed, epoch, index)``: different every epoch
(`set_epoch`), identical on every run and in every DataLoader worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from albert.data.masking import MaskingOptions, VocabularyTables, mask_tokens
from albert.data.shards import ShardArrays, read_manifest, tokenizer_fingerprint
from albert.errors import AlbertError

IGNORE_INDEX = -100  # what torch's cross-entropy (and AlbertForPreTraining) skips


class PretrainingDataset(Dataset):
    """ALBERT pretraining examples from a directory written by `build_pretraining_data`.

    `tokenizer_dir`, if given, must be the tokenizer the data was built with (checked by its
    fingerprint), so a model is never trained on ids from another vocabulary.
    """

    def __init__(self, directory: str | Path, tokenizer_dir: str | Path | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        if tokenizer_dir is not None:
            _check_tokenizer(self.directory, self.manifest, Path(tokenizer_dir))
        self._names = [shard["name"] for shard in self.manifest["shards"]]
        self._ends = np.cumsum([shard["examples"] for shard in self.manifest["shards"]], dtype=np.int64)
        self._token_dtype = self.manifest["token_dtype"]
        options = self.manifest["options"]
        self.dynamic = bool(options["dynamic_masking"])
        self._seed = int(options["seed"])
        self._masking = MaskingOptions(
            options["masked_lm_prob"],
            options["max_predictions_per_seq"],
            options["ngram"],
            self.manifest["tokenizer"]["mask_token_id"],
        )
        self._tables = (
            VocabularyTables.load(self.directory, self.manifest["tables"]) if self.dynamic else None
        )
        self._shards: dict[int, ShardArrays] = {}
        self.epoch = 0

    @property
    def pad_token_id(self) -> int:
        return int(self.manifest["tokenizer"]["pad_token_id"])

    def set_epoch(self, epoch: int) -> None:
        """Choose the masks of `epoch` (dynamic masking only; static masks are fixed)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self._ends[-1]) if self._ends.size else 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        shard_number = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[shard_number - 1]) if shard_number else 0)
        arrays = self._shard(shard_number)
        start, length, segment_a, sentence_order, prediction_start, prediction_count = arrays.index[
            local
        ].tolist()
        ids = np.asarray(arrays.input_ids[start : start + length], dtype=np.int64)
        labels = np.full(length, IGNORE_INDEX, dtype=np.int64)
        if self.dynamic:
            assert self._tables is not None
            rng = np.random.default_rng([self._seed, self.epoch, index])
            masked = mask_tokens(ids, self._tables, self._masking, rng)
            ids = masked.input_ids
            labels[masked.positions] = masked.labels
        else:
            window = slice(prediction_start, prediction_start + prediction_count)
            labels[np.asarray(arrays.positions[window], dtype=np.int64)] = arrays.labels[window]
        token_types = np.zeros(length, dtype=np.int64)
        token_types[segment_a:] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "token_type_ids": torch.from_numpy(token_types),
            "attention_mask": torch.ones(length, dtype=torch.long),
            "labels": torch.from_numpy(labels),
            "sentence_order_label": torch.tensor(sentence_order, dtype=torch.long),
        }

    def collate(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """`collate_pretraining` with this data's pad id: ``DataLoader(ds, collate_fn=ds.collate)``."""
        return collate_pretraining(items, pad_token_id=self.pad_token_id)

    def _shard(self, number: int) -> ShardArrays:
        if number not in self._shards:
            self._shards[number] = ShardArrays(self.directory, self._names[number], self._token_dtype)
        return self._shards[number]

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a copy: send paths, not memory maps (each worker maps its own)
        state = self.__dict__.copy()
        state["_shards"] = {}
        return state


def _check_tokenizer(directory: Path, manifest: dict[str, Any], tokenizer_dir: Path) -> None:
    built_with = manifest["tokenizer"]["fingerprint"]
    given = tokenizer_fingerprint(tokenizer_dir)
    if given != built_with:
        raise AlbertError(
            f"data in {directory} was built with a different tokenizer (fingerprint {built_with[:19]}…, "
            f"{tokenizer_dir} has {given[:19]}…); rebuild it with "
            f"`albert data --tokenizer {tokenizer_dir} --input FILE... --output {directory}`"
        )


def collate_pretraining(
    items: list[dict[str, torch.Tensor]], pad_token_id: int = 0
) -> dict[str, torch.Tensor]:
    """Pad `items` to the longest and stack them: exactly the keyword arguments of `AlbertForPreTraining`.

    Padding: ``input_ids`` with `pad_token_id` (ALBERT's ``<pad>`` is 0; `PretrainingDataset.collate`
    passes the manifest's), ``token_type_ids`` and ``attention_mask`` with 0, ``labels`` with -100.
    """
    if not items:
        raise AlbertError("cannot collate an empty list of examples")
    width = max(item["input_ids"].numel() for item in items)
    pads = {"input_ids": pad_token_id, "token_type_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch = {name: torch.full((len(items), width), pad, dtype=torch.long) for name, pad in pads.items()}
    for row, item in enumerate(items):
        length = item["input_ids"].numel()
        for name in pads:
            batch[name][row, :length] = item[name]
    batch["sentence_order_label"] = torch.stack([item["sentence_order_label"] for item in items])
    return batch
