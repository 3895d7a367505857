"""The lean runtime: an exported model served by onnxruntime + numpy + the tokenizer. No torch.

A folder written by `albert export` holds the .onnx file, `config.json` and the tokenizer;
`OnnxModel(path)` loads all three. Nothing on this module's import path imports torch (the
`albert` package imports lazily), so a deployment needs neither torch nor its ~1 GB of wheels:
`pip install onnxruntime numpy tokenizers` and this package.

    model = OnnxModel("exported/model.onnx", threads=2)
    outputs = model(input_ids, attention_mask, token_type_ids)   # numpy int64 in, numpy out
    model.classify(["a fine film"])                               # [{"label": ..., "score": ...}]

`python -m albert.onnx_runtime MODEL --text ... [--stats]` does text classification or feature
extraction from the command line and can report start-up time and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from albert.config import CONFIG_NAME
from albert.errors import AlbertError

INSTALL_HINT = "pip install 'albert[export]'"
DEFAULT_FILES = ("model.onnx", "model_int8.onnx")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise AlbertError(
            f"onnxruntime is not installed; running ONNX models needs it: {INSTALL_HINT}"
        ) from None
    return onnxruntime


def resolve_onnx_file(path: str | os.PathLike) -> Path:
    """A .onnx file, or a folder holding model.onnx (else model_int8.onnx, else its only .onnx)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise AlbertError(f"no ONNX model at {path}; create one with `albert export --format onnx`")
    for name in DEFAULT_FILES:
        if (path / name).is_file():
            return path / name
    candidates = sorted(path.glob("*.onnx"))
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise AlbertError(f"{path} should hold one .onnx file (found: {found}); pass the file itself")
    return candidates[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class OnnxModel:
    """An exported ALBERT model (any head): numpy in, dict of numpy arrays out."""

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        ort = import_onnxruntime()
        self.path = resolve_onnx_file(path)
        self.directory = self.path.parent
        self.config = self._read_config()
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise AlbertError(f"threads must be at least 1, not {threads}")
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=list(providers))
        except Exception as e:  # onnxruntime raises its own (pybind) exception types
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise AlbertError(f"{self.path} is not a loadable ONNX model ({first}); re-export it") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        metadata = self.session.get_modelmeta().custom_metadata_map
        architectures = self.config.get("architectures") or ["AlbertModel"]
        self.architecture: str = metadata.get("albert_architecture", architectures[0])
        self.precision: str = metadata.get("albert_precision", "fp32")
        self.token_rank = len(self.session.get_inputs()[0].shape)  # 3 for multiple choice
        self._tokenizer: Any = None

    def _read_config(self) -> dict[str, Any]:
        file = self.directory / CONFIG_NAME
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AlbertError(
                f"{file} is missing; `albert export` writes it next to the .onnx file - keep them together"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AlbertError(f"{file} is not valid JSON ({e}); re-export the model") from None

    @property
    def tokenizer(self) -> Any:
        """The AlbertTokenizer saved next to the .onnx file (loaded on first use)."""
        if self._tokenizer is None:
            from albert.tokenization import SPM_FILE, VOCAB_FILE, AlbertTokenizer

            if not any((self.directory / name).is_file() for name in (SPM_FILE, VOCAB_FILE)):
                raise AlbertError(
                    f"{self.directory} has no tokenizer ({SPM_FILE} or {VOCAB_FILE}); re-export with "
                    "`albert export --tokenizer DIR` or pass token ids"
                )
            self._tokenizer = AlbertTokenizer.from_pretrained(self.directory)
        return self._tokenizer

    @property
    def id2label(self) -> dict[int, str]:
        labels = self.config.get("id2label") or {}
        return {int(k): str(v) for k, v in labels.items()}

    def _check_ids(self, input_ids: np.ndarray) -> None:
        if input_ids.ndim != self.token_rank:
            shape = "(batch, choices, sequence)" if self.token_rank == 3 else "(batch, sequence)"
            raise AlbertError(f"input_ids must have shape {shape}, got {input_ids.shape}")
        max_positions = int(self.config.get("max_position_embeddings", 512))
        if input_ids.shape[-1] > max_positions:
            raise AlbertError(
                f"sequence of {input_ids.shape[-1]} tokens is longer than max_position_embeddings="
                f"{max_positions}; truncate the input"
            )
        vocab_size = int(self.config.get("vocab_size", 0))
        if (
            input_ids.size
            and vocab_size
            and not 0 <= int(input_ids.min()) <= int(input_ids.max()) < vocab_size
        ):
            raise AlbertError(f"token ids must lie in [0, {vocab_size}); was the right tokenizer used?")

    def __call__(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray | None = None,
        token_type_ids: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        input_ids = np.asarray(input_ids, dtype=np.int64)
        self._check_ids(input_ids)
        feed = {
            "input_ids": input_ids,
            "attention_mask": np.ones_like(input_ids)
            if attention_mask is None
            else np.asarray(attention_mask, np.int64),
            "token_type_ids": np.zeros_like(input_ids)
            if token_type_ids is None
            else np.asarray(token_type_ids, np.int64),
        }
        for name, array in feed.items():
            if array.shape != input_ids.shape:
                raise AlbertError(f"{name} has shape {array.shape} but input_ids has {input_ids.shape}")
        return dict(zip(self.output_names, self.session.run(None, feed), strict=True))

    # -- texts in ---------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], text_pair: Sequence[str] | None = None, max_length: int | None = None
    ) -> dict[str, np.ndarray]:
        """Tokenize a batch: padded to its longest member, truncated to `max_length`."""
        limit = max_length or int(self.config.get("max_position_embeddings", 512))
        encoded = self.tokenizer(
            list(texts),
            text_pair=None if text_pair is None else list(text_pair),
            padding=True,
            truncation=True,
            max_length=limit,
            return_tensors="np",
        )
        return {name: np.asarray(encoded[name], dtype=np.int64) for name in self.input_names}

    def run_texts(
        self,
        texts: Sequence[str],
        text_pair: Sequence[str] | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
    ) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """(encoded batch, outputs) for consecutive batches of `batch_size` texts."""
        if text_pair is not None and len(text_pair) != len(texts):
            raise AlbertError(f"{len(texts)} texts but {len(text_pair)} text pairs; pass one pair per text")
        if batch_size < 1:
            raise AlbertError(f"batch_size must be at least 1, not {batch_size}")
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pair is None else text_pair[start : start + batch_size]
            encoded = self.encode(texts[start : start + batch_size], pairs, max_length)
            yield encoded, self(**encoded)

    def classify(
        self, texts: Sequence[str], text_pair: Sequence[str] | None = None, batch_size: int = 32
    ) -> list[dict[str, Any]]:
        """Sequence classification: label + score per text (softmax, sigmoid or regression)."""
        if "logits" not in self.output_names or self.architecture != "AlbertForSequenceClassification":
            raise AlbertError(f"{self.path} is a {self.architecture}, not a sequence classifier")
        logits = np.concatenate([out["logits"] for _, out in self.run_texts(texts, text_pair, batch_size)])
        return decode_classification(logits, self.id2label, self.config.get("problem_type"))

    def embed(
        self,
        texts: Sequence[str],
        text_pair: Sequence[str] | None = None,
        batch_size: int = 32,
        pooling: str = "mean",
    ) -> np.ndarray:
        """Feature extraction: one vector per text, the mask-weighted mean of the last hidden
        states (`pooling="mean"`) or the pooler output over [CLS] (`"cls"`)."""
        if "last_hidden_state" not in self.output_names:
            raise AlbertError(f"{self.path} is a {self.architecture}; feature extraction needs a base model")
        vectors = []
        for encoded, out in self.run_texts(texts, text_pair, batch_size):
            if pooling == "cls":
                vectors.append(out.get("pooler_output", out["last_hidden_state"][:, 0]))
            elif pooling == "mean":
                mask = encoded["attention_mask"][..., None].astype(np.float32)
                vectors.append((out["last_hidden_state"] * mask).sum(1) / np.maximum(mask.sum(1), 1.0))
            else:
                raise AlbertError(f"unknown pooling {pooling!r}; choose mean or cls")
        return np.concatenate(vectors)


def decode_classification(
    logits: np.ndarray, id2label: dict[int, str], problem_type: str | None
) -> list[dict[str, Any]]:
    """transformers' rule: regression for one label, sigmoid per label for multi-label, else softmax."""
    if logits.shape[-1] == 1 or problem_type == "regression":
        return [{"score": float(row[0])} for row in logits]
    if problem_type == "multi_label_classification":
        probs = sigmoid(logits)
        return [
            {"labels": [id2label.get(i, str(i)) for i in np.flatnonzero(row > 0.5)], "scores": row.tolist()}
            for row in probs
        ]
    probs = softmax(logits)
    best = probs.argmax(-1)
    return [
        {"label": id2label.get(int(i), str(int(i))), "score": float(p[i])}
        for i, p in zip(best, probs, strict=True)
    ]


def memory_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; elsewhere the peak from getrusage)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3


