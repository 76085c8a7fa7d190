from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seqstruct.objectives.mlm import masked_lm_metrics, token_predictions, unigram_baseline


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


def test_unigram_baseline_by_hand() -> None:
    baseline = unigram_baseline(["LLLA", "LK"], ["LAK", "K"])
    assert baseline["most_frequent"] == "L"
    assert baseline["masked_accuracy"] == pytest.approx(1 / 4)
    # add-one over {L, A, K}: L 5/9, A 2/9, K 2/9
    expected = math.exp(-(math.log(5 / 9) + math.log(2 / 9) + 2 * math.log(2 / 9)) / 4)
    assert baseline["perplexity"] == pytest.approx(expected)
