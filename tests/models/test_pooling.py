from __future__ import annotations

import json
import math

import pytest
import torch
from sentence_transformers.sentence_transformer.modules import Pooling

from seqstruct.models.pooling import (
    LAYER_ATTENTION,
    LAYER_ATTENTION_VARIANTS,
    POOLINGS,
    LayerAttentionPooling,
    SeqPooling,
    cls_pool,
    get_pooling,
    max_pool,
    mean_pool,
    pooling_module,
    pooling_name,
    st_native,
)

# A hand-made batch: <cls>=0, <pad>=1, <eos>=2; residues are other ids. Row 0 has 3 residues, row 1 one
# residue and two pads, row 2 only <cls><eos> (nothing to pool) and three pads.
CLS, PAD, EOS = 0, 1, 2
SPECIALS = [CLS, EOS]
INPUT_IDS = torch.tensor(
    [
        [CLS, 5, 6, 7, EOS],
        [CLS, 5, EOS, PAD, PAD],
        [CLS, EOS, PAD, PAD, PAD],
    ]
)
ATTENTION = (INPUT_IDS != PAD).long()
D = 3
LAYERS = 2  # transformer layers; hidden states hold L + 1 = 3 tensors


def hidden_states(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(L + 1) x (B, T, D) states; padded positions hold huge values that must never show."""
    generator = torch.Generator().manual_seed(seed)
    states = []
    for _ in range(LAYERS + 1):
        h = torch.randn(3, 5, D, generator=generator)
        h[ATTENTION == 0] = 1e6
        states.append(h)
    return tuple(states)


def features(states: tuple[torch.Tensor, ...]) -> dict:
    return {
        "input_ids": INPUT_IDS,
        "attention_mask": ATTENTION,
        "token_embeddings": states[-1],
        "all_layer_embeddings": states,
    }


def pool(mode: str, states, include_special_tokens: bool = False) -> torch.Tensor:
    module = SeqPooling(mode, include_special_tokens, SPECIALS)
    return module(features(states))["sentence_embedding"]


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], (hidden[0, 1] + hidden[0, 2]) / 2)
    torch.testing.assert_close(pooled[1], hidden[1, 1])
    hidden[0, 3] = 1e6  # a padded position must not matter
    torch.testing.assert_close(mean_pool(hidden, mask), pooled)


def test_max_pool_masked_positions_never_win_and_empty_rows_are_zero() -> None:
    hidden = torch.tensor([[[-5.0, 1.0], [-3.0, 0.5], [100.0, 100.0]], [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    # Row 0: all-negative first column; a masked 100 must not win, nor a masked-out 0.
    torch.testing.assert_close(max_pool(hidden, mask), torch.tensor([[-3.0, 1.0], [0.0, 0.0]]))


def test_token_registry() -> None:
    hidden = torch.randn(2, 4, 3)
    assert torch.equal(cls_pool(hidden, torch.ones(2, 4)), hidden[:, 0])
    assert get_pooling("mean") is mean_pool and get_pooling("max") is max_pool
    with pytest.raises(ValueError, match="reads every layer's hidden states"):
        get_pooling("first-last")
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        get_pooling("sum")


def test_seq_pooling_against_manual_computation() -> None:
    states = hidden_states()
    last = states[-1]
    mean = pool("mean", states)
    torch.testing.assert_close(mean[0], last[0, 1:4].mean(0))  # residues only
    torch.testing.assert_close(mean[1], last[1, 1])
    torch.testing.assert_close(mean[2], torch.zeros(D))  # nothing to pool: zeros, not NaN
    with_specials = pool("mean", states, include_special_tokens=True)
    torch.testing.assert_close(with_specials[0], last[0].mean(0))
    torch.testing.assert_close(with_specials[1], last[1, :3].mean(0))  # pads still out
    torch.testing.assert_close(with_specials[2], last[2, :2].mean(0))

    maximum = pool("max", states)
    torch.testing.assert_close(maximum[0], last[0, 1:4].max(0).values)
    torch.testing.assert_close(maximum[1], last[1, 1])
    torch.testing.assert_close(maximum[2], torch.zeros(D))
    torch.testing.assert_close(pool("max", states, include_special_tokens=True)[1], last[1, :3].max(0).values)

    torch.testing.assert_close(pool("cls", states), last[:, 0])

    first_last = pool("first-last", states)
    both = (states[1] + states[-1]) / 2  # the first transformer layer, not the embedding output
    torch.testing.assert_close(first_last[0], both[0, 1:4].mean(0))
    torch.testing.assert_close(first_last[1], both[1, 1])


def test_every_pooling_ignores_padding() -> None:
    states = hidden_states()
    changed = tuple(h.clone() for h in states)
    for h in changed:
        h[ATTENTION == 0] = -3e6
    for name in POOLINGS:
        module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=False, seed=1)
        before = module(features(states))["sentence_embedding"]
        after = module(features(changed))["sentence_embedding"]
        assert before.shape == (3, D), name
        torch.testing.assert_close(before, after, msg=name)


def test_first_last_needs_hidden_states() -> None:
    states = hidden_states()
    missing = {k: v for k, v in features(states).items() if k != "all_layer_embeddings"}
    with pytest.raises(ValueError, match="output_hidden_states=True"):
        SeqPooling("first-last", False, SPECIALS)(missing)


def reference_layer_attention(module: LayerAttentionPooling, states) -> torch.Tensor:
    """The documented formula, written out row by row and layer by layer."""
    out = []
    for b in range(INPUT_IDS.shape[0]):
        residues = [
            t for t in range(INPUT_IDS.shape[1]) if ATTENTION[b, t] and INPUT_IDS[b, t] not in SPECIALS
        ]
        cls = [states[layer][b, 0] for layer in range(1, LAYERS + 1)]
        means = [
            states[layer][b, residues].mean(0) if residues else torch.zeros(D)
            for layer in range(1, LAYERS + 1)
        ]
        keys = [torch.tanh(module.key(m)) for m in means]
        values = [torch.tanh(module.value(m)) for m in means]
        queries = cls if module.queries == "all" else cls[-1:]
        attended = torch.zeros(D)
        for c in queries:
            q = torch.tanh(module.query(c))
            weights = torch.softmax(torch.stack([q @ k / math.sqrt(D) for k in keys]), dim=0)
            attended = attended + sum(w * v for w, v in zip(weights, values, strict=True)) / len(queries)
        head = module.output(torch.cat([attended, cls[-1]]))
        if module.form == "paper":
            out.append(torch.tanh(head))
        else:  # the residual on the base: mean over the residues (row 2 has none: zeros)
            base = states[-1][b, residues].mean(0) if residues else torch.zeros(D)
            out.append(base + head)
    return torch.stack(out)


@pytest.mark.parametrize("name", LAYER_ATTENTION)
def test_layer_attention_matches_the_documented_formula(name: str) -> None:
    module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=False, seed=3)
    assert (module.form, module.queries) == LAYER_ATTENTION_VARIANTS[name]
    with torch.no_grad():  # weights far from their small initial values, so every term matters
        for parameter in module.parameters():
            parameter.normal_(0.0, 1.0)
    states = hidden_states()
    pooled = module(features(states))["sentence_embedding"]
    assert pooled.shape == (3, D)
    torch.testing.assert_close(pooled, reference_layer_attention(module, states))


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("base", ["mean", "cls", "max"])
@pytest.mark.parametrize("name", ["layer-attention", "layer-attention-1q"])
def test_untrained_layer_attention_is_its_base_pooling(name: str, base: str, include: bool) -> None:
    """The residual form starts as the base model's own pooling, exactly (W_o and b_o are zero)."""
    module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=include, seed=4, base=base)
    assert torch.all(module.output.weight == 0) and torch.all(module.output.bias == 0)
    assert module.query.weight.abs().sum() > 0  # only the output starts at zero
    states = hidden_states()
    pooled = module(features(states))["sentence_embedding"]
    torch.testing.assert_close(pooled, pool(base, states, include), rtol=0, atol=1e-6)


