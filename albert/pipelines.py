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
for ONNX it is `albert.onnx_runtime.OnnxModel`.

The package exports `pipeline` as `albert.pipeline`; this module is `albert.pipelines`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from albert import postprocess
from albert.errors import AlbertError
from albert.hub import weights_directory
from albert.tasks.common import Feature, Runner, TaskOptions, run_model
from albert.tasks.question_answering import QAExample, QuestionAnsweringTask
from albert.tasks.token_classification import encode_words, strided_windows
from albert.tokenization import SPM_FILE, VOCAB_FILE, AlbertTokenizer

if TYPE_CHECKING:  # torch is imported only when the torch runtime is used
    from albert.modeling import AlbertPreTrainedModel

TASK_HEADS = {
    "text-classification": "AlbertForSequenceClassification",
    "token-classification": "AlbertForTokenClassification",
    "question-answering": "AlbertForQuestionAnswering",
    "multiple-choice": "AlbertForMultipleChoice",
    "fill-mask": "AlbertForMaskedLM",
    "feature-extraction": "AlbertModel",
}
# the task each saved head answers; a pretraining checkpoint's MLM head fills masks
HEAD_TASKS = {head: task for task, head in TASK_HEADS.items()} | {"AlbertForPreTraining": "fill-mask"}
RUNTIMES = ("torch", "onnx")
FINETUNE_ARGS = "finetune_args.json"


# ----------------------------------------------------------------------------------------
# runners and loading


class TorchRunner:
    """An albert model as a runner: numpy in, numpy out, no gradients."""

    def __init__(self, model: AlbertPreTrainedModel) -> None:
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
    tokenizer: AlbertTokenizer
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


def _load_tokenizer(directory: Path) -> AlbertTokenizer:
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
        from albert.config import AlbertConfig
        from albert.modeling import MODEL_CLASSES

        directory = weights_directory(model)
        check_head(task, AlbertConfig.from_pretrained(directory).architectures, model)
        torch_model = MODEL_CLASSES[TASK_HEADS[task]].from_pretrained(directory, dtype=dtype).eval()
        runner, config = TorchRunner(torch_model), torch_model.config.to_dict()
    check_head(task, config.get("architectures"), model)
    tokenizer_dir = Path(tokenizer) if tokenizer is not None else directory
    if tokenizer is not None:
        from albert.data.shards import check_same_tokenizer

        check_same_tokenizer(tokenizer_dir, directory)
    loaded_tokenizer = _load_tokenizer(tokenizer_dir)
    vocab_size = int(config.get("vocab_size") or 0)
    if vocab_size and len(loaded_tokenizer) > vocab_size:
        raise AlbertError(
            f"the tokenizer in {tokenizer_dir} has {len(loaded_tokenizer)} pieces but the model's vocab_size is "
            f"{vocab_size}: ids past it would be out of range; pass the tokenizer the model was trained with"
        )
    return LoadedModel(runner, config, loaded_tokenizer, directory, _read_finetune_args(directory))


