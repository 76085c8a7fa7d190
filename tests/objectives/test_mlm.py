from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.objectives.mlm import Unigram, clustered_mean, masked_lm_metrics, token_predictions


def test_token_predictions_and_metrics_against_manual() -> None:
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]]])  # (1, 3, 3)
    labels = torch.tensor([[0, 2, -100]])
    predictions = token_predictions(logits, labels).numpy()
    metrics = masked_lm_metrics(predictions, labels.numpy())
    log_p = torch.log_softmax(logits, -1)[0]
    expected_nll = -(log_p[0, 0] + log_p[1, 2]).item() / 2
    assert metrics["masked_accuracy"] == 0.5 and metrics["masked_tokens"] == 2
    assert metrics["perplexity"] == pytest.approx(math.exp(expected_nll), rel=1e-6)


def test_metrics_refuse_empty() -> None:
    with pytest.raises(ValueError, match="no masked positions"):
        masked_lm_metrics(np.zeros((1, 2, 2)), np.full((1, 2), -100))


def test_unigram_fit_by_hand() -> None:
    tokenizer = build_protein_tokenizer()
    unigram = Unigram.fit(["LLLA", "LK"], tokenizer)
    assert unigram.most_frequent == tokenizer.convert_tokens_to_ids("L")
    # add-one over the 25 residue letters: L (4+1)/31, A (1+1)/31, an unseen W 1/31
    for letter, count in (("L", 5), ("A", 2), ("W", 1)):
        assert unigram.log_probs[tokenizer.convert_tokens_to_ids(letter)] == pytest.approx(
            math.log(count / 31)
        )
    assert unigram.log_probs[tokenizer.mask_token_id] == -np.inf


def test_paired_gain_against_the_unigram_on_the_same_positions() -> None:
    tokenizer = build_protein_tokenizer()
    unigram = Unigram.fit(["LLLA", "LK"], tokenizer)
    L, A, K = tokenizer.convert_tokens_to_ids(["L", "A", "K"])
    labels = np.array([[L, A, -100], [K, -100, -100]])
    # The model predicts A, A, K with NLLs 1.0, 0.5, 0.2.
    predictions = np.stack(
        [np.array([[A, A, 0], [K, 0, 0]]), np.array([[1.0, 0.5, 9.0], [0.2, 9.0, 9.0]])], axis=-1
    )
    metrics = masked_lm_metrics(predictions, labels, unigram)
    assert metrics["masked_accuracy"] == pytest.approx(2 / 3)
    assert metrics["unigram_accuracy"] == pytest.approx(1 / 3)  # only the L is predicted by "always L"
    assert metrics["accuracy_gain"] == pytest.approx(1 / 3)
    base_nll = -(math.log(5 / 31) + math.log(2 / 31) + math.log(2 / 31)) / 3
    assert metrics["unigram_perplexity"] == pytest.approx(math.exp(base_nll))
    assert metrics["nll_gain"] == pytest.approx(base_nll - 1.7 / 3)


def test_clustered_mean_by_hand() -> None:
    values = np.array([[1.0, 3.0], [5.0, 0.0]])
    scored = np.array([[True, True], [True, False]])
    mean, se = clustered_mean(values, scored)
    assert mean == pytest.approx(3.0)
    # row sums 4 (n=2) and 5 (n=1): residuals 4-6=-2 and 5-3=2; var = 8 * 2/1 / 9
    assert se == pytest.approx(math.sqrt(16 / 9))
