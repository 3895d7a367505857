"""Export a model to ONNX, fp32 or int8, as one folder the lean runtime can serve on its own.

`albert export --format onnx --model DIR --output FILE [--int8] [--task auto|base|...]` writes
FILE plus `config.json` and the tokenizer files next to it; `albert.onnx_runtime.OnnxModel`
then needs nothing else (no torch, no checkpoint).

Shared weights stay shared. ALBERT's point is that 12 layers use one block's weights, so an
albert-base file should be ~47 MB (its fp32 parameters), not the ~340 MB that naive exports
produce (transformers#8869, onnxruntime#10340). Measured with torch 2.13's TorchScript exporter:
without constant folding the file is 47 MB but every layer transposes the shared weights at run
time; with folding (used here) each folded weight is stored once and later layers refer to it
through `Identity` nodes - which hide the weights from onnxruntime's quantiser (it then
quantises only the first layer: a 40.5 MB "int8" file with 11 of 12 layers in fp32).
`share_initializers` therefore makes sharing explicit: Identity-of-initializer nodes are
bypassed, byte-identical initializers merged, and an initializer that is the transpose of
another (the MLM decoder tied to the word embeddings) becomes a `Transpose` node of it. The
int8 file is then 12.3 MB, every layer int8, each shared weight quantised once. The fused Q/K/V
concatenation is computed once per forward in `AlbertTransformer.forward`, so it folds into one
initializer, not one per layer.

The dynamo exporter (`dynamo=True`) needs `onnxscript`, which is not a dependency; the
TorchScript exporter is the one used here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from albert.checkpoint import atomic_write
from albert.config import CONFIG_NAME, AlbertConfig
from albert.errors import AlbertError
from albert.hardware import cpu_has_vnni
from albert.hub import weights_directory
from albert.modeling import MODEL_CLASSES, AlbertPreTrainedModel
from albert.paths import check_output, save_guard
from albert.tokenization import SPM_FILE, VOCAB_FILE, AlbertTokenizer

logger = logging.getLogger("albert")

# --task name -> model class name (config.json's `architectures` picks one with --task auto)
TASKS: dict[str, str] = {
    "base": "AlbertModel",
    "pretraining": "AlbertForPreTraining",
    "masked-lm": "AlbertForMaskedLM",
    "sequence-classification": "AlbertForSequenceClassification",
    "token-classification": "AlbertForTokenClassification",
    "question-answering": "AlbertForQuestionAnswering",
    "multiple-choice": "AlbertForMultipleChoice",
}
# model class -> the output fields exported, named as in the torch output dataclasses
OUTPUTS: dict[str, tuple[str, ...]] = {
    "AlbertModel": ("last_hidden_state", "pooler_output"),
    "AlbertForPreTraining": ("prediction_logits", "sop_logits"),
    "AlbertForMaskedLM": ("logits",),
    "AlbertForSequenceClassification": ("logits",),
    "AlbertForTokenClassification": ("logits",),
    "AlbertForQuestionAnswering": ("start_logits", "end_logits"),
    "AlbertForMultipleChoice": ("logits",),
}
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# small files of a fine-tuned model directory that prediction reads (task options, label scheme)
SIDE_FILES = ("finetune_args.json",)
OPSET = 17  # first opset with LayerNormalization; onnxruntime >= 1.12 runs it
INSTALL_HINT = "pip install 'albert[export]'"


def require(module: str) -> Any:
    """Import an optional export dependency or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise AlbertError(
            f"{module} is not installed; it is needed for ONNX export: {INSTALL_HINT}"
        ) from None


# ----------------------------------------------------------------------------------------
# tracing


class OutputsAsTuple(nn.Module):
    """The tracer takes tensors in and tuples out: unpack the output dataclass by field name."""

    def __init__(self, model: AlbertPreTrainedModel, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.output_names = output_names

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor
    ) -> tuple[Tensor, ...]:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return tuple(out[name] for name in self.output_names)


def output_names_for(model: AlbertPreTrainedModel) -> tuple[str, ...]:
    names = OUTPUTS[type(model).__name__]
    if getattr(model, "pooler", 1) is None:  # AlbertModel(add_pooling_layer=False)
        names = tuple(n for n in names if n != "pooler_output")
    return names


