from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

import seqstruct
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.lstm import (
    POOLINGS,
    LstmConfig,
    LstmForSequenceClassification,
    encoder_embedding_size,
    init_embeddings_from,
    lstm_config_for,
    register,
    sequence_classification_loss,
)

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "MKV", "GSHMLEDPVDAFQE", "MA"]


def tiny_model(num_labels: int = 3, **settings) -> LstmForSequenceClassification:
    settings = {"embedding_size": 8, "hidden_size": 6, **settings}
    torch.manual_seed(0)
    return LstmForSequenceClassification(lstm_config_for(build_protein_tokenizer(), num_labels, **settings))


def perturb(model: nn.Module) -> None:
    """Move every weight away from its initial value, as training would, so that a reload which
    re-initialised anything (the forget-gate biases, the pad row) would show."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def test_config_reads_tokenizer_and_validates() -> None:
    tokenizer = build_protein_tokenizer()
    config = lstm_config_for(tokenizer, 4, pooling="last", problem_type="multi_label_classification")
    assert (config.vocab_size, config.pad_token_id) == (len(tokenizer), tokenizer.pad_token_id)
    assert (config.num_labels, config.pooling, config.problem_type) == (
        4,
        "last",
        "multi_label_classification",
    )
    assert config.model_type == "seqstruct-lstm"
    with pytest.raises(ValueError, match="pooling"):
        LstmConfig(pooling="cls")
    with pytest.raises(ValueError, match="pad_token_id"):
        LstmConfig(vocab_size=5, pad_token_id=5)


def test_init_follows_the_recipe() -> None:
    model = tiny_model(num_layers=2)
    embedding = model.get_input_embeddings().weight
    pad = model.config.pad_token_id
    assert torch.all(embedding[pad] == 0)
    assert 0.05 < embedding[pad + 1 :].std().item() < 0.15
    rnn, width = model.lstm.rnn, model.config.hidden_size
    for name, param in rnn.named_parameters():
        if name.startswith("bias_"):
            forget = param[width : 2 * width]
            assert torch.all(forget == (1.0 if name.startswith("bias_ih") else 0.0)), name
        else:
            assert param.abs().max() <= 1 / width**0.5
    assert torch.all(model.dense.bias == 0) and torch.all(model.out_proj.bias == 0)


def test_round_trip_through_auto_class(tmp_path: Path) -> None:
    model = tiny_model(num_layers=2)
    perturb(model)
    model.eval().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]

    register()  # seqstruct registered it at import; a second call must be harmless
    loaded, info = AutoModelForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, LstmForSequenceClassification)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    saved = model.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0, msg=key)
    batch = build_protein_tokenizer()(PROTEINS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(**batch).logits, model(**batch).logits, rtol=0, atol=0)


def test_partial_checkpoint_initialises_only_what_it_lacks(tmp_path: Path) -> None:
    # A one-layer checkpoint loaded as two layers: the first layer's biases (forget-gate slices
    # included) keep their trained values; only the second layer is drawn, with its forget bias at 1.
    model = tiny_model(num_layers=1)
    perturb(model)
    model.save_pretrained(tmp_path)
    deeper, info = LstmForSequenceClassification.from_pretrained(
        tmp_path, num_layers=2, output_loading_info=True
    )
    assert info["missing_keys"] and all("_l1" in key for key in info["missing_keys"])
    loaded = deeper.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)
    width = model.config.hidden_size
    assert torch.all(deeper.lstm.rnn.bias_ih_l1[width : 2 * width] == 1.0)


def test_fresh_interpreter_loads_after_importing_seqstruct(tmp_path: Path) -> None:
    model = tiny_model().eval()
    model.save_pretrained(tmp_path / "model")
    ids = build_protein_tokenizer()(PROTEINS[:1], return_tensors="pt")["input_ids"]
    torch.save({"ids": ids, "logits": model(input_ids=ids).logits.detach()}, tmp_path / "expected.pt")
    script = (
        "import sys, torch, seqstruct\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1] + '/model').eval()\n"
        "expected = torch.load(sys.argv[1] + '/expected.pt', weights_only=True)\n"
        "torch.testing.assert_close(model(input_ids=expected['ids']).logits, expected['logits'])\n"
        "print(type(model).__name__)\n"
    )
    src = str(Path(seqstruct.__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "LstmForSequenceClassification"


@pytest.mark.parametrize("pooling", POOLINGS)
def test_output_is_independent_of_padding(pooling: str) -> None:
    tokenizer = build_protein_tokenizer()
    model = tiny_model(pooling=pooling, num_layers=2)
    perturb(model)
    model.eval()
    batch = tokenizer(PROTEINS, padding=True, return_tensors="pt")
    with torch.no_grad():
        together = model(**batch).logits
        # No attention_mask: derived from the pad id, the same answer.
        torch.testing.assert_close(model(input_ids=batch["input_ids"]).logits, together, rtol=0, atol=1e-6)
        for row, protein in enumerate(PROTEINS):
            alone = model(**tokenizer([protein], return_tensors="pt")).logits
            torch.testing.assert_close(alone[0], together[row], rtol=0, atol=1e-6)


def test_left_padding_is_refused() -> None:
    tokenizer = build_protein_tokenizer()
    batch = tokenizer(PROTEINS[:2], padding=True, return_tensors="pt")
    flipped = {key: value.flip(1) for key, value in batch.items()}
    with pytest.raises(ValueError, match="right-padded"):
        tiny_model()(**flipped)


def test_token_type_ids_are_accepted() -> None:
    tokenizer = build_protein_tokenizer()
    batch = tokenizer(PROTEINS, padding=True, return_tensors="pt", return_token_type_ids=True)
    assert "token_type_ids" in batch
    assert tiny_model()(**batch).logits.shape == (len(PROTEINS), 3)


def test_loss_follows_problem_type() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, -0.3]])
    classes = torch.tensor([0, 2])
    multi = torch.tensor([[1, 0, 1], [0, 0, 1]])
    functional = nn.functional

    config = LstmConfig(num_labels=3)
    loss = sequence_classification_loss(logits, classes, config)
    assert config.problem_type == "single_label_classification"
    torch.testing.assert_close(loss, functional.cross_entropy(logits, classes))

    config = LstmConfig(num_labels=3, problem_type="multi_label_classification")
    loss = sequence_classification_loss(logits, multi, config)
    torch.testing.assert_close(loss, functional.binary_cross_entropy_with_logits(logits, multi.float()))

    config = LstmConfig(num_labels=3)  # float targets and no problem_type: multi-label, as in BERT
    sequence_classification_loss(logits, multi.float(), config)
    assert config.problem_type == "multi_label_classification"

    config = LstmConfig(num_labels=1)
    targets = torch.tensor([0.5, -1.0])
    loss = sequence_classification_loss(logits[:, :1], targets, config)
    assert config.problem_type == "regression"
    torch.testing.assert_close(loss, functional.mse_loss(logits[:, 0], targets))

    config = LstmConfig(num_labels=3, problem_type="regression")
    loss = sequence_classification_loss(logits, multi.float(), config)
    torch.testing.assert_close(loss, functional.mse_loss(logits, multi.float()))


def test_forward_loss_is_the_loss_of_its_logits() -> None:
    model = tiny_model(num_labels=1).eval()
    batch = build_protein_tokenizer()(PROTEINS, padding=True, return_tensors="pt")
    targets = torch.tensor([0.1, 0.2, 0.3, 0.4])
    output = model(**batch, labels=targets)
    assert model.config.problem_type == "regression"
    torch.testing.assert_close(output.loss, nn.functional.mse_loss(output.logits[:, 0], targets))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_gradients_reach_embeddings_and_every_layer(pooling: str) -> None:
    model = tiny_model(pooling=pooling, num_layers=2)
    batch = build_protein_tokenizer()(PROTEINS, padding=True, return_tensors="pt")
    model(**batch, labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    layers = {name for name, _ in model.lstm.rnn.named_parameters()}
    assert {"weight_ih_l1", "weight_ih_l1_reverse", "weight_hh_l0", "weight_hh_l0_reverse"} <= layers


def test_it_learns_a_separable_toy_task() -> None:
    # Class 0 is made of A and G, class 1 of W and Y: a handful of Adam steps must separate them.
    generator = torch.Generator().manual_seed(0)

    def protein(alphabet: str) -> str:
        length = int(torch.randint(4, 16, (1,), generator=generator))
        return "".join(alphabet[int(i)] for i in torch.randint(0, 2, (length,), generator=generator))

    proteins = [protein("AG") for _ in range(8)] + [protein("WY") for _ in range(8)]
    labels = torch.tensor([0] * 8 + [1] * 8)
    batch = build_protein_tokenizer()(proteins, padding=True, return_tensors="pt")
    model = tiny_model(num_labels=2, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], losses
    with torch.no_grad():
        assert torch.equal(model.eval()(**batch).logits.argmax(-1), labels)


def save_tiny_bert(
    directory: Path, vocab_size: int, hidden_size: int = 16, pad_token_id: int = 1
) -> BertModel:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        pad_token_id=pad_token_id,
    )
    torch.manual_seed(3)
    bert = BertModel(config)
    bert.save_pretrained(directory)
    return bert


def test_init_embeddings_from_copies_the_encoder_embeddings(tmp_path: Path) -> None:
    tokenizer = build_protein_tokenizer()
    bert = save_tiny_bert(tmp_path, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    width = encoder_embedding_size(tmp_path)
    assert width == 16
    model = LstmForSequenceClassification(lstm_config_for(tokenizer, 2, embedding_size=width, hidden_size=6))
    init_embeddings_from(model, tmp_path)
    torch.testing.assert_close(
        model.get_input_embeddings().weight, bert.get_input_embeddings().weight, rtol=0, atol=0
    )
    assert model.get_input_embeddings().weight.requires_grad  # the copy is trained further, not frozen


def test_init_embeddings_from_refuses_a_mismatch(tmp_path: Path) -> None:
    tokenizer = build_protein_tokenizer()
    other_vocab, same_vocab = tmp_path / "other", tmp_path / "same"
    save_tiny_bert(other_vocab, vocab_size=len(tokenizer) + 5, pad_token_id=tokenizer.pad_token_id)
    save_tiny_bert(same_vocab, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    model = LstmForSequenceClassification(lstm_config_for(tokenizer, 2, embedding_size=16, hidden_size=6))
    with pytest.raises(ValueError, match=rf"{len(tokenizer) + 5} tokens, the LSTM {len(tokenizer)}"):
        init_embeddings_from(model, other_vocab)
    narrow = LstmForSequenceClassification(lstm_config_for(tokenizer, 2, embedding_size=8, hidden_size=6))
    with pytest.raises(ValueError, match="set embedding_size=16"):
        init_embeddings_from(narrow, same_vocab)


def test_encoder_embedding_size_prefers_factorised_width(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 256, "embedding_size": 128}))
    assert encoder_embedding_size(tmp_path) == 128
