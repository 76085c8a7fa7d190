from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from tests.helpers import tiny_overrides


def test_pretrain_under_torchrun_two_processes(protein_fasta, tmp_path) -> None:
    """The same config under `torchrun --nproc_per_node 2` (gloo on CPU): both ranks train, rank 0 saves."""
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
    command += tiny_overrides(protein_fasta, out, **{"train.max_steps": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    assert (out / "model.safetensors").is_file()