def example_inputs(config: AlbertConfig, multiple_choice: bool) -> tuple[Tensor, Tensor, Tensor]:
    """A padded pair batch, so the traced graph has the mask and token-type paths."""
    shape = (2, 2, 8) if multiple_choice else (2, 8)
    input_ids = torch.randint(min(5, config.vocab_size - 1), config.vocab_size, shape)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[..., 0, 6:] = 0
    token_type_ids = torch.zeros(shape, dtype=torch.long)
    token_type_ids[..., 4:] = 1
    return input_ids, attention_mask, token_type_ids


def dynamic_axes(architecture: str, output_names: tuple[str, ...]) -> dict[str, dict[int, str]]:
    if architecture == "AlbertForMultipleChoice":
        token_axes = {0: "batch", 1: "choices", 2: "sequence"}
        return {
            **{n: token_axes for n in INPUT_NAMES},
            **{n: {0: "batch", 1: "choices"} for n in output_names},
        }
    per_token = {"last_hidden_state", "prediction_logits", "start_logits", "end_logits"}
    if architecture in ("AlbertForMaskedLM", "AlbertForTokenClassification"):
        per_token.add("logits")
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    for name in output_names:  # per-token outputs, or one row per sequence (pooled)
        axes[name] = {0: "batch", 1: "sequence"} if name in per_token else {0: "batch"}
    return axes


