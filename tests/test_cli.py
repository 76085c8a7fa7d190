from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import seqstruct
from seqstruct.cli import main
from tests.helpers import tiny_overrides


def test_pretrain_then_embed_end_to_end(protein_fasta, tmp_path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model:\n  preset: tiny\ntrain:\n  max_steps: 4\n")
    out = tmp_path / "model"
    overrides = [
        o for o in tiny_overrides(protein_fasta, out) if not o.startswith(("model.preset", "train.max_steps"))
    ]
    assert main(["pretrain", str(config), *overrides]) == 0
    assert f"model, metrics.json and log.csv in {out}" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4

    npz = tmp_path / "emb.npz"
    assert (
        main(["embed", str(out), str(protein_fasta), "-o", str(npz), "--pooling", "mean", "--normalize"]) == 0
    )
    with np.load(npz) as data:
        assert data["embeddings"].shape == (120, 32)
        np.testing.assert_allclose(np.linalg.norm(data["embeddings"], axis=1), 1.0, atol=1e-5)


def test_bad_inputs_exit_with_a_clear_message(protein_fasta, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.fasta"
    bad.write_text(">P1\nMKT\n>P2\nMK1T\n")
    assert main(["embed", str(tmp_path), str(bad), "-o", str(tmp_path / "x.npz")]) == 2
    assert "bad.fasta, line 4, record 'P2'" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "nowhere"), str(protein_fasta), "-o", str(tmp_path / "x.npz")]) == 2
    assert "nowhere: not a model directory" in capsys.readouterr().err

    config = tmp_path / "run.yaml"
    config.write_text("train:\n  max_step: 4\n")
    assert main(["pretrain", str(config), f"data.fasta={protein_fasta}"]) == 2
    assert "unknown config key(s) ['train.max_step']" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_a_bad_setting_gets_one_line(tmp_path, monkeypatch, capsys) -> None:
    import pytest

    from seqstruct import cli

    def library_error(args) -> None:
        np.zeros(-1)  # numpy's ValueError: a call of ours gone wrong, not the user's input

    monkeypatch.setattr(cli, "_report", library_error)
    with pytest.raises(ValueError, match="negative dimensions"):
        main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")])

    config = tmp_path / "run.yaml"
    config.write_text("train:\n  min_lr_ratio: 0.5\n")  # seqstruct's own check names the setting
    assert main(["pretrain", str(config), f"data.fasta={tmp_path / 'x.fasta'}"]) == 2
    assert "train.min_lr_ratio=0.5 needs lr_scheduler" in capsys.readouterr().err


# Runs every `seqstruct ... --help`, then `data list` and `evaluate --list`, in one fresh interpreter, and
# prints for each the model libraries it was the first to import.
QUICK_COMMANDS = """
import argparse, contextlib, io, json, sys
from seqstruct.cli import build_parser, main
HEAVY = ("torch", "transformers", "sentence_transformers")

def helps(parser, prefix):
    yield [*prefix, "--help"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from helps(sub, [*prefix, name])

loaded, found = {}, set()
for argv in [*helps(build_parser(), []), ["data", "list"], ["evaluate", "--list"]]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main(argv)
    new = {m for m in HEAVY if m in sys.modules} - found
    loaded[" ".join(argv)], found = sorted(new), found | new
print(json.dumps(loaded))
"""


def test_help_and_listings_import_no_model_library() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(seqstruct.__file__).parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", QUICK_COMMANDS], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert {"--help", "pretrain --help", "bench cli-startup --help", "data list", "evaluate --list"} <= set(
        loaded
    )
    assert {argv: modules for argv, modules in loaded.items() if modules} == {}


def test_a_finished_command_closes_the_process_group_a_torchrun_rank_opened(tmp_path) -> None:
    """Under torchrun the Trainer opens a Gloo process group; left to interpreter exit, a rank can abort
    after a run that succeeded. A command that finished destroys it (a world of one stands in here)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert main(["data", "list"]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
