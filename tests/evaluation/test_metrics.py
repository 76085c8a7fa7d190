"""CAFA metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.evaluation.metrics import fmax, micro_aupr

Y = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
S = np.array([[0.9, 0.8, 0.2], [0.1, 0.7, 0.6]])


def test_fmax_by_hand() -> None:
    # t in (0.6, 0.7]: protein 1 predicts {0, 1} (P 1/2, R 1/2), protein 2 predicts {1} (P 1, R 1):
    # precision 0.75, recall 0.75, F 0.75; every other threshold does worse (t = 0.2: F 0.737).
    value, threshold = fmax(Y, S)
    assert value == pytest.approx(0.75)
    assert threshold == pytest.approx(0.61)


def test_fmax_perfect_and_unannotated_rows_ignored() -> None:
    y = np.vstack([Y, np.zeros((1, 3), dtype=bool)])
    value, _ = fmax(y, np.vstack([Y.astype(float), [[0.9, 0.9, 0.9]]]))
    assert value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no protein has an annotation"):
        fmax(np.zeros((2, 3), dtype=bool), S)
    with pytest.raises(ValueError, match="one shape"):
        fmax(Y, S[:, :2])


def test_micro_aupr_by_hand() -> None:
    # pooled pairs by score: 0.9 (+), 0.8 (-), 0.7 (+), 0.6 (-), 0.2 (+), 0.1 (-)
    # precision at each positive: 1/1, 2/3, 3/5; average precision = (1 + 2/3 + 3/5) / 3
    assert micro_aupr(Y, S) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(ValueError, match="no positive"):
        micro_aupr(np.zeros((2, 3), dtype=bool), S)
