"""The ALBERT pretraining objective: masked-LM + sentence-order prediction (`albert pretrain`).

One micro-batch: a forward of `AlbertForPreTraining` with MLM logits only at the masked positions
(`sparse_prediction=True`: the vocabulary projection over every position would be most of a small
model's cost); the loss is MLM cross-entropy + SOP cross-entropy, and the step reports both, their
accuracies and the tokens seen. Held out: MLM and SOP loss and accuracy, perplexity, and the
word-order gain (what shuffling a sequence's words costs the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from albert.errors import AlbertError
from albert.hub import weights_directory
from albert.modeling import AlbertForPreTraining
from albert.train.data import DataSource, load_dataset
from albert.train.distributed import Distributed
from albert.train.objective import LOOP_STATS, Batch
from albert.train.precision import Precision

BATCH_KEYS = ("input_ids", "token_type_ids", "attention_mask", "labels", "sentence_order_label")
LOSS_NAMES = ("loss", "mlm_loss", "sop_loss")


def forward_with_counts(model: nn.Module, inputs: dict[str, Tensor]) -> tuple[Any, dict[str, Any]]:
    """The pretraining forward (MLM logits at masked positions only) and its hit counts."""
    out = model(**{k: inputs[k] for k in BATCH_KEYS if k in inputs}, sparse_prediction=True)
    labels = inputs["labels"]
    masked = labels[labels != -100]
    sop = inputs["sentence_order_label"].view(-1)
    return out, {
        "mlm_correct": (out.prediction_logits.argmax(-1) == masked).sum(),
        "mlm_total": masked.numel(),
        "sop_correct": (out.sop_logits.argmax(-1) == sop).sum(),
        "sop_total": sop.numel(),
        "tokens": inputs["attention_mask"].sum(),
    }


class PretrainingObjective:
    """MLM + SOP on the data `cfg` names (`cfg` is an `albert.train.loop.TrainConfig`)."""

    name = "pretrain"
    stat_names = (*LOSS_NAMES, "mlm_correct", "mlm_total", "sop_correct", "sop_total", *LOOP_STATS)
    find_unused_parameters = False
    progress = {"loss": "loss", "mlm_acc": "mlm_accuracy", "sop_acc": "sop_accuracy"}
    progress_format = ".3f"

    def __init__(self, cfg: Any, dist: Distributed, precision: Precision) -> None:
        self.cfg, self.device, self.precision = cfg, dist.device, precision

    def data_source(self) -> DataSource:
        return DataSource(self.cfg.data, self.cfg.tokenizer, self.cfg.eval_data)

    def describe(self, model: nn.Module) -> str:
        return f"pretraining {model.num_parameters() / 1e6:.1f}M parameters (vocab {model.config.vocab_size})"

    def forward(self, model: nn.Module, batch: Batch) -> tuple[Any, dict[str, Any]]:
        inputs = {k: batch[k].to(self.device, non_blocking=True) for k in BATCH_KEYS if k in batch}
        with self.precision.autocast(self.device):
            return forward_with_counts(model, inputs)

    def losses(self, model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Any]]:
        out, counts = self.forward(model, batch)
        return {"loss": out.loss, "mlm_loss": out.mlm_loss, "sop_loss": out.sop_loss}, counts

    def summarize(self, totals: dict[str, float]) -> dict[str, float]:
        micro = max(totals["micro_batches"], 1)
        return {
            **{name: totals[name] / micro for name in LOSS_NAMES},
            "mlm_accuracy": totals["mlm_correct"] / max(totals["mlm_total"], 1),
            "sop_accuracy": totals["sop_correct"] / max(totals["sop_total"], 1),
        }

    def held_out_sums(self, model: nn.Module, batches: Iterable[Batch], tokenizer: Any) -> Tensor:
        specials = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id])
        return held_out_sums(model, batches, self.forward, specials, self.device)

    def held_out_record(self, sums: list[float], step: int) -> dict[str, Any]:
        return held_out_metrics(sums, step)

    def eval_message(self, record: dict[str, Any]) -> str:
        return (
            f"step {record['step']}: eval mlm_acc {record['mlm_accuracy']:.3f} sop_acc "
            f"{record['sop_accuracy']:.3f} perplexity {record['perplexity']:.1f} "
            f"word-order gain {record['word_order_gain']:.2f} nats"
        )


# ----------------------------------------------------------------------------------------
# held-out evaluation, shared with `albert evaluate --data`

HeldOutForward = Callable[[nn.Module, dict[str, Tensor]], tuple[Any, dict[str, Any]]]


def held_out_sums(
    model: nn.Module,
    batches: Iterable[dict[str, Tensor]],
    forward: HeldOutForward,
    specials: Tensor,
    device: Any,
) -> Tensor:
    """Token- and sequence-weighted sums over held-out batches, to add up across processes:
    MLM loss, masked tokens, MLM hits, SOP loss, SOP hits, sequences, shuffled-order MLM loss."""
    sums = torch.zeros(7, dtype=torch.float64, device=device)
    shuffler = torch.Generator().manual_seed(0)  # the same shuffles at every evaluation
    with torch.no_grad():
        for batch in batches:
            out, counts = forward(model, batch)
            # both forwards on every rank, whatever its batch holds: FSDP's collectives must pair up
            shuffled, _ = forward(model, shuffle_word_order(batch, specials, shuffler))
            n_masked = counts["mlm_total"]
            if n_masked:
                sums[0] += out.mlm_loss.double() * n_masked
                sums[6] += shuffled.mlm_loss.double() * n_masked
            sums[1] += n_masked
            sums[2] += counts["mlm_correct"]
            sums[3] += out.sop_loss.double() * counts["sop_total"]
            sums[4] += counts["sop_correct"]
            sums[5] += counts["sop_total"]
    return sums


def held_out_metrics(sums: Any, step: int) -> dict[str, Any]:
    """The evaluation record from `held_out_sums` (added up over processes)."""
    mlm_sum, n_masked, mlm_correct, sop_sum, sop_correct, n_seq, shuffled_sum = (float(x) for x in sums)
    mlm_loss = mlm_sum / max(n_masked, 1)
    return {
        "step": step,
        "eval": True,
        "loss": mlm_loss + sop_sum / max(n_seq, 1),
        "mlm_loss": mlm_loss,
        "sop_loss": sop_sum / max(n_seq, 1),
        "mlm_accuracy": mlm_correct / max(n_masked, 1),
        "sop_accuracy": sop_correct / max(n_seq, 1),
        "perplexity": math.exp(min(mlm_loss, 50.0)),
        # what word order is worth to the model: MLM loss on the same sequences with their
        # tokens shuffled, minus the loss in order; ~0 = a bag-of-words model (see the docs)
        "word_order_gain": shuffled_sum / max(n_masked, 1) - mlm_loss,
        "sequences": int(n_seq),
    }


def shuffle_word_order(
    batch: dict[str, Tensor], specials: Tensor, generator: torch.Generator
) -> dict[str, Tensor]:
    """A copy of `batch` with each sequence's tokens (and their MLM labels) in random order;
    [CLS], [SEP], padding and the segment layout stay where they are.

    A model that scores this as well as the real order predicts from which words occur, not
    from where: a bag of words. Small models sit on that plateau for a long time before
    attention learns to use positions, and such a model gives fine-tuning little.
    """
    ids, labels = batch["input_ids"].clone(), batch["labels"].clone()
    movable = batch["attention_mask"].bool() & ~torch.isin(ids, specials)
    for row in range(ids.shape[0]):
        where = movable[row].nonzero().flatten()
        order = where[torch.randperm(where.numel(), generator=generator)]
        ids[row, where], labels[row, where] = ids[row, order], labels[row, order]
    return {**batch, "input_ids": ids, "labels": labels}


def evaluate_pretraining(
    model: str | Path, data: str | Path, max_sequences: int = 1024, batch_size: int = 32
) -> dict[str, Any]:
    """Score a pretraining checkpoint on `albert data` output, as `albert pretrain` evaluates:
    MLM and SOP accuracy, perplexity and the word-order gain, over up to `max_sequences`
    sequences (a seeded sample, masked as in epoch 0). Used by ``albert evaluate --data DIR``."""
    from albert.tokenization import SPM_FILE, VOCAB_FILE

    _check_has_mlm_head(model)  # before loading any data: a config read is enough to refuse
    # a checkpoint carries its tokenizer: then the data must have been built with it
    carries_tokenizer = any((weights_directory(model) / name).is_file() for name in (SPM_FILE, VOCAB_FILE))
    dataset = load_dataset(str(data), str(model) if carries_tokenizer else None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(0)
    network = AlbertForPreTraining.from_pretrained(model).eval()
    chosen = np.sort(np.random.default_rng(0).permutation(len(dataset))[:max_sequences]).tolist()
    batches = (
        dataset.collate([dataset[i] for i in chosen[start : start + batch_size]])
        for start in range(0, len(chosen), batch_size)
    )
    specials = torch.tensor([dataset.manifest["tokenizer"][k] for k in ("cls_token_id", "sep_token_id")])
    sums = held_out_sums(network, batches, forward_with_counts, specials, "cpu")
    return held_out_metrics(sums.tolist(), step=0) | {"model": str(model), "data": str(data)}


def _check_has_mlm_head(model: str | Path) -> None:
    """Refuse a model saved without a masked-LM head (a fine-tuned classifier, a bare encoder):
    its head would be random and every number meaningless."""
    from albert.config import AlbertConfig

    architectures = AlbertConfig.from_pretrained(model).architectures or []
    if architectures and not {"AlbertForPreTraining", "AlbertForMaskedLM"} & set(architectures):
        raise AlbertError(
            f"{model} is an {architectures[0]}, without the masked-LM head pretraining metrics need; pass a "
            "pretraining checkpoint (RUN/checkpoints/step-N), or evaluate a fine-tuned model on its labelled file"
        )
