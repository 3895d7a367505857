"""Turn a BERT checkpoint into an ALBERT: factorised embeddings, shared layers, same tokenizer.

`albert convert-bert --teacher DIR --output DIR` reads any BERT in the transformers layout
(`config.json` with model_type "bert", `model.safetensors` or `pytorch_model.bin`; keys with or
without the `bert.` prefix, so BertModel, BertForMaskedLM, BertForPreTraining and
sentence-transformers BERTs such as MiniLM all work) and writes an ordinary ALBERT model
directory (`AlbertForPreTraining`: base model + MLM head + SOP head) with the teacher's
`vocab.txt`, ready for `albert pretrain`, distillation or fine-tuning.

Three things are approximated, each as well as a closed form allows:

1. Factorised embeddings (E < H). BERT computes LN_H(w + p + t): word, position and type
   vectors summed in H dimensions and layer-normalised there. ALBERT computes
   W_in · LN_E(w_E + p_E + t_E) + b_in. LN_H only sees the *centred* sum c = x - mean(x)·1, so
   the student keeps the E directions that carry most of it: B (H x E, orthonormal, orthogonal
   to 1) are the top eigenvectors of the second moment of c when w, p and t are drawn uniformly
   from their tables (independent draws: E[cc^T] = sum of the three second moments plus the
   cross terms of their means - type and position vectors are added to every token, so they
   count as much as the words, not by their row counts). Every table is mapped into that basis
   (x_E = B^T x), which is linear, so the sum is mapped consistently. LN_E then subtracts the
   mean of the E coordinates, which would remove an arbitrary mixture of the kept directions;
   a Householder rotation Q of the basis makes that mean equal to the *least* important kept
   coordinate (Q·1/sqrt(E) = e_E), so the centring removes exactly one direction, the weakest.
   With ỹ the other E-1 coordinates, LN_E(x_E) = sqrt(E)·Q^T ỹ/|ỹ| and, as c ≈ Bỹ,
   LN_H(x) = γ ⊙ c·sqrt(H)/|c| + β ≈ diag(γ)·B·Q·sqrt(H/E) · LN_E(x_E) + β.
   So: embeddings_E = x·B·Q, E-space LayerNorm γ = 1, β = 0, W_in = κ·diag(γ_H)·B·Q·sqrt(H/E),
   b_in = β_H, where κ < 1 is the least-squares gain over random sums (`projection_gain`: LN_E
   stretches the kept part of c to full length, so unscaled it overshoots).
   Measured on all-MiniLM-L6-v2, E = 128, share="none", rotten_tomatoes dev sentences
   (relative error of the embedding output / mean-pooled cosine of the last layer vs the
   teacher). 256 sentences: truncated SVD of the word table alone 0.903 / 0.17, SVD of the
   stacked tables 0.896 / 0.18, this basis without Q 0.742 / 0.653, with Q 0.741 / 0.656.
   128 sentences: with Q 0.742 / 0.655, with Q and κ 0.717 / 0.660.
   (Weighting the basis by γ_H was worse: 0.79 / 0.61.) The word table's own rank-128 SVD
   error is 0.58: a trained BERT's embeddings are far from low rank, so E < H always costs
   accuracy that distillation must win back.
   With E = H nothing is approximated: the tables and LayerNorm are copied and W_in = I, so
   the ALBERT reproduces the BERT exactly (with share="none" and the same depth).

2. Shared layers. `init="average"` is the element-wise mean of all teacher layers,
   `"layer:K"` copies layer K, `"best"` builds every candidate (each layer and the average),
   runs it on a probe batch and keeps the one whose last hidden state is closest to the
   teacher's (relative error; the numbers are in the report). Unshared halves
   (share="attention"/"ffn") and share="none" copy teacher layer round(i·(Lt-1)/(Ls-1)) into
   student layer i, so `num_hidden_layers` may differ from the teacher's.

3. The MLM head. BERT's transform is LN_H(act(D·h)) and the decoder is the tied H-wide word
   table; ALBERT's is LN_E(act(D_E·h)) with the tied E-wide table. With E = H it is copied
   (exact). With E < H the activation sits between the H->E map and the LayerNorm, and the
   E basis is a rotation that act() does not commute with, so no closed form carries the
   transform over: projecting D onto the basis (D_E = (BQ)^T·D) was tried and predicted the
   teacher's top token *less* often than the bias alone, so the transform (dense, LayerNorm)
   is newly initialised and only the decoder bias - the vocabulary prior - is carried over,
   with BERT's transform β folded in exactly (its contribution w_v·β is a constant per
   vocabulary item). Distillation or continued pretraining trains the transform.

The teacher is never run through transformers: a BERT *is* an ALBERT with E = H and nothing
shared, so the teacher reference for `init="best"` and the report is built with the same code.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from albert.checkpoint import read_state_dict
from albert.config import CONFIG_NAME, SHARE_MODES, AlbertConfig
from albert.errors import AlbertError
from albert.modeling import AlbertForPreTraining, AlbertModel
from albert.paths import check_output

SUPPORTED_MODEL_TYPES = ("bert",)
VOCAB_FILE = "vocab.txt"
TOKENIZER_FILES = (VOCAB_FILE, "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
REPORT_FILE = "conversion_report.json"
PROBE_CORPUS = Path(__file__).parent / "resources" / "corpus_en.txt.gz"

# BERT's per-layer module names -> the ALBERT layer's (transformers' naming on both sides)
BERT_LAYER_NAMES = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.dense",
    "attention.output.LayerNorm": "attention.LayerNorm",
    "intermediate.dense": "ffn",
    "output.dense": "ffn_output",
    "output.LayerNorm": "full_layer_layer_norm",
}
HEAD_NAMES = {
    "cls.predictions.transform.dense": "predictions.dense",
    "cls.predictions.transform.LayerNorm": "predictions.LayerNorm",
}


# ----------------------------------------------------------------------------------------
# reading the teacher


@dataclass
class Teacher:
    """A BERT checkpoint with its keys normalised to BertModel's (no `bert.` prefix)."""

    directory: Path
    config: dict[str, Any]
    state: dict[str, Tensor]  # embeddings.*, encoder.layer.*, pooler.*, cls.predictions.*
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def has_mlm_head(self) -> bool:
        return "cls.predictions.transform.dense.weight" in self.state

    @property
    def has_pooler(self) -> bool:
        return "pooler.dense.weight" in self.state

    def base_parameter_count(self) -> int:
        """What transformers' BertModel holds: embeddings, encoder and pooler (no buffers)."""
        return sum(v.numel() for k, v in self.state.items() if not k.startswith("cls."))

    def layer(self, i: int) -> dict[str, Tensor]:
        """Teacher layer i under the ALBERT layer's local names (`attention.query.weight`, ...)."""
        prefix = f"encoder.layer.{i}."
        out = {}
        for bert_name, albert_name in BERT_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                out[f"{albert_name}.{kind}"] = self.state[f"{prefix}{bert_name}.{kind}"]
        return out


