from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import tiny_overrides


@pytest.mark.parametrize("attention", ["sdpa", "favor"])
def test_pretrain_under_torchrun_two_processes(protein_fasta, tmp_path, attention: str) -> None:
    """The same config under `torchrun --nproc_per_node 2` (gloo on CPU): both ranks train, rank 0 saves.
    With FAVOR+ redrawing every 2 steps, the saved projections are the step-4 draws: what every rank
    computes from (seed, layer, step) alone."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None, "torchrun comes with torch; the venv is incomplete"
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  preset: tiny\n")
    out = tmp_path / "ddp"
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "seqstruct.cli",
        "pretrain",
        str(config),
    ]
    extra = {"train.max_steps": 4, "model.attention": attention, "model.favor.redraw_interval": 2}
    command += tiny_overrides(protein_fasta, out, **extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert (out / "model.safetensors").is_file()
    if attention == "favor":
        from safetensors.torch import load_file

        from seqstruct.attention.interface import draw_projection
        from seqstruct.config import FavorConfig

        saved = load_file(out / "model.safetensors")
        projections = sorted(k for k in saved if k.endswith("favor_projection"))
        assert len(projections) == 2  # the tiny preset's two layers
        settings = FavorConfig(num_features=256, redraw_interval=2)
        for layer, key in enumerate(projections):
            expected = draw_projection(settings, saved[key].shape[1], layer, 4)
            assert torch.equal(saved[key], expected), key


def test_token_budget_batches_under_torchrun_two_processes(protein_fasta, tmp_path) -> None:
    """Token-budget batches are a batch sampler, which accelerate shards across ranks: each rank trains on
    its own batches and the run's token count is the sum over both."""
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None, "torchrun comes with torch; the venv is incomplete"
    out = tmp_path / "ddp-tokens"
    extra = {"train.max_steps": 4, "data.max_tokens": 512, "train.batch_size": 64}
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "seqstruct.cli", "pretrain"]
    command += [str(tmp_path / "run.yaml"), *tiny_overrides(protein_fasta, out, **extra)]
    (tmp_path / "run.yaml").write_text("model:\n  preset: tiny\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    # Two ranks x 4 steps of <= 512-token batches at <5% padding: more than one rank alone could see.
    assert 4 * 512 * 1.2 < metrics["train_tokens"] <= 2 * 4 * 512


def _torchrun(config_yaml: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun is not None, "torchrun comes with torch; the venv is incomplete"
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "seqstruct.cli", "pretrain"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*command, str(config_yaml), *overrides], capture_output=True, text=True, env=env, timeout=600
    )


def _max_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


# Float tolerance: the two runs add the same numbers in another order (per-rank sums, the gradient
# all-reduce, rows gathered in rank order rather than anchors first, matrix products over another padded
# length), about 1e-7 relative per step; Adam divides each gradient by its own running scale, so over 4
# steps at learning rate 3e-3 those roundings reach at most 1.5e-6 in the weights (measured), while any
# one of the causes fixed here (a per-rank length-grouped order, masks seeded per batch, the mean of the
# ranks' token means, a structure loss over one rank's rows) moves them by 6e-3 to 1.2e-2 (measured).
ATOL = 1e-5
SAME_RUN = {"train.max_steps": 4, "model.dropout": 0.0, "train.eval_steps": 4, "train.save_steps": 4}


def _same_run_both_ways(tmp_path: Path, fasta: Path, **extra: object) -> float:
    """Train one process at batch 8 (in this process) and torchrun 2 ranks at batch 4, both for 4 steps;
    return the largest weight difference."""
    from seqstruct.config import PretrainConfig, load_config
    from seqstruct.training.mlm import pretrain

    settings = {**SAME_RUN, **extra}
    one = tmp_path / "one"
    pretrain(
        load_config(PretrainConfig, None, tiny_overrides(fasta, one, **settings, **{"train.batch_size": 8}))
    )
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  preset: tiny\n")
    two = tmp_path / "two"
    result = _torchrun(config, tiny_overrides(fasta, two, **settings, **{"train.batch_size": 4}))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    return _max_difference(one, two)


def test_two_ranks_at_batch_4_train_as_one_process_at_batch_8(tmp_path) -> None:
    """Masked-LM under `torchrun --nproc_per_node 2` at batch 4 gives the weights of one process at batch 8:
    the same global batches (the length-grouped order drawn for the global batch: with 480 proteins, more
    than the 50 batches of 4 transformers groups by length, a per-rank order would differ), the same crops
    and masks (per example), the same loss (the global masked-token mean). Dropout is 0 (its draws depend
    on the batch's shape, so equality under dropout is not expected)."""
    from seqstruct.data.fasta import write_fasta
    from tests.helpers import sample_records

    fasta = tmp_path / "proteins.fasta"
    write_fasta([r for r in sample_records(3000) if len(r.sequence) < 150][:516], fasta)
    assert _same_run_both_ways(tmp_path, fasta, **{"data.eval_max": 16, "data.max_length": 160}) < ATOL


@pytest.mark.parametrize(
    ("loss", "negatives"),
    [("margin_cosine", 2), ("info_nce", 0)],
    ids=["margin-sampled", "info_nce-in-batch"],
)
def test_two_ranks_train_structure_as_one_process(tmp_path, loss: str, negatives: int) -> None:
    """Structure-inducing pretraining likewise: the graph extras are drawn per anchor, and the structure
    loss sees every rank's rows (gathered with gradient), with sampled negatives (margin) and with the
    batch as negatives over the rebuilt adjacency (InfoNCE). Dropout 0, as above."""
    from tests.training.test_structure import write_two_components

    fasta, graph = write_two_components(tmp_path)
    structure = {
        "structure.graph": graph,
        "structure.weight": 0.5,
        "structure.loss": loss,
        "structure.negatives": negatives,
        "structure.pooling": "mean",
        "data.max_length": 48,
    }
    assert _same_run_both_ways(tmp_path, fasta, **structure) < ATOL
