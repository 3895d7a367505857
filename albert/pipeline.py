"""`albert.pipeline(task, model=DIR)`: inference in one call, on PyTorch or ONNX Runtime.

    >>> classify = albert.pipeline("text-classification", model="runs/sst")
    >>> classify(["a gem of a film", "dull"])  # -> [{"label": "1", "score": 0.93}, ...]

Tasks: text-classification, token-classification, question-answering, fill-mask and
feature-extraction. Every pipeline tokenises all inputs in one call, runs them in batches sorted by
length (so a batch is padded only to its own longest member) and returns results in input order.
Decoding is `albert.postprocess` (numpy), shared by both runtimes; torch is imported only when the
torch runtime is used, so ``runtime="onnx"`` runs without it.

A *runner* is the model behind a pipeline: called with int64 numpy arrays ``input_ids``,
``attention_mask``, ``token_type_ids`` it returns named numpy outputs (``logits``,
``start_logits``/``end_logits``, ``last_hidden_state``...). `TorchRunner` wraps an albert model;
for ONNX it is the export engineer's `albert.onnx_runtime.OnnxModel`.
"""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from albert import postprocess
from albert.errors import AlbertError
from albert.tasks.common import Feature, Runner, TaskOptions, run_model
from albert.tasks.question_answering import QAExample, QuestionAnsweringTask
from albert.tasks.token_classification import encode_words

TASK_HEADS = {
    "text-classification": "AlbertForSequenceClassification",
    "token-classification": "AlbertForTokenClassification",
    "question-answering": "AlbertForQuestionAnswering",
    "multiple-choice": "AlbertForMultipleChoice",
    "fill-mask": "AlbertForMaskedLM",
    "feature-extraction": "AlbertModel",
}
RUNTIMES = ("torch", "onnx")
FINETUNE_ARGS = "finetune_args.json"


# ----------------------------------------------------------------------------------------
# runners and loading


class TorchRunner:
    """An albert model as a runner: numpy in, numpy out, no gradients."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        import torch

        device = self.model.device
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids).to(device),
                attention_mask=torch.from_numpy(attention_mask).to(device),
                token_type_ids=torch.from_numpy(token_type_ids).to(device),
            )
        return {k: out[k].float().cpu().numpy() for k in out.keys() if isinstance(out[k], torch.Tensor)}


@dataclass
class LoadedModel:
    """A runner plus what decoding needs: the config (id2label...), tokenizer and fine-tuning args."""

    runner: Runner
    config: dict[str, Any]
    tokenizer: Any
    directory: Path
    finetune_args: dict[str, Any] = field(default_factory=dict)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.config.get("id2label", {}).items()}

    def task_options(self, **overrides: Any) -> TaskOptions:
        saved = {**self.finetune_args.get("task_options", {}), **self.finetune_args.get("resolved", {})}
        options = TaskOptions.from_dict({**saved, **{k: v for k, v in overrides.items() if v is not None}})
        limit = int(self.config.get("max_position_embeddings", 512))
        if "max_seq_length" not in saved and overrides.get("max_seq_length") is None:
            options.max_seq_length = min(limit, self.tokenizer.model_max_length)
        options.max_seq_length = min(options.max_seq_length, limit)
        return options


def _read_finetune_args(directory: Path) -> dict[str, Any]:
    path = directory / FINETUNE_ARGS
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AlbertError(f"{path} is not valid JSON ({e}); re-run fine-tuning or delete it") from None


def _load_tokenizer(directory: Path) -> Any:
    from albert.tokenization import SPM_FILE, VOCAB_FILE, AlbertTokenizer

    if not ((directory / SPM_FILE).is_file() or (directory / VOCAB_FILE).is_file()):
        raise AlbertError(
            f"{directory} has no tokenizer ({SPM_FILE} or {VOCAB_FILE}); pass --tokenizer DIR "
            "(e.g. the directory `albert tokenizer train` wrote)"
        )
    return AlbertTokenizer.from_pretrained(directory)


def load_model(
    task: str,
    model: str | Path,
    tokenizer: str | Path | None = None,
    runtime: str = "torch",
    dtype: Any = None,
) -> LoadedModel:
    """The runner for `task` from a model directory (torch) or an exported .onnx file (onnx).
    `dtype` ("auto", "fp32", "bf16", a torch dtype, or None: as stored) is the torch model's
    precision; an ONNX model's is fixed when it is exported."""
    if task not in TASK_HEADS:
        raise AlbertError(f"unknown task {task!r}; choose one of: {', '.join(TASK_HEADS)}")
    if runtime not in RUNTIMES:
        raise AlbertError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if runtime == "onnx" and dtype not in (None, "auto", "fp32"):
        raise AlbertError(
            f"precision {dtype} applies to the torch runtime; an ONNX model runs in the precision "
            "it was exported in (`albert export --int8` for int8)"
        )
    if runtime == "onnx":
        try:
            from albert.onnx_runtime import OnnxModel
        except ImportError as e:
            raise AlbertError(
                f"the ONNX runtime is not available ({e}); install it with `pip install albert[export]`"
            ) from None
        onnx_model = OnnxModel(model)  # a .onnx file or the folder `albert export` wrote
        directory = onnx_model.directory
        runner: Runner = onnx_model
        config = dict(onnx_model.config)
    else:
        from albert.checkpoint import resolve_model_dir
        from albert.modeling import MODEL_CLASSES

        directory = resolve_model_dir(model)
        torch_model = MODEL_CLASSES[TASK_HEADS[task]].from_pretrained(directory, dtype=dtype).eval()
        runner, config = TorchRunner(torch_model), torch_model.config.to_dict()
    tokenizer_dir = Path(tokenizer) if tokenizer is not None else directory
    return LoadedModel(
        runner, config, _load_tokenizer(tokenizer_dir), directory, _read_finetune_args(directory)
    )