def _normalise_bert_key(key: str) -> str:
    key = key.removeprefix("bert.")
    if key.endswith(".gamma"):  # TF-era checkpoints name LayerNorm parameters gamma/beta
        key = key[: -len(".gamma")] + ".weight"
    elif key.endswith(".beta"):
        key = key[: -len(".beta")] + ".bias"
    return key


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise AlbertError(
            f"{directory} has no {CONFIG_NAME}; pass a BERT model directory (transformers layout)"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AlbertError(f"{path} is not valid JSON ({e}); fix or re-save the teacher's config") from None
    if not isinstance(config, dict):
        raise AlbertError(f"{path} must hold a JSON object of config fields")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise AlbertError(
            f"teacher {directory} has model_type={model_type!r}; convert-bert supports "
            f"{', '.join(SUPPORTED_MODEL_TYPES)} only (BERT and BERT-layout models such as MiniLM or "
            "sentence-transformers BERTs)"
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise AlbertError(
            f"teacher uses position_embedding_type={config['position_embedding_type']!r}; "
            "ALBERT has absolute position embeddings only"
        )
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise AlbertError("teacher is a BERT decoder (is_decoder/add_cross_attention); only encoders convert")
    missing = [
        k
        for k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads")
        if k not in config
    ]
    if missing:
        raise AlbertError(f"{path} lacks {', '.join(missing)}; is this a complete BERT config?")
    return config


def read_teacher(directory: str | os.PathLike) -> Teacher:
    """Load and validate a BERT directory: config, weights (safely) and a WordPiece vocab.txt."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise AlbertError(f"teacher directory {directory} does not exist")
    config = _read_config(directory)
    if not (directory / VOCAB_FILE).is_file():
        raise AlbertError(
            f"teacher {directory} has no {VOCAB_FILE}; the student reuses the teacher's WordPiece vocabulary, "
            "so copy the teacher's vocab.txt (from its tokenizer) into that directory"
        )
    vocab_lines = len((directory / VOCAB_FILE).read_bytes().splitlines())
    if vocab_lines > int(config["vocab_size"]):
        raise AlbertError(
            f"teacher's {VOCAB_FILE} has {vocab_lines} tokens but config.json says vocab_size={config['vocab_size']}; "
            "the vocab.txt does not belong to this model"
        )
    state: dict[str, Tensor] = {}
    ignored = []
    for key, value in read_state_dict(directory).items():
        key = _normalise_bert_key(key)
        if key.endswith((".position_ids", ".token_type_ids")):
            continue  # buffers
        if key.startswith(("embeddings.", "encoder.", "pooler.", "cls.predictions.")):
            state[key] = value.detach().float()
        else:
            ignored.append(key)  # task heads (classifier, qa_outputs, NSP) have no ALBERT counterpart
    teacher = Teacher(directory, config, state, sorted(ignored))
    _check_teacher_weights(teacher)
    return teacher


def _check_teacher_weights(teacher: Teacher) -> None:
    needed = [f"embeddings.{n}_embeddings.weight" for n in ("word", "position", "token_type")]
    needed += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(teacher.num_layers):
        needed += [f"encoder.layer.{i}.{n}.{k}" for n in BERT_LAYER_NAMES for k in ("weight", "bias")]
    if any(k.startswith("cls.predictions.transform.") for k in teacher.state):
        needed += [f"{name}.{kind}" for name in HEAD_NAMES for kind in ("weight", "bias")]
    missing = [k for k in needed if k not in teacher.state]
    if missing:
        raise AlbertError(
            f"teacher checkpoint in {teacher.directory} is not a BERT with {teacher.num_layers} layers: missing "
            + ", ".join(missing[:6])
            + (" ..." if len(missing) > 6 else "")
        )
    words = teacher.state["embeddings.word_embeddings.weight"]
    if tuple(words.shape) != (int(teacher.config["vocab_size"]), teacher.hidden_size):
        raise AlbertError(
            f"teacher word embeddings are {tuple(words.shape)} but config.json says vocab_size="
            f"{teacher.config['vocab_size']}, hidden_size={teacher.hidden_size}; fix the teacher's config.json"
        )


# ----------------------------------------------------------------------------------------
# the student's config and layer plan


def student_config(
    teacher: Teacher, embedding_size: int, share: str, num_hidden_layers: int | None
) -> AlbertConfig:
    c = teacher.config
    hidden = teacher.hidden_size
    if not 1 <= embedding_size <= hidden:
        raise AlbertError(
            f"embedding_size={embedding_size} must be between 1 and the teacher's hidden_size={hidden}"
        )
    if share not in SHARE_MODES:
        raise AlbertError(f"share={share!r} is not one of {', '.join(SHARE_MODES)}")
    layers = teacher.num_layers if num_hidden_layers is None else int(num_hidden_layers)
    if layers < 1:
        raise AlbertError(f"num_hidden_layers={layers} must be at least 1")
    return AlbertConfig(
        vocab_size=int(c["vocab_size"]),
        embedding_size=embedding_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=int(c["num_attention_heads"]),
        intermediate_size=int(c.get("intermediate_size", 4 * hidden)),
        hidden_act=c.get("hidden_act", "gelu"),
        hidden_dropout_prob=float(c.get("hidden_dropout_prob", 0.1)),
        attention_probs_dropout_prob=float(c.get("attention_probs_dropout_prob", 0.1)),
        max_position_embeddings=int(c.get("max_position_embeddings", 512)),
        type_vocab_size=int(c.get("type_vocab_size", 2)),
        initializer_range=float(c.get("initializer_range", 0.02)),
        layer_norm_eps=float(c.get("layer_norm_eps", 1e-12)),
        # transformers' AlbertConfig rejects None here; BERT's None means "use hidden_dropout_prob"
        classifier_dropout_prob=float(c.get("classifier_dropout") or c.get("hidden_dropout_prob", 0.1)),
        pad_token_id=c.get("pad_token_id", 0),
        bos_token_id=c.get("bos_token_id"),
        eos_token_id=c.get("eos_token_id"),
        share=share,
    )


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer for each student layer: evenly spread, first and last kept."""
    if student_layers == 1:
        return [teacher_layers - 1]
    return [round(i * (teacher_layers - 1) / (student_layers - 1)) for i in range(student_layers)]


def parse_init(init: str, teacher_layers: int) -> str:
    """Validate `average` | `layer:K` | `best` (K may be negative, counted from the top)."""
    if init in ("average", "best"):
        return init
    if init.startswith("layer:"):
        try:
            k = int(init.split(":", 1)[1])
        except ValueError:
            k = None
        if k is not None and -teacher_layers <= k < teacher_layers:
            return f"layer:{k % teacher_layers}"
        raise AlbertError(f"init={init!r}: K must be an integer between 0 and {teacher_layers - 1}")
    raise AlbertError(f"init={init!r} is not one of average, layer:K, best")


def shared_block(teacher: Teacher, init: str) -> dict[str, Tensor]:
    """The shared layer's parameters: one teacher layer, or the element-wise mean of all."""
    if init.startswith("layer:"):
        return teacher.layer(int(init.split(":", 1)[1]))
    layers = [teacher.layer(i) for i in range(teacher.num_layers)]
    return {k: torch.stack([layer[k] for layer in layers]).mean(0) for k in layers[0]}


def _is_attention(local_name: str) -> bool:
    return local_name.startswith("attention.")


def encoder_state(teacher: Teacher, config: AlbertConfig, init: str) -> dict[str, Tensor]:
    """`encoder.albert_layer_groups.*` and `encoder.unshared_layers.*` for the share mode."""
    mapping = layer_map(teacher.num_layers, config.num_hidden_layers)
    out: dict[str, Tensor] = {}
    if config.share == "none":
        for i, t in enumerate(mapping):
            for name, value in teacher.layer(t).items():
                out[f"encoder.albert_layer_groups.{i}.albert_layers.0.{name}"] = value
        return out
    shared = shared_block(teacher, init)
    for name, value in shared.items():
        if config.share == "all" or _is_attention(name) == (config.share == "attention"):
            out[f"encoder.albert_layer_groups.0.albert_layers.0.{name}"] = value
    if config.share in ("attention", "ffn"):
        for i, t in enumerate(mapping):
            for name, value in teacher.layer(t).items():
                if _is_attention(name) != (config.share == "attention"):
                    out[f"encoder.unshared_layers.{i}.{name}"] = value
    return out


# ----------------------------------------------------------------------------------------
# factorised embeddings


@dataclass
class EmbeddingFactorisation:
    basis: Tensor  # H x E, orthonormal columns; the E-space coordinates of x are x @ basis
    state: dict[str, Tensor]  # embeddings.* and encoder.embedding_hidden_mapping_in.*
    word_svd_error: float  # best rank-E relative error of the word table (truncated SVD)
    word_basis_error: float  # relative error of the centred word table in the basis used


def _centre(m: Tensor) -> Tensor:
    return m - m.mean(dim=1, keepdim=True)


def summed_embedding_basis(tables: list[Tensor], size: int) -> Tensor:
    """Top-`size` eigenvectors (H x size, most important first) of E[c c^T], c the centred sum
    of one row from each table drawn independently and uniformly."""
    centred = [_centre(t.double()) for t in tables]
    means = [t.mean(0) for t in centred]
    moment = sum(t.T @ t / t.shape[0] for t in centred)
    for i, a in enumerate(means):
        for b in means[i + 1 :]:
            moment = moment + torch.outer(a, b) + torch.outer(b, a)
    _, vectors = torch.linalg.eigh(moment)  # ascending eigenvalues
    return vectors.flip(-1)[:, :size]


def householder_to_last(size: int) -> Tensor:
    """Orthogonal Q (size x size) with Q·1/sqrt(size) = e_last: rotates the E-space mean onto
    the least important coordinate, so LayerNorm's centring drops only that one."""
    u = torch.full((size,), 1.0 / math.sqrt(size), dtype=torch.float64)
    v = torch.zeros(size, dtype=torch.float64)
    v[-1] = 1.0
    w = u - v
    if w.norm() < 1e-12:
        return torch.eye(size, dtype=torch.float64)
    return torch.eye(size, dtype=torch.float64) - 2.0 * torch.outer(w, w) / (w @ w)


def _relative_error(m: Tensor, basis: Tensor) -> float:
    return float((m - m @ basis @ basis.T).norm() / m.norm())


def word_svd_error(words: Tensor, size: int) -> float:
    """Relative Frobenius error of the best rank-`size` approximation of the word table."""
    s = torch.linalg.svdvals(words.double())
    return float(s[size:].square().sum().sqrt() / s.square().sum().sqrt())


def _random_sums(tables: list[Tensor], draws: int) -> Tensor:
    generator = torch.Generator().manual_seed(0)
    return sum(t.double()[torch.randint(t.shape[0], (draws,), generator=generator)] for t in tables)


def projection_gain(tables: list[Tensor], gamma: Tensor, basis: Tensor, projection: Tensor) -> float:
    """Least-squares scale for the projection. LN_E stretches the kept part of the centred sum
    to full length, but only part of it is kept (|ỹ| < |c|), so the unscaled projection
    overshoots; the gain <u, v>/<u, u> (u the student's LN output projected, v BERT's
    γ ⊙ LN(c), over random sums of table rows) minimises the mean squared error. It is about
    the average kept fraction |ỹ|/|c| (0.86 for all-MiniLM-L6-v2 at E = 128)."""
    x = _random_sums(tables, draws=16384)
    c = _centre(x)
    target = gamma.double() * c * math.sqrt(c.shape[1]) / c.norm(dim=1, keepdim=True)
    z = _centre(x @ basis)
    student = (z * math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True)) @ projection.T
    return float((student * target).sum() / student.square().sum())


def factorise_embeddings(teacher: Teacher, embedding_size: int) -> EmbeddingFactorisation:
    """Embedding tables of width E plus the E->H projection (derivation: module docstring)."""
    s = teacher.state
    tables = [s[f"embeddings.{n}_embeddings.weight"] for n in ("word", "position", "token_type")]
    gamma, beta = s["embeddings.LayerNorm.weight"], s["embeddings.LayerNorm.bias"]
    hidden = teacher.hidden_size
    svd_error = word_svd_error(tables[0], embedding_size)
    if embedding_size == hidden:  # nothing to approximate: copy, project by the identity
        basis = torch.eye(hidden, dtype=torch.float64)
        ln_weight, ln_bias = gamma, beta
        projection, projection_bias = torch.eye(hidden), torch.zeros(hidden)
        basis_error = 0.0
    else:
        top = summed_embedding_basis(tables, embedding_size)
        basis = top @ householder_to_last(embedding_size)
        ln_weight, ln_bias = torch.ones(embedding_size), torch.zeros(embedding_size)
        projection = gamma.double()[:, None] * basis * math.sqrt(hidden / embedding_size)
        projection = (projection * projection_gain(tables, gamma, basis, projection)).float()
        projection_bias = beta
        basis_error = _relative_error(_centre(tables[0].double()), top)
    word, position, token_type = ((t.double() @ basis).float() for t in tables)
    state = {
        "embeddings.word_embeddings.weight": word,
        "embeddings.position_embeddings.weight": position,
        "embeddings.token_type_embeddings.weight": token_type,
        "embeddings.LayerNorm.weight": ln_weight.clone(),
        "embeddings.LayerNorm.bias": ln_bias.clone(),
        "encoder.embedding_hidden_mapping_in.weight": projection.contiguous(),
        "encoder.embedding_hidden_mapping_in.bias": projection_bias.clone(),
    }
    return EmbeddingFactorisation(basis, state, svd_error, basis_error)


def mlm_head_state(teacher: Teacher, embedding_size: int) -> dict[str, Tensor]:
    """`predictions.*` from BERT's `cls.predictions.*`: all of it when E = H (exact); with E < H
    only the decoder bias, with BERT's transform β folded in (see the module docstring)."""
    s = teacher.state
    bias = s.get("cls.predictions.bias", s.get("cls.predictions.decoder.bias"))
    if bias is None:
        bias = torch.zeros(int(teacher.config["vocab_size"]))
    ln_bias = s["cls.predictions.transform.LayerNorm.bias"]
    if embedding_size == teacher.hidden_size:
        out = {
            f"{albert}.{kind}": s[f"{bert}.{kind}"]
            for bert, albert in HEAD_NAMES.items()
            for kind in ("weight", "bias")
        }
        return {**out, "predictions.bias": bias}
    words = s["embeddings.word_embeddings.weight"]
    return {"predictions.bias": (bias.double() + words.double() @ ln_bias.double()).float()}


# ----------------------------------------------------------------------------------------
# assembling the student


def build_student(
    teacher: Teacher, config: AlbertConfig, init: str, factorisation: EmbeddingFactorisation
) -> AlbertForPreTraining:
    """An `AlbertForPreTraining` with every weight the teacher can provide; the rest (SOP head,
    and the pooler / MLM head when the teacher has none) keeps ALBERT's initialisation."""
    base = dict(factorisation.state)
    base.update(encoder_state(teacher, config, init))
    if teacher.has_pooler:
        base["pooler.weight"] = teacher.state["pooler.dense.weight"]
        base["pooler.bias"] = teacher.state["pooler.dense.bias"]
    state = {f"albert.{k}": v for k, v in base.items()}
    if teacher.has_mlm_head:
        state.update(mlm_head_state(teacher, config.embedding_size))
    model = AlbertForPreTraining(config)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # a bug here, not a user error: the layouts are fixed
        raise RuntimeError(f"convert-bert produced keys the model does not have: {result.unexpected_keys}")
    return model.eval()


def teacher_reference(teacher: Teacher) -> AlbertModel:
    """The teacher itself as an ALBERT (E = H, nothing shared): exact, and needs no transformers."""
    config = student_config(teacher, teacher.hidden_size, "none", None)
    factorisation = factorise_embeddings(teacher, teacher.hidden_size)
    return build_student(teacher, config, "average", factorisation).albert


# ----------------------------------------------------------------------------------------
# measuring a student against the teacher


def default_probe_texts(count: int = 64) -> list[str]:
    """Paragraphs of the bundled English corpus (public-domain novels and scripture)."""
    with gzip.open(PROBE_CORPUS, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f if len(line.split()) >= 8]
    step = max(1, len(lines) // count)
    return lines[::step][:count]


def probe_batch(teacher_dir: Path, texts: list[str], max_length: int = 128) -> dict[str, Tensor]:
    from albert.tokenization import AlbertTokenizer

    if not texts:
        raise AlbertError("the probe set is empty; pass at least one text")
    tokenizer = AlbertTokenizer.from_pretrained(teacher_dir)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def mean_pooled(hidden: Tensor, mask: Tensor) -> Tensor:
    """Sentence embeddings as sentence-transformers computes them: mean over real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@torch.no_grad()
def compare(reference: Tensor, model: AlbertModel, batch: dict[str, Tensor]) -> dict[str, float]:
    """Relative error of the last hidden state (real tokens) and cosine of mean-pooled embeddings."""
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].bool()
    error = (hidden - reference)[mask].norm() / reference[mask].norm()
    cosine = torch.nn.functional.cosine_similarity(
        mean_pooled(hidden, batch["attention_mask"]), mean_pooled(reference, batch["attention_mask"])
    )
    return {"relative_error": round(float(error), 6), "mean_pooled_cosine": round(float(cosine.mean()), 6)}


def candidate_inits(teacher: Teacher) -> list[str]:
    return [f"layer:{k}" for k in range(teacher.num_layers)] + ["average"]


# ----------------------------------------------------------------------------------------
# writing the output


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def copy_tokenizer(teacher_dir: Path, output_dir: Path) -> list[str]:
    """The teacher's tokenizer files, verbatim; `tokenizer_class` is added to
    tokenizer_config.json when missing, so transformers' AutoTokenizer picks WordPiece for an
    "albert" model directory instead of looking for a spiece.model."""
    copied = []
    for name in TOKENIZER_FILES:
        source = teacher_dir / name
        if source.is_file():
            shutil.copyfile(source, output_dir / name)
            copied.append(name)
    config_path = output_dir / "tokenizer_config.json"
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise AlbertError(
                f"teacher's tokenizer_config.json is not valid JSON ({e}); fix or delete it"
            ) from None
    if "tokenizer_class" not in config:
        config["tokenizer_class"] = "BertTokenizer"
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if "tokenizer_config.json" not in copied:
            copied.append("tokenizer_config.json")
    return copied


def _check_output(output_dir: Path) -> None:
    """Never overwrite: the output must be new or an empty directory, in a writable place."""
    check_output(output_dir, directory=True)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise AlbertError(
            f"output {output_dir} already exists and is not empty; choose a new --output directory"
        )


def _staging_dir(output_dir: Path) -> Path:
    """A temporary directory beside `output_dir`, renamed into place once complete."""
    _check_output(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the published model private
    return staging


def _publish(staging: Path, output_dir: Path) -> None:
    if output_dir.is_dir():
        output_dir.rmdir()  # empty, checked in _staging_dir
    os.replace(staging, output_dir)


# ----------------------------------------------------------------------------------------
# the entry point


def convert_bert(
    teacher_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    embedding_size: int = 128,
    share: str = "all",
    num_hidden_layers: int | None = None,
    init: str = "average",
    probe_texts: list[str] | None = None,
) -> dict[str, Any]:
    """Convert a BERT directory into an ALBERT directory; returns (and saves) a report.

    `probe_texts` (default: 64 paragraphs of the bundled corpus) are used to choose
    `init="best"` and to report how close the student's last hidden state is to the teacher's.
    """
    output = Path(output_dir).expanduser()
    _check_output(output)
    teacher = read_teacher(teacher_dir)
    config = student_config(teacher, embedding_size, share, num_hidden_layers)
    init = parse_init(init, teacher.num_layers)
    factorisation = factorise_embeddings(teacher, embedding_size)

    # probe within the teacher's limits: a BERT with fewer than 128 positions converts too
    probe_length = min(128, int(teacher.config.get("max_position_embeddings", 512)))
    batch = probe_batch(
        teacher.directory, probe_texts if probe_texts is not None else default_probe_texts(), probe_length
    )
    with torch.no_grad():
        reference = teacher_reference(teacher)(**batch).last_hidden_state
    candidates: dict[str, dict[str, float]] = {}
    chosen = init
    if share != "none" and init == "best":
        for name in candidate_inits(teacher):
            candidates[name] = compare(
                reference, build_student(teacher, config, name, factorisation).albert, batch
            )
        chosen = min(candidates, key=lambda n: candidates[n]["relative_error"])
    student = build_student(teacher, config, chosen, factorisation)

    staging = _staging_dir(output)
    try:
        student.save_pretrained(staging)
        tokenizer_files = copy_tokenizer(teacher.directory, staging)
        report = {
            "teacher": str(teacher.directory),
            "output": str(output),
            "architecture": type(student).__name__,
            "embedding_size": embedding_size,
            "hidden_size": teacher.hidden_size,
            "share": share,
            "teacher_layers": teacher.num_layers,
            "student_layers": config.num_hidden_layers,
            "layer_map": layer_map(teacher.num_layers, config.num_hidden_layers),
            "init": "per-layer copy" if share == "none" else chosen,
            "init_requested": init,
            "init_candidates": candidates,
            "teacher_parameters": teacher.base_parameter_count(),
            "student_parameters": parameter_count(student.albert),
            "student_parameters_with_heads": parameter_count(student),
            "word_embedding_svd_error": round(factorisation.word_svd_error, 6),
            "word_embedding_basis_error": round(factorisation.word_basis_error, 6),
            "probe": compare(reference, student.albert, batch),
            "probe_texts": int(batch["input_ids"].shape[0]),
            "mlm_head": "copied"
            if teacher.has_mlm_head and embedding_size == teacher.hidden_size
            else "decoder bias carried over, transform newly initialised (E < H)"
            if teacher.has_mlm_head
            else "newly initialised (teacher has none)",
            "pooler": "copied" if teacher.has_pooler else "newly initialised (teacher has none)",
            "sop_head": "newly initialised (BERT's NSP head is a different task)",
            "ignored_teacher_keys": teacher.ignored_keys,
            "tokenizer_files": tokenizer_files,
        }
        report["parameter_ratio"] = round(report["student_parameters"] / report["teacher_parameters"], 4)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        _publish(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return report


# ----------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teacher", required=True, help="BERT model directory (config.json, weights, vocab.txt)"
    )
    parser.add_argument("--output", required=True, help="new directory for the ALBERT student")
    parser.add_argument("--embedding-size", type=int, default=128, help="E, the factorised embedding width")
    parser.add_argument("--share", choices=SHARE_MODES, default="all", help="what is shared across layers")
    parser.add_argument(
        "--num-hidden-layers", type=int, default=None, help="student depth (default: teacher's)"
    )
    parser.add_argument(
        "--init",
        default="average",
        help="shared block from: average | layer:K | best (measured on the probe texts)",
    )
    parser.add_argument(
        "--probe-texts",
        default=None,
        help="text file, one text per line, to measure the student against the teacher (default: bundled corpus)",
    )


def _read_probe_file(path: str) -> list[str]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AlbertError(f"probe file {path} not found") from None
    except UnicodeDecodeError as e:
        raise AlbertError(f"probe file {path} is not UTF-8 ({e})") from None
    texts = [line.strip() for line in lines if line.strip()]
    if not texts:
        raise AlbertError(f"probe file {path} has no non-empty lines")
    return texts


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"teacher: {report['teacher']} ({report['teacher_layers']} layers, H={report['hidden_size']})",
        f"student: {report['output']} ({report['architecture']}, E={report['embedding_size']}, "
        f"share={report['share']}, {report['student_layers']} layers, init={report['init']})",
        f"parameters: teacher {report['teacher_parameters']:,} -> student {report['student_parameters']:,} "
        f"({report['parameter_ratio']:.1%}; {report['student_parameters_with_heads']:,} with MLM/SOP heads)",
        f"word embedding rank-{report['embedding_size']} SVD relative error: {report['word_embedding_svd_error']:.4f} "
        f"(in the basis used: {report['word_embedding_basis_error']:.4f})",
    ]
    for name, numbers in report["init_candidates"].items():
        lines.append(
            f"  init {name:>9}: relative error {numbers['relative_error']:.4f}, "
            f"mean-pooled cosine {numbers['mean_pooled_cosine']:.4f}"
        )
    probe = report["probe"]
    lines.append(
        f"vs teacher on {report['probe_texts']} probe texts: last hidden state relative error "
        f"{probe['relative_error']:.4f}, mean-pooled cosine {probe['mean_pooled_cosine']:.4f}"
    )
    lines.append(
        f"MLM head: {report['mlm_head']}; pooler: {report['pooler']}; SOP head: {report['sop_head']}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = convert_bert(
        args.teacher,
        args.output,
        embedding_size=args.embedding_size,
        share=args.share,
        num_hidden_layers=args.num_hidden_layers,
        init=args.init,
        probe_texts=_read_probe_file(args.probe_texts) if args.probe_texts else None,
    )
    print(format_report(report))
    return 0
