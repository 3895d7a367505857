"""`albert.quantize(model)`: an int8 copy, close to fp32, original untouched, every head."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

# fixtures shared between test files (pytest puts this folder on sys.path)
from test_export_fixtures import tiny_config, trained_like
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

import albert
from albert.errors import AlbertError
from albert.modeling import MODEL_CLASSES, AlbertModel
from albert.quantization import Int8AlbertAttention, Int8AlbertMLMHead

MEDIUM = dict(
    vocab_size=1000, embedding_size=64, hidden_size=256, num_attention_heads=4, intermediate_size=1024
)


def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 1000, (3, 24), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 15:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 12:] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def min_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), dim=-1).min().item()


def test_int8_hidden_states_are_close_and_the_original_is_untouched() -> None:
    torch.manual_seed(0)
    model = trained_like(AlbertModel(tiny_config(**MEDIUM, num_hidden_layers=6)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    int8 = albert.quantize(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(isinstance(m, (DynamicLinear, Int8AlbertAttention)) for m in model.modules())
    with torch.no_grad():
        reference, quantized = model(**batch()), int8(**batch())
    assert min_cosine(quantized.last_hidden_state, reference.last_hidden_state) >= 0.99
    assert min_cosine(quantized.pooler_output, reference.pooler_output) >= 0.99
    # one shared block: one int8 Q/K/V, dense, ffn, ffn_output, plus projection and pooler
    linears = [m for m in int8.modules() if isinstance(m, DynamicLinear)]
    assert len(linears) == 6 and not any(isinstance(m, torch.nn.Linear) for m in int8.modules())


@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_every_head_quantises(name: str) -> None:
    torch.manual_seed(0)
    num_labels = 2 if name == "AlbertForQuestionAnswering" else 3
    model = trained_like(MODEL_CLASSES[name](tiny_config(**MEDIUM, num_labels=num_labels)))
    int8 = albert.quantize(model)
    inputs = batch()
    if name == "AlbertForMultipleChoice":
        inputs = {k: v.view(1, 3, -1) for k, v in inputs.items()}
    with torch.no_grad():
        reference, quantized = model(**inputs), int8(**inputs)
    assert reference.keys() == quantized.keys()
    for key in reference.keys():
        if reference[key].shape[-1] > 3:  # cosine is meaningless on 1-3 logits: compare values
            assert min_cosine(quantized[key], reference[key]) >= 0.99, key
        else:
            torch.testing.assert_close(quantized[key], reference[key], atol=0.1, rtol=0.1)


def test_tied_mlm_decoder_gets_an_int8_copy() -> None:
    torch.manual_seed(0)
    model = trained_like(MODEL_CLASSES["AlbertForMaskedLM"](tiny_config(**MEDIUM)))
    int8 = albert.quantize(model)
    assert isinstance(int8.predictions, Int8AlbertMLMHead)
    assert int8.predictions.decoder.weight().shape == model.albert.embeddings.word_embeddings.weight.shape
    # the embedding lookup still uses the fp32 table, identical to the original
    assert torch.equal(
        int8.albert.embeddings.word_embeddings.weight, model.albert.embeddings.word_embeddings.weight
    )
    with torch.no_grad():
        assert min_cosine(int8(**batch()).logits, model(**batch()).logits) >= 0.99


def test_partial_sharing_and_output_attentions() -> None:
    torch.manual_seed(0)
    model = trained_like(AlbertModel(tiny_config(**MEDIUM, share="attention")))
    int8 = albert.quantize(model)
    with torch.no_grad():
        reference = model(**batch(), output_attentions=True)
        quantized = int8(**batch(), output_attentions=True)
    assert len(quantized.attentions) == len(reference.attentions) == 3
    assert min_cosine(quantized.last_hidden_state, reference.last_hidden_state) >= 0.99


def test_callable_after_the_submodule_is_imported_and_errors() -> None:
    importlib.import_module("albert.quantization")  # the module behind `albert.quantize`
    model = AlbertModel(tiny_config()).eval()
    first, second = albert.quantize(model), albert.quantize(model)
    assert first is not second
    with pytest.raises(AlbertError, match="cannot be saved"):
        first.save_pretrained("unused")
    with pytest.raises(AlbertError, match="takes an ALBERT model"):
        albert.quantize(torch.nn.Linear(2, 2))
    with pytest.raises(AlbertError, match="not available"):
        albert.quantize(model, engine="no-such-engine")


def test_full_range_activations_where_the_cpu_allows_it() -> None:
    """With VNNI the 8th activation bit is kept (fbgemm's reduce_range is only needed on AVX2)."""
    from albert.hardware import cpu_has_vnni
    from albert.quantization import Int8Linear

    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64) * 3
    int8 = albert.quantize(albert.AlbertModel(albert.AlbertConfig(**_SMALL_FOR_RANGE)))
    layers = [m for m in int8.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert layers and all(isinstance(m, Int8Linear) for m in layers)
    assert Int8Linear.reduce_range == (not cpu_has_vnni())
    from albert.quantization import _dynamic_int8

    q = _dynamic_int8(linear)
    errors = {}
    for reduce_range in (True, False):
        q.reduce_range = reduce_range
        errors[reduce_range] = (q(x) - linear(x)).abs().mean().item()
    if cpu_has_vnni():  # elsewhere full-range activations may saturate: not used there
        assert errors[False] < errors[True]


_SMALL_FOR_RANGE = dict(
    vocab_size=50,
    embedding_size=8,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
)


def test_the_process_wide_engine_is_left_as_it_was() -> None:
    """The engine only chooses the kernels the weights are packed for; quantize() restores it."""
    torch.manual_seed(0)
    model = trained_like(AlbertModel(tiny_config(**MEDIUM)))
    before = torch.backends.quantized.engine
    for engine in [e for e in torch.backends.quantized.supported_engines if e not in ("none", before)][:2]:
        int8 = albert.quantize(model, engine=engine)
        assert torch.backends.quantized.engine == before
        with torch.no_grad():
            reference, quantized = model(**batch()), int8(**batch())
        assert min_cosine(quantized.last_hidden_state, reference.last_hidden_state) >= 0.99, engine
