from __future__ import annotations

import pytest
import torch

from seqstruct.models.pooling import cls_pool, get_pooling, mean_pool


def test_mean_pool_ignores_masked_tokens() -> None:
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], (hidden[0, 1] + hidden[0, 2]) / 2)
    torch.testing.assert_close(pooled[1], hidden[1, 1])
    hidden[0, 3] = 1e6  # a padded position must not matter
    torch.testing.assert_close(mean_pool(hidden, mask), pooled)


def test_cls_pool_and_registry() -> None:
    hidden = torch.randn(2, 4, 3)
    assert torch.equal(cls_pool(hidden, torch.ones(2, 4)), hidden[:, 0])
    assert get_pooling("mean") is mean_pool
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        get_pooling("max")
