"""The contrastive objective: InfoNCE values computed by hand, the unsupervised loss at perfect alignment
without dropout, and dropout making the two views differ inside sentence-transformers' trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import save_model_dir
from seqstruct.models.sentence import sentence_model
from seqstruct.objectives.contrastive import (
    aligned_loss,
    contrastive_loss,
    encoder_dropout,
    set_encoder_dropout,
)
from tests.helpers import sample_records

SEQUENCES = [r.sequence for r in sample_records(6, max_residues=30)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny protein encoder saved with dropout 0.1 (hidden and attention)."""
    tokenizer = build_protein_tokenizer()
    path = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    save_model_dir(build_encoder("tiny", tokenizer, dropout=0.1), tokenizer, path)
    return path


def _loss_from(embeddings: list[torch.Tensor], temperature: float) -> float:
    # Only the similarity maths runs: the model is never called.
    return float(
        contrastive_loss(torch.nn.Identity(), temperature).compute_loss_from_embeddings(embeddings, None)
    )


# --- by hand -------------------------------------------------------------------------------------------------


def test_orthogonal_pairs_give_the_closed_form() -> None:
    # B = 4 anchors equal to their positives and orthogonal to each other (lengths vary: cosine ignores
    # them). Row i: logit 1/tau for its positive, 0 for the other 3, so the loss is log(1 + 3 exp(-1/tau)).
    tau = 0.5
    anchors = torch.diag(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    assert _loss_from([anchors, anchors.clone()], tau) == pytest.approx(
        math.log(1 + 3 * math.exp(-2.0)), rel=1e-6
    )
    # With one hard negative each, orthogonal to every anchor: 7 zero logits per row.
    embed = torch.eye(8)
    found = _loss_from([embed[:4], embed[:4], embed[4:]], tau)
    assert found == pytest.approx(math.log(1 + 7 * math.exp(-2.0)), rel=1e-6)


def test_identical_embeddings_give_log_batch() -> None:
    # Every logit equals 1/tau: the positive is one of B equal candidates.
    same = torch.ones(5, 3)
    assert _loss_from([same, same], 0.05) == pytest.approx(math.log(5), rel=1e-6)


def test_temperature_is_the_inverse_scale_and_checked() -> None:
    assert contrastive_loss(torch.nn.Identity(), 0.05).scale == pytest.approx(20.0)
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            contrastive_loss(torch.nn.Identity(), bad)


def test_aligned_loss_is_the_loss_with_positives_equal_to_anchors() -> None:
    torch.manual_seed(0)
    # Correlated vectors (a shared component), so that the in-batch negatives weigh at tau = 0.05.
    embeddings = torch.randn(6, 16) + 3.0 * torch.randn(1, 16)
    aligned = float(aligned_loss(embeddings, 0.05))
    assert aligned > 0.05
    assert aligned == pytest.approx(_loss_from([embeddings, embeddings], 0.05), rel=1e-5)
    # Any other positives (here, a shuffle of the same vectors) do worse for this batch.
    shuffled = embeddings[[1, 2, 3, 4, 5, 0]]
    assert _loss_from([embeddings, shuffled], 0.05) > aligned + 1.0


# --- on a model ----------------------------------------------------------------------------------------------


def _features(model, texts: list[str]) -> dict[str, torch.Tensor]:
    return model.preprocess(texts)


def test_unsupervised_loss_without_dropout_is_at_perfect_alignment(model_dir: Path) -> None:
    model = sentence_model(model_dir, pooling="mean").eval()
    loss = contrastive_loss(model, 0.05)
    features = _features(model, SEQUENCES)
    with torch.no_grad():
        found = float(loss([dict(features), dict(features)], None))
        embeddings = torch.as_tensor(model.encode(SEQUENCES, convert_to_tensor=True))
    # Every positive cosine is 1 (its logit 1/tau, the most it can be): the uniformity term is all that is left.
    expected = (
        float(
            torch.logsumexp(
                torch.cosine_similarity(embeddings[:, None], embeddings[None], dim=-1) / 0.05, 1
            ).mean()
        )
        - 20.0
    )
    assert found == pytest.approx(expected, abs=1e-4)
    assert found == pytest.approx(float(aligned_loss(embeddings, 0.05)), abs=1e-4)
    assert found < math.log(len(SEQUENCES))  # the distinct proteins are not all one point


def test_dropout_makes_the_two_views_differ_and_can_be_set(model_dir: Path) -> None:
    model = sentence_model(model_dir, pooling="mean")
    encoder = model[0].auto_model
    assert encoder_dropout(encoder) == pytest.approx(0.1)
    features = _features(model, SEQUENCES)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        first = model(dict(features))["sentence_embedding"]
        second = model(dict(features))["sentence_embedding"]
    assert torch.cosine_similarity(first, second).max() < 0.9999
    set_encoder_dropout(encoder, 0.0)
    assert encoder_dropout(encoder) == 0.0 and encoder.config.hidden_dropout_prob == 0.0
    with torch.no_grad():
        again = model(dict(features))["sentence_embedding"]
    assert torch.allclose(again, model(dict(features))["sentence_embedding"].detach())
    with pytest.raises(ValueError, match="dropout must be in"):
        set_encoder_dropout(encoder, 1.0)


@pytest.mark.parametrize("dropout", [0.1, 0.0])
def test_the_trainer_trains_in_train_mode_so_views_differ_with_dropout(
    model_dir: Path, tmp_path: Path, dropout: float
) -> None:
    from sentence_transformers import SentenceTransformerTrainer

    from seqstruct.config import ContrastiveConfig, load_config
    from seqstruct.training.contrastive import contrastive_arguments
    from seqstruct.training.run import Run

    model = sentence_model(model_dir, pooling="mean")
    set_encoder_dropout(model[0].auto_model, dropout)
    loss = contrastive_loss(model, 0.05)
    seen: list[tuple[bool, torch.Tensor]] = []
    compute = loss.compute_loss_from_embeddings

    def record(embeddings: list[torch.Tensor], labels: torch.Tensor | None) -> torch.Tensor:
        seen.append((model.training, torch.cosine_similarity(embeddings[0], embeddings[1]).detach()))
        return compute(embeddings, labels)

    loss.compute_loss_from_embeddings = record
    config = load_config(
        ContrastiveConfig,
        None,
        ["train.max_steps=1", "train.batch_size=6", "train.save_steps=10", "train.precision=fp32"],
    )
    config.output_dir = str(tmp_path)
    args = contrastive_arguments(config, Run(config), evaluate=False, model=model)
    texts = Dataset.from_dict({"anchor": SEQUENCES, "positive": SEQUENCES})
    SentenceTransformerTrainer(model=model, args=args, train_dataset=texts, loss=loss).train()
    assert len(seen) == 1
    training, cosines = seen[0]
    assert training and len(cosines) == len(SEQUENCES)
    if dropout:
        assert cosines.max() < 0.9999  # two dropout masks per text: the SimCSE augmentation
    else:
        assert torch.allclose(cosines, torch.ones_like(cosines), atol=1e-5)