# ----------------------------------------------------------------------------------------
# pipelines


class Pipeline:
    """Call with one input (one result) or a list (a list of results, in input order)."""

    task = ""

    def __init__(self, loaded: LoadedModel, batch_size: int = 32, max_seq_length: int | None = None) -> None:
        if batch_size < 1:
            raise AlbertError(f"batch size must be at least 1, not {batch_size}")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.batch_size = batch_size
        self.options = loaded.task_options(max_seq_length=max_seq_length)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs)
        results = self.predict(items, **kwargs) if items else []
        return results[0] if single else results

    def predict(self, items: list[Any], **kwargs: Any) -> list[Any]:
        raise NotImplementedError

    def _run(
        self, features: list[Feature], sequence_outputs: tuple[str, ...], wanted: tuple[str, ...]
    ) -> list[dict[str, np.ndarray]]:
        return run_model(
            self.loaded.runner,
            features,
            self.batch_size,
            self.tokenizer.pad_token_id,
            sequence_outputs,
            wanted,
        )

    def _encode(self, texts: list[Any], pairs: list[Any] | None = None, **kwargs: Any) -> Any:
        return self.tokenizer(texts, pairs, truncation=True, max_length=self.options.max_seq_length, **kwargs)

    @staticmethod
    def _features(encoded: Any) -> list[Feature]:
        return [
            {"input_ids": ids, "token_type_ids": types}
            for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"], strict=True)
        ]


def _text(item: Any, key: str = "text") -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get(key), str):
        return item[key]
    raise AlbertError(f"expected a string or an object with a {key!r} string, got {str(item)[:80]!r}")


class TextClassificationPipeline(Pipeline):
    """`label` + `score` per text (or text pair, given as {"text": .., "text_pair": ..}).

    `top_k=1` (default) gives one dict per input; any other `top_k` (None = all labels) a list."""

    task = "text-classification"

    def predict(self, items: list[Any], top_k: int | None = 1) -> list[Any]:
        texts = [_text(item) for item in items]
        has_pairs = any(isinstance(item, dict) and "text_pair" in item for item in items)
        pairs = (
            [str(item.get("text_pair", "")) if isinstance(item, dict) else "" for item in items]
            if has_pairs
            else None
        )
        outputs = self._run(self._features(self._encode(texts, pairs)), (), ("logits",))
        logits = np.stack([o["logits"] for o in outputs])
        problem_type = self.loaded.config.get("problem_type")
        if problem_type is None and len(self.loaded.id2label) == 1:
            problem_type = "regression"
        ranked = postprocess.classify(logits, self.loaded.id2label, problem_type, top_k)
        return [r[0] for r in ranked] if top_k == 1 else ranked


class TokenClassificationPipeline(Pipeline):
    """Entities per text: `entity_group`, `score`, `word`, `start`, `end` (character offsets)."""

    task = "token-classification"

    def predict(self, items: list[Any]) -> list[Any]:
        texts = [_text(item) for item in items]
        char_level = bool(self.options.char_level)
        words = [postprocess.split_words(text, char_level) for text in texts]
        features = encode_words(
            self.tokenizer, [[w for w, _, _ in ws] for ws in words], char_level, self.options.max_seq_length
        )
        outputs = self._run(features, ("logits",), ("logits",))
        results = []
        for text, ws, feature, output in zip(texts, words, features, outputs, strict=True):
            word_logits, seen = postprocess.first_subword(output["logits"], feature["word_ids"], len(ws))
            probabilities = postprocess.softmax(word_logits) if len(ws) else np.zeros((0, 1))
            results.append(postprocess.group_entities(text, ws, probabilities, seen, self.loaded.id2label))
        return results


