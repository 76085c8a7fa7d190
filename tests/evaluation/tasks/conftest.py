"""The task tests' datasets, built once per module."""

from __future__ import annotations

import pytest

from seqstruct.data.prepared import Prepared
from tests.evaluation.tasks.datasets import (
    go_text,  # noqa: F401  (fixture)
    protein_dataset,
    text_dataset,
)


@pytest.fixture(scope="module")
def proteins(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return protein_dataset(tmp_path_factory.mktemp("proteins") / "data")


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return text_dataset(tmp_path_factory.mktemp("texts") / "data")