def check_head(task: str, architectures: list[str] | None, model: str | Path) -> None:
    """Refuse a model whose saved head is not the task's: another head would start random and
    answer with confident nonsense. An encoder serves any task's features; a model that records
    no architecture is trusted."""
    if task == "feature-extraction" or not architectures:
        return
    accepted = {TASK_HEADS[task]} | ({"AlbertForPreTraining"} if task == "fill-mask" else set())
    if accepted & set(architectures):
        return
    own = next((HEAD_TASKS[a] for a in architectures if a in HEAD_TASKS), None)
    fix = f"use --task {own}" if own else "pass a model with that head"
    if task not in ("fill-mask", "feature-extraction"):
        fix += f", or fine-tune it for {task} with `albert finetune --task {task}`"
    raise AlbertError(
        f"{model} is a {own or 'different'} model ({architectures[0]}), not a {task} model; {fix}"
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
        if max_seq_length is not None and max_seq_length < 8:
            raise AlbertError(f"--max-seq-length must be at least 8, not {max_seq_length}")
        self.options = loaded.task_options(max_seq_length=max_seq_length)

    def __call__(self, inputs: Any, **kwargs: Any) -> Any:
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else list(inputs)
        results = self.predict(items, **kwargs) if items else []
        return results[0] if single else results

    # Most tasks are one feature per input: `features` (tokenise) -> the runner over padded
    # batches -> `results` (decode). Kept apart so a server can tokenise texts as they arrive and
    # batch them with other requests' texts (`albert serve`); question answering overrides `predict`.
    model_outputs: tuple[str, ...] = ("logits",)  # the outputs decoding reads
    sequence_outputs: tuple[str, ...] = ()  # those with one row per token

    def predict(self, items: list[Any], **kwargs: Any) -> list[Any]:
        features = self.features(items)
        return self.results(
            items, features, self._run(features, self.sequence_outputs, self.model_outputs), **kwargs
        )

    def features(self, items: list[Any]) -> list[Feature]:
        """One model input per item: `input_ids` and `token_type_ids` (plus what decoding needs)."""
        raise NotImplementedError

    def results(
        self, items: list[Any], features: list[Feature], outputs: list[dict[str, np.ndarray]], **kwargs: Any
    ) -> list[Any]:
        """The answer for each item from its feature and its (unpadded) model outputs."""
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

    def features(self, items: list[Any]) -> list[Feature]:
        texts = [_text(item) for item in items]
        has_pairs = any(isinstance(item, dict) and "text_pair" in item for item in items)
        pairs = (
            [str(item.get("text_pair", "")) if isinstance(item, dict) else "" for item in items]
            if has_pairs
            else None
        )
        return self._features(self._encode(texts, pairs))

    def results(
        self,
        items: list[Any],
        features: list[Feature],
        outputs: list[dict[str, np.ndarray]],
        top_k: int | None = 1,
    ) -> list[Any]:
        logits = np.stack([o["logits"] for o in outputs])
        problem_type = self.loaded.config.get("problem_type")
        if problem_type is None and len(self.loaded.id2label) == 1:
            problem_type = "regression"
        ranked = postprocess.classify(logits, self.loaded.id2label, problem_type, top_k)
        return [r[0] for r in ranked] if top_k == 1 else ranked


class TokenClassificationPipeline(Pipeline):
    """Entities per text: `entity_group`, `score`, `word`, `start`, `end` (character offsets).

    A text longer than `max_seq_length` tokens is run in overlapping windows (`strided_windows`)
    and every word is tagged from the window that gives it the most context, so nothing is cut."""

    task = "token-classification"

    sequence_outputs = ("logits",)

    def features(self, items: list[Any]) -> list[Feature]:
        char_level = bool(self.options.char_level)
        words = [postprocess.split_words(_text(item), char_level) for item in items]
        features = encode_words(
            self.tokenizer, [[w for w, _, _ in ws] for ws in words], char_level, self.options.max_seq_length
        )
        for feature, ws in zip(features, words, strict=True):
            feature["words"] = ws
        return features

    def results(
        self, items: list[Any], features: list[Feature], outputs: list[dict[str, np.ndarray]]
    ) -> list[Any]:
        """One truncated window per text: the server's path, where each text is one batch entry."""
        return [
            self._entities(_text(item), feature["words"], [(output["logits"], feature["word_ids"])])
            for item, feature, output in zip(items, features, outputs, strict=True)
        ]

    def predict(self, items: list[Any], **kwargs: Any) -> list[Any]:
        """Every word tagged: each text in as many overlapping windows as it needs."""
        char_level = bool(self.options.char_level)
        texts = [_text(item) for item in items]
        words = [postprocess.split_words(text, char_level) for text in texts]
        whole = encode_words(self.tokenizer, [[w for w, _, _ in ws] for ws in words], char_level, sys.maxsize)
        windows = [
            strided_windows(
                f, self.options.max_seq_length, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
            )
            for f in whole
        ]
        outputs = iter(self._run([w for ws in windows for w in ws], ("logits",), ("logits",)))
        return [
            self._entities(text, ws, [(next(outputs)["logits"], window["word_ids"]) for window in text_windows])
            for text, ws, text_windows in zip(texts, words, windows, strict=True)
        ]

    def _entities(
        self, text: str, words: list[Any], windows: list[tuple[np.ndarray, list[int | None]]]
    ) -> list[Any]:
        word_logits, seen = postprocess.merge_windows(windows, len(words))
        probabilities = postprocess.softmax(word_logits) if len(words) else np.zeros((0, 1))
        return postprocess.group_entities(text, words, probabilities, seen, self.loaded.id2label)


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

    sequence_outputs = ("logits",)

    def features(self, items: list[Any]) -> list[Feature]:
        texts = [_text(item) for item in items]
        encoded = self._encode(texts)
        mask_id = self.tokenizer.mask_token_id
        for i, ids in enumerate(encoded["input_ids"]):
            if mask_id not in ids:
                problem = (
                    f": its {self.tokenizer.mask_token} lies past the first {self.options.max_seq_length} tokens, "
                    "which are all the model reads; shorten the text or raise --max-seq-length"
                    if mask_id in self.tokenizer(texts[i])["input_ids"]
                    else f" has no {self.tokenizer.mask_token} token"
                )
                raise AlbertError(f"input {i}{problem}: {texts[i][:80]!r}")
        return self._features(encoded)

    def results(
        self, items: list[Any], features: list[Feature], outputs: list[dict[str, np.ndarray]], top_k: int = 5
    ) -> list[Any]:
        mask_id = self.tokenizer.mask_token_id
        results = []
        for ids, output in zip((f["input_ids"] for f in features), outputs, strict=True):
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

    model_outputs = sequence_outputs = ("last_hidden_state",)

    def predict(self, items: list[Any], pooling: str = "mean") -> list[Any]:
        if pooling not in ("mean", "cls"):
            raise AlbertError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        return super().predict(items, pooling=pooling)

    def features(self, items: list[Any]) -> list[Feature]:
        return self._features(self._encode([_text(item) for item in items]))

    def results(
        self,
        items: list[Any],
        features: list[Feature],
        outputs: list[dict[str, np.ndarray]],
        pooling: str = "mean",
    ) -> list[Any]:
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
