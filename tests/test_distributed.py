from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

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