# ----------------------------------------------------------------------------------------
# python -m albert.onnx_runtime


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m albert.onnx_runtime",
        description="Classify or embed texts with an exported ALBERT model (onnxruntime, no torch).",
    )
    parser.add_argument("model", help="the .onnx file written by `albert export`, or its folder")
    parser.add_argument("--text", action="append", default=[], help="a text (repeatable)")
    parser.add_argument("--pair", action="append", help="a second segment per --text (repeatable)")
    parser.add_argument("--input", help="a UTF-8 file with one text per line")
    parser.add_argument(
        "--task", choices=["auto", "text-classification", "feature-extraction"], default="auto"
    )
    parser.add_argument("--pooling", choices=["mean", "cls"], default="mean", help="for feature extraction")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--stats", action="store_true", help="print start-up time and memory to stderr")
    return parser


def read_texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.text)
    if args.input:
        try:
            lines = Path(args.input).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise AlbertError(f"input file {args.input} does not exist") from None
        except UnicodeDecodeError as e:
            raise AlbertError(f"{args.input} is not UTF-8 text ({e}); convert it first") from None
        texts += [line for line in lines if line.strip()]
    if not texts:
        raise AlbertError("no input: pass --text TEXT (repeatable) or --input FILE")
    return texts


def predict(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    model = OnnxModel(args.model, threads=args.threads)
    model.tokenizer  # noqa: B018 - load it now so start-up time includes it
    loaded = time.perf_counter()
    texts = read_texts(args)
    task = args.task
    if task == "auto":
        task = "text-classification" if model.architecture == "AlbertForSequenceClassification" else ""
        task = task or ("feature-extraction" if "last_hidden_state" in model.output_names else "")
    if task == "text-classification":
        results = model.classify(texts, args.pair, args.batch_size)
    elif task == "feature-extraction":
        vectors = model.embed(texts, args.pair, args.batch_size, args.pooling)
        results = [{"embedding": v.tolist()} for v in vectors]
    else:
        raise AlbertError(
            f"{model.architecture} outputs need task-specific decoding: use `albert predict --runtime onnx`"
        )
    stats = {
        "startup_s": round(loaded - started, 4),
        "predict_s": round(time.perf_counter() - loaded, 4),
        "rss_mb": round(memory_mb(), 1),
        "torch_imported": "torch" in sys.modules and sys.modules["torch"] is not None,
    }
    return {"results": [dict(r, text=t) for r, t in zip(results, texts, strict=True)], "stats": stats}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        output = predict(args)
    except AlbertError as e:
        print(f"albert.onnx_runtime: error: {e}", file=sys.stderr)
        return 2
    for result in output["results"]:
        print(json.dumps(result, ensure_ascii=False))
    if args.stats:
        print(json.dumps(output["stats"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