def test_paper_layer_attention_is_as_before() -> None:
    """The paper's form keeps the old initial weights (W_o from N(0, 0.02), drawn after Q, K, V from the
    seed) and its tanh output: untrained, close to the last [CLS] through a small random map."""
    paper = pooling_module("layer-attention-paper", D, LAYERS, SPECIALS, include_special_tokens=False, seed=7)
    residual = pooling_module("layer-attention", D, LAYERS, SPECIALS, include_special_tokens=False, seed=7)
    generator = torch.Generator().manual_seed(7)
    drawn = [torch.randn(D, D, generator=generator) * 0.02 for _ in range(3)]
    drawn.append(torch.randn(D, 2 * D, generator=generator) * 0.02)
    for linear, weight in zip((paper.query, paper.key, paper.value, paper.output), drawn, strict=True):
        assert torch.equal(linear.weight, weight)
    for name in ("query", "key", "value"):  # the same Q, K, V in both forms
        assert torch.equal(getattr(paper, name).weight, getattr(residual, name).weight)
    states = hidden_states()
    pooled = paper(features(states))["sentence_embedding"]
    torch.testing.assert_close(pooled, reference_layer_attention(paper, states))
    assert pooled.abs().max() < 1  # tanh


@pytest.mark.parametrize("name", LAYER_ATTENTION)
def test_layer_attention_gradient_reaches_every_layer(name: str) -> None:
    module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=False)
    states = tuple(h.clone().requires_grad_(True) for h in hidden_states())
    module(features(states))["sentence_embedding"].pow(2).sum().backward()
    if module.form == "residual":
        # At step 0 the attention reaches the output only through W_o = 0: W_o and b_o alone learn ...
        for linear in (module.query, module.key, module.value):
            assert all(p.grad is None or torch.all(p.grad == 0) for p in linear.parameters())
        assert module.output.weight.grad.abs().sum() > 0 and module.output.bias.grad.abs().sum() > 0
        # ... and once W_o has moved, everything does, as in the paper's form.
        module.zero_grad()
        states = tuple(h.clone().requires_grad_(True) for h in hidden_states())
        with torch.no_grad():
            module.output.weight.normal_(0.0, 0.1)
        module(features(states))["sentence_embedding"].pow(2).sum().backward()
    for layer in range(1, LAYERS + 1):
        grad = states[layer].grad
        if module.queries == "all" or layer == LAYERS:  # through the [CLS] queries (and c_L)
            assert grad is not None and grad[0, 0].abs().sum() > 0
        assert grad[0, 1:4].abs().sum() > 0  # through the token means (keys and values)
        assert torch.all(grad[ATTENTION == 0] == 0)  # never through padding
    assert states[0].grad is None  # the embedding output is left out by design
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_layer_attention_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = LayerAttentionPooling(D, LAYERS, seed=5)
    assert torch.equal(torch.rand(1), expected)
    b, c = LayerAttentionPooling(D, LAYERS, seed=5), LayerAttentionPooling(D, LAYERS, seed=6)
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(a.query.weight, c.query.weight)


