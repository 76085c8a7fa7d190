"""The fault tests' shared runs: the forkserver that starts every child, and the uninterrupted runs that
killed, resumed or raced ones are compared with (none is to be written to)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.harness import (
    Runner,
    forkserver_runner,
    pretrain_reference,
    run_references,
)


@pytest.fixture(scope="session")
def runner() -> Runner:
    return forkserver_runner()


@pytest.fixture(scope="session")
def reference(runner: Runner, protein_fasta: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted tiny pretraining run."""
    return pretrain_reference(runner, protein_fasta, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def graph_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 real proteins in a ring with chords (FASTA, graph, prepared dataset) and a tiny seeded encoder."""
    from tests.training.test_contrastive import contrastive_inputs

    return contrastive_inputs(tmp_path_factory.mktemp("graph-inputs"))


@pytest.fixture(scope="session")
def references(
    runner: Runner, graph_inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Uninterrupted structure-inducing and contrastive runs."""
    return run_references(runner, graph_inputs, tmp_path_factory.mktemp("references"))