def trace_to_onnx(model: AlbertPreTrainedModel, path: Path) -> None:
    """torch.onnx.export with dynamic batch/sequence (and choices) axes and constant folding."""
    model = model.eval()
    output_names = output_names_for(model)
    architecture = type(model).__name__
    wrapper = OutputsAsTuple(model, output_names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about Python-side shape checks
        torch.onnx.export(
            wrapper,
            example_inputs(model.config, multiple_choice=architecture == "AlbertForMultipleChoice"),
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes(architecture, output_names),
            opset_version=OPSET,
            do_constant_folding=True,
        )


# ----------------------------------------------------------------------------------------
# weight sharing in the ONNX graph


def _digest(array: np.ndarray) -> tuple[str, tuple[int, ...], str]:
    return (str(array.dtype), array.shape, hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest())


def _rename_inputs(graph: Any, renames: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def share_initializers(model: Any, tie_transposes: bool = True) -> dict[str, int]:
    """Make every weight appear once in `model` (an onnx.ModelProto, edited in place).

    `tie_transposes=False` keeps a transposed copy as its own weight: before int8 quantisation
    that lets the tied decoder be quantised too instead of pinning an fp32 table for it.

    Returns counts of what was rewritten: Identity nodes bypassed, duplicate initializers merged,
    transposed copies replaced by a Transpose node.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    outputs = {o.name for o in graph.output}
    initializers = {init.name: init for init in graph.initializer}

    # 1. Identity(initializer) -> the initializer itself
    bypass = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    _rename_inputs(graph, bypass)
    kept_nodes = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in bypass)]

    # 2. byte-identical initializers -> one
    arrays = {name: numpy_helper.to_array(init) for name, init in initializers.items()}
    canonical: dict[tuple[str, tuple[int, ...], str], str] = {}
    merged: dict[str, str] = {}
    for name, array in arrays.items():
        first = canonical.setdefault(_digest(array), name)
        if first != name:
            merged[name] = first
    _rename_inputs(graph, merged)

    # 3. an initializer equal to another's transpose -> Transpose node (the tied MLM decoder)
    transposed: dict[str, str] = {}
    if tie_transposes:
        kept_by_transpose: dict[tuple[str, tuple[int, ...], str], str] = {}
        for name, array in arrays.items():
            if array.ndim != 2 or name in merged:
                continue
            partner = kept_by_transpose.get(_digest(array))
            if partner is not None:
                transposed[name] = partner
            else:
                kept_by_transpose[_digest(array.T)] = name
    transpose_nodes = [
        helper.make_node("Transpose", [src], [name], name=f"shared_transpose/{name}", perm=[1, 0])
        for name, src in transposed.items()
    ]
    dropped = set(merged) | set(transposed)
    remaining = [init for init in graph.initializer if init.name not in dropped]
    del graph.initializer[:]
    graph.initializer.extend(remaining)
    del graph.node[:]
    graph.node.extend(transpose_nodes + kept_nodes)  # inputs of a Transpose are initializers: order ok
    return {"identity_bypassed": len(bypass), "merged": len(merged), "transposed": len(transposed)}


def unused_initializers_removed(model: Any) -> int:
    used = {name for node in model.graph.node for name in node.input}
    keep = [init for init in model.graph.initializer if init.name in used]
    removed = len(model.graph.initializer) - len(keep)
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return removed


# ----------------------------------------------------------------------------------------
# int8


def quantize_onnx(source: Path, target: Path, per_channel: bool = True) -> None:
    """Dynamic int8 quantisation: weights int8 ahead of time (per output channel), activations
    quantised per batch at run time. Quantised: MatMul/Gemm with a constant weight (all the
    linear layers), embedding lookups, and each fused `Attention` node, which becomes `QAttention`
    (its Q|K|V product int8); the activation x activation products of attention stay fp32.
    On a CPU without VNNI the weights get 7 bits, as onnxruntime advises: there its u8 x s8
    products add up in 16 bits and saturate with full-range weights."""
    quantization = require("onnxruntime.quantization")
    logging.disable(logging.WARNING)  # the quantiser logs per-tensor notes on the root logger
    try:
        quantization.quantize_dynamic(
            str(source),
            str(target),
            weight_type=quantization.QuantType.QInt8,
            per_channel=per_channel,
            # without VNNI, u8 x s8 products saturate 16-bit sums; 7-bit weights avoid that
            reduce_range=not cpu_has_vnni(),
            op_types_to_quantize=["MatMul", "Gemm", "Gather", "Attention"],
            # fused onnxruntime ops (`fuse_for_onnxruntime`) carry no type information of their own
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": require("onnx").TensorProto.FLOAT},
        )
    finally:
        logging.disable(logging.NOTSET)


ATTENTION_SCOPE = re.compile(r"^(.*/attention(?:_\d+)?)/[^/]+$")  # one attention application's ops
MASK_INDEX = "attention_mask_index"


def fuse_attention(model: Any, num_heads: int) -> int:
    """Replace each attention application's subgraph in a traced `model` (an onnx.ModelProto,
    edited in place) by one onnxruntime `Attention` node; return how many were replaced.

    onnxruntime's own attention fusion looks for transformers' three Q/K/V products and does not
    match our graph, which projects Q|K|V in one product ([Q | K | V] columns, exactly the weight
    layout `Attention` takes) and exports SDPA's decomposition. The subgraph of one application is
    every op in its module scope the context (the input of the output projection) depends on: the
    Q|K|V product and bias, the head split, the scaled products, the padding mask and softmax.
    The shared Q|K|V weight stays one initializer used by every node. Quantisation then turns each
    node into `QAttention` (int8 Q|K|V product, attention itself in fp32)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    scopes: dict[str, set[int]] = {}
    for node in graph.node:
        match = ATTENTION_SCOPE.match(node.name)
        if match:
            scopes.setdefault(match.group(1), set()).add(id(node))
    replaced: dict[int, Any] = {}  # id of a replaced node -> the Attention node (or None)
    mask = None
    for scope, members in scopes.items():
        core = _attention_core(graph, scope, members, initializers, producer, consumers)
        if core is None:
            continue
        nodes, x, weight, bias, context, core_mask = core
        mask = mask or core_mask
        fused = helper.make_node(
            "Attention", [x, weight, bias, MASK_INDEX], [context],
            name=f"{scope}/Attention", domain="com.microsoft", num_heads=num_heads,
        )  # fmt: skip
        first = next(node for node in graph.node if id(node) in nodes)
        replaced.update(dict.fromkeys(nodes) | {id(first): fused})
    if not replaced:
        return 0
    # the boolean (batch, 1, 1, seq) padding mask every application reads -> (batch, seq) int32
    graph.initializer.append(numpy_helper.from_array(np.array([1, 2], dtype=np.int64), f"{MASK_INDEX}_axes"))
    prepare = [
        helper.make_node("Squeeze", [mask, f"{MASK_INDEX}_axes"], [f"{MASK_INDEX}_bool"], name=f"{MASK_INDEX}/Squeeze"),
        helper.make_node("Cast", [f"{MASK_INDEX}_bool"], [MASK_INDEX], name=f"{MASK_INDEX}/Cast", to=TensorProto.INT32),
    ]  # fmt: skip
    nodes = []
    for node in graph.node:
        if id(node) not in replaced:
            nodes.append(node)
        elif replaced[id(node)] is not None:
            nodes.append(replaced[id(node)])
        if mask in node.output:
            nodes.extend(prepare)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    _dead_nodes_removed(graph)  # shape computations only the replaced ops read
    unused_initializers_removed(model)  # and their constants
    return sum(node is not None for node in replaced.values())


def _dead_nodes_removed(graph: Any) -> None:
    """Drop every node none of whose outputs is read (by a node or as a graph output)."""
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        live = [node for node in graph.node if any(o in read for o in node.output)]
        if len(live) == len(graph.node):
            return
        del graph.node[:]
        graph.node.extend(live)


def _attention_core(
    graph: Any, scope: str, members: set[int], initializers: dict, producer: dict, consumers: dict
) -> tuple[set[int], str, str, str, str, str] | None:
    """(node ids, input, Q|K|V weight, bias, context, boolean mask) of one attention application,
    or None where the scope's ops do not have that shape (then it stays as traced)."""

    def square_weight(node: Any) -> bool:
        dims = list(initializers[node.input[1]].dims) if node.input[1] in initializers else []
        return len(dims) == 2 and dims[0] == dims[1]

    projections = [
        node for node in graph.node
        if node.op_type == "MatMul" and id(producer.get(node.input[0])) in members and square_weight(node)
    ]  # fmt: skip
    if len(projections) != 1:
        return None
    context = projections[0].input[0]
    core: dict[int, Any] = {}
    todo = [producer[context]]
    while todo:  # everything in the scope the context depends on
        node = todo.pop()
        if id(node) in core or id(node) not in members:
            continue
        core[id(node)] = node
        todo.extend(producer[name] for name in node.input if name in producer)
    nodes = list(core.values())
    leaving = {o for n in nodes for o in n.output if any(id(c) not in core for c in consumers.get(o, []))}
    products = [n for n in nodes if n.op_type == "MatMul" and n.input[1] in initializers]
    biases = [name for n in nodes if n.op_type == "Add" for name in n.input if name in initializers]
    masks = {
        name for n in nodes if n.op_type == "Where" for name in n.input if id(producer.get(name)) not in core
    }
    masks -= set(initializers)
    outputs = {o.name for o in graph.output}
    if (
        leaving != {context}
        or context in outputs
        or len(products) != 1
        or len(biases) != 1
        or len(masks) != 1
    ):
        return None
    return set(core), products[0].input[0], products[0].input[1], biases[0], context, masks.pop()


def fuse_for_onnxruntime(source: Path, target: Path, config: AlbertConfig) -> None:
    """onnxruntime's transformer graph fusions, before int8 quantisation: each residual add +
    LayerNorm becomes one `SkipLayerNormalization` and each GELU (erf or tanh form, whichever the
    graph computes) one `Gelu`/`FastGelu` kernel. With int8 products the elementwise passes
    between them are a large share of the time, and the fused kernels make one pass where the
    plain graph makes several (albert-base-v2 at 8 x 128: 1.3x the unfused int8 graph's speed,
    the same min cosine to fp32). The fused ops are onnxruntime's own (domain com.microsoft), so
    the int8 file is for onnxruntime, which `albert serve --runtime onnx` uses. The attention
    is fused before this (`fuse_attention`)."""
    optimizer = require("onnxruntime.transformers.optimizer")
    fused = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size,
        opt_level=1,
    )
    fused.save_model_to_file(str(target))