class QuestionAnsweringPipeline(Pipeline):
    """`answer`, `score`, `start`, `end` for each {"question": .., "context": ..}.

    Also callable as ``qa(question=..., context=...)``. Long contexts are windowed with the
    fine-tuning run's doc stride; `handle_impossible_answer` allows "" (SQuAD v2)."""

    task = "question-answering"

    def __call__(self, inputs: Any = None, **kwargs: Any) -> Any:
        if inputs is None and "question" in kwargs and "context" in kwargs:
            question, context = kwargs.pop("question"), kwargs.pop("context")
            if isinstance(question, list):
                return super().__call__(
                    [{"question": q, "context": c} for q, c in zip(question, context, strict=True)], **kwargs
                )
            inputs = {"question": question, "context": context}
        return super().__call__(inputs, **kwargs)

    def predict(
        self,
        items: list[Any],
        handle_impossible_answer: bool | None = None,
        n_best: int | None = None,
        max_answer_length: int | None = None,
        null_score_diff_threshold: float | None = None,
        doc_stride: int | None = None,
    ) -> list[Any]:
        options = self.loaded.task_options(
            max_seq_length=self.options.max_seq_length,
            version_2_with_negative=handle_impossible_answer,
            n_best=n_best,
            max_answer_length=max_answer_length,
            null_score_diff_threshold=null_score_diff_threshold,
            doc_stride=doc_stride,
        )
        task = QuestionAnsweringTask(options)
        examples = [
            QAExample(str(i), _text(item, "question"), _text(item, "context"), [], False)
            for i, item in enumerate(items)
        ]
        features = task.features(examples, self.tokenizer, training=False)
        outputs = self._run(features, task.sequence_outputs, task.sequence_outputs)
        return task.answers(examples, features, outputs)


class FillMaskPipeline(Pipeline):
    """For each [MASK]: the `top_k` tokens with `score`, `token`, `token_str` and the filled-in
    `sequence`. One mask gives a list of candidates per input; several masks a list per mask."""

    task = "fill-mask"

    def predict(self, items: list[Any], top_k: int = 5) -> list[Any]:
        texts = [_text(item) for item in items]
        encoded = self._encode(texts)
        mask_id = self.tokenizer.mask_token_id
        for i, ids in enumerate(encoded["input_ids"]):
            if mask_id not in ids:
                raise AlbertError(f"input {i} has no {self.tokenizer.mask_token} token: {texts[i][:80]!r}")
        outputs = self._run(self._features(encoded), ("logits",), ("logits",))
        results = []
        for ids, output in zip(encoded["input_ids"], outputs, strict=True):
            per_mask = []
            for position in [p for p, token in enumerate(ids) if token == mask_id]:
                candidates = []
                for token, score in zip(
                    *postprocess.top_tokens(output["logits"][position], top_k), strict=True
                ):
                    filled = list(ids)
                    filled[position] = int(token)
                    candidates.append(
                        {
                            "score": float(score),
                            "token": int(token),
                            "token_str": self.tokenizer.decode([int(token)]),
                            "sequence": self.tokenizer.decode(filled, skip_special_tokens=True),
                        }
                    )
                per_mask.append(candidates)
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return results


class FeatureExtractionPipeline(Pipeline):
    """One sentence embedding (float32 numpy vector) per text: the mean over its tokens or [CLS]."""

    task = "feature-extraction"

    def predict(self, items: list[Any], pooling: str = "mean") -> list[Any]:
        if pooling not in ("mean", "cls"):
            raise AlbertError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        features = self._features(self._encode([_text(item) for item in items]))
        outputs = self._run(features, ("last_hidden_state",), ("last_hidden_state",))
        return [
            postprocess.pool(o["last_hidden_state"], np.ones(len(o["last_hidden_state"])), pooling)
            for o in outputs
        ]


PIPELINES: dict[str, type[Pipeline]] = {
    cls.task: cls
    for cls in (
        TextClassificationPipeline,
        TokenClassificationPipeline,
        QuestionAnsweringPipeline,
        FillMaskPipeline,
        FeatureExtractionPipeline,
    )
}


def pipeline(
    task: str,
    model: str | Path,
    tokenizer: str | Path | None = None,
    runtime: str = "torch",
    batch_size: int = 32,
    max_seq_length: int | None = None,
    dtype: Any = None,
) -> Pipeline:
    """A ready-to-call pipeline for `task` (see `PIPELINES`) over a model directory or .onnx file.
    `dtype`: the torch model's precision, "auto" (bf16 on CPUs with native bf16, else fp32),
    "fp32", "bf16" or a torch dtype; None keeps the checkpoint's (fp32)."""
    if task not in PIPELINES:
        raise AlbertError(f"unknown pipeline task {task!r}; choose one of: {', '.join(PIPELINES)}")
    loaded = load_model(task, model, tokenizer, runtime, dtype)
    return PIPELINES[task](loaded, batch_size=batch_size, max_seq_length=max_seq_length)


class _CallableModule(types.ModuleType):
    """`albert.pipeline(...)` must work whether `albert.pipeline` resolves to this function (via the
    package's lazy exports) or to this module (Python binds imported submodules on the package)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Pipeline:
        return pipeline(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