def test_layer_attention_checks_the_layer_count() -> None:
    module = LayerAttentionPooling(D, LAYERS + 1)
    with pytest.raises(ValueError, match="built for 3 layers"):
        module(features(hidden_states()))


def test_layer_attention_save_load_round_trip(tmp_path) -> None:
    module = pooling_module("layer-attention-1q", D, LAYERS, SPECIALS, include_special_tokens=True, seed=0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter))  # differ from what seed 0 would rebuild
    module.save(str(tmp_path))
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    loaded = LayerAttentionPooling.load(str(tmp_path))
    assert loaded.get_config_dict() == module.get_config_dict()
    assert (loaded.form, loaded.base, loaded.pooling_name) == ("residual", "mean", "layer-attention-1q")
    states = hidden_states()
    torch.testing.assert_close(
        loaded(features(states))["sentence_embedding"], module(features(states))["sentence_embedding"]
    )


def test_a_layer_attention_saved_before_the_residual_form_loads_as_the_papers(tmp_path) -> None:
    """Weights saved before `form` existed were trained as tanh(W_o[o; c_L]): they reload in that form."""
    module = pooling_module("layer-attention-paper", D, LAYERS, SPECIALS, include_special_tokens=False)
    module.save(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["form"] == "paper"
    del config["form"], config["base"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = LayerAttentionPooling.load(str(tmp_path))
    assert loaded.pooling_name == "layer-attention-paper"
    states = hidden_states()
    torch.testing.assert_close(
        loaded(features(states))["sentence_embedding"], module(features(states))["sentence_embedding"]
    )


def test_layer_attention_refuses_unknown_form_and_base() -> None:
    with pytest.raises(ValueError, match="form must be one of"):
        LayerAttentionPooling(D, LAYERS, form="gated")
    with pytest.raises(ValueError, match="base must be one of"):
        LayerAttentionPooling(D, LAYERS, base="first-last")


def test_pooling_module_names() -> None:
    for name in POOLINGS:
        for include in (False, True):
            module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=include)
            assert pooling_name(module) == name
    with pytest.raises(ValueError, match="unknown pooling 'sum'"):
        pooling_module("sum", D, LAYERS, SPECIALS, include_special_tokens=False)


@pytest.mark.parametrize("include", [False, True])
def test_sentence_transformers_pooling_where_it_computes_the_same(include: bool) -> None:
    """cls always, mean and max with the special tokens included: sentence-transformers' own Pooling
    (reloadable without seqstruct), giving what SeqPooling gives on the hand-made batch."""
    states = hidden_states()
    for name in POOLINGS:
        module = pooling_module(name, D, LAYERS, SPECIALS, include_special_tokens=include, seed=1)
        native = name == "cls" or (include and name in ("mean", "max"))
        assert st_native(name, include) == native
        if native:
            assert type(module) is Pooling and module.pooling_mode == name
            torch.testing.assert_close(
                module(features(states))["sentence_embedding"], pool(name, states, include)
            )
        else:
            assert type(module) in (SeqPooling, LayerAttentionPooling), name
    # Residue-only mean is not what the library's mean over the attention mask gives.
    library = Pooling(D, pooling_mode="mean")(features(states))["sentence_embedding"]
    assert (library[0] - pool("mean", states)[0]).abs().max() > 1e-3