# ----------------------------------------------------------------------------------------
# the export


def export_onnx(model: AlbertPreTrainedModel, output: str | os.PathLike, int8: bool = False) -> Path:
    """Write `model` as one ONNX file with every shared weight stored once; return its path."""
    onnx = require("onnx")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".albert-export-") as work:
        traced = Path(work) / "traced.onnx"
        trace_to_onnx(model, traced)
        proto = onnx.load(str(traced))
        counts = share_initializers(proto, tie_transposes=not int8)
        logger.debug("weight sharing in %s: %s", output.name, counts)
        if int8:
            fuse_attention(proto, model.config.num_attention_heads)
            onnx.save(proto, str(traced))
            fuse_for_onnxruntime(traced, traced.with_name("fused.onnx"), model.config)
            quantize_onnx(traced.with_name("fused.onnx"), traced.with_name("int8.onnx"))
            proto = onnx.load(str(traced.with_name("int8.onnx")))
            share_initializers(proto)  # quantised copies of one weight collapse again
        unused_initializers_removed(proto)
        metadata = {
            "albert_architecture": type(model).__name__,
            "albert_precision": "int8" if int8 else "fp32",
        }
        for key, value in metadata.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        atomic_write(output, lambda tmp: onnx.save(proto, str(tmp)))
    return output


def model_class_for(config: AlbertConfig, task: str) -> type[AlbertPreTrainedModel]:
    if task == "auto":
        names = [n for n in (config.architectures or []) if n in MODEL_CLASSES]
        return MODEL_CLASSES[names[0]] if names else MODEL_CLASSES["AlbertModel"]
    if task not in TASKS:
        raise AlbertError(f"unknown task {task!r}; choose one of: auto, {', '.join(TASKS)}")
    return MODEL_CLASSES[TASKS[task]]


def find_tokenizer(model_dir: Path, tokenizer_dir: Path | None, vocab_size: int) -> AlbertTokenizer | None:
    """The tokenizer to ship with the model (None if the model directory has none)."""
    source = tokenizer_dir or model_dir
    if not ((source / SPM_FILE).is_file() or (source / VOCAB_FILE).is_file()):
        if tokenizer_dir is not None:
            raise AlbertError(
                f"{tokenizer_dir} has no {SPM_FILE} or {VOCAB_FILE}; pass a tokenizer directory"
            )
        logger.warning(
            "%s has no tokenizer files; the exported model runs on token ids only (pass --tokenizer DIR)",
            model_dir,
        )
        return None
    if tokenizer_dir is not None:
        from albert.data.shards import check_same_tokenizer

        check_same_tokenizer(tokenizer_dir, model_dir)
    tokenizer = AlbertTokenizer.from_pretrained(source)
    if len(tokenizer) > vocab_size:
        raise AlbertError(
            f"the tokenizer in {source} has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{vocab_size}; pass the tokenizer the model was trained with (--tokenizer DIR)"
        )
    return tokenizer


def export_model_dir(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    task: str = "auto",
    int8: bool = False,
    tokenizer_dir: str | os.PathLike | None = None,
) -> Path:
    """Load a checkpoint directory, export it, and put config.json + tokenizer beside the file.

    `output` is a .onnx file path, or a directory (then `model.onnx` / `model_int8.onnx` in it).
    """
    model_dir = weights_directory(model_dir)
    config = AlbertConfig.from_pretrained(model_dir)
    cls = model_class_for(config, task)
    tokenizer = find_tokenizer(model_dir, Path(tokenizer_dir) if tokenizer_dir else None, config.vocab_size)
    output = Path(output)
    if output.suffix != ".onnx":
        output = output / ("model_int8.onnx" if int8 else "model.onnx")
    check_output(output, directory=False)
    model = cls.from_pretrained(model_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    kept = (
        f"the earlier {output.name} and its files are intact" if output.exists() else "nothing was replaced"
    )
    # every file is written into a staging directory first and moved into place only when all
    # are complete: a full disk leaves the earlier export whole, never a mix of two
    with (
        save_guard(output, kept),
        tempfile.TemporaryDirectory(dir=output.parent, prefix=".albert-export-") as work,
    ):
        staging = Path(work)
        export_onnx(model, staging / output.name, int8=int8)
        (staging / CONFIG_NAME).write_text(model.config.to_json_string(), encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        for name in SIDE_FILES:
            if (model_dir / name).is_file() and model_dir.resolve() != output.parent.resolve():
                (staging / name).write_bytes((model_dir / name).read_bytes())
        for path in staging.iterdir():
            os.replace(path, output.parent / path.name)
    parameter_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
    logger.info(
        "%s: %.1f MB for %.1f MB of fp32 parameters", output.name, output.stat().st_size / 1e6, parameter_mb
    )
    return output


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default: onnx)")
    parser.add_argument("--model", required=True, help="model directory (config.json + weights)")
    parser.add_argument("--output", required=True, help="the .onnx file to write, or a directory")
    parser.add_argument("--int8", action="store_true", help="dynamic int8 quantisation (about 1/4 the size)")
    parser.add_argument(
        "--task",
        default="auto",
        help=f"auto (from config.json's architectures) or one of: {', '.join(TASKS)}",
    )
    parser.add_argument("--tokenizer", help="tokenizer directory, if not in the model directory")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(format="%(message)s")
    logger.setLevel(logging.INFO)
    if args.task != "auto" and args.task not in TASKS:
        raise AlbertError(f"unknown task {args.task!r}; choose one of: auto, {', '.join(TASKS)}")
    path = export_model_dir(
        args.model, args.output, task=args.task, int8=args.int8, tokenizer_dir=args.tokenizer
    )
    config = json.loads((path.parent / CONFIG_NAME).read_text(encoding="utf-8"))
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {config['architectures'][0]}) and its config/tokenizer"
    )
    return 0
