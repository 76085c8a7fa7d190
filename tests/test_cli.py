from __future__ import annotations

import json
import logging

import numpy as np

from seqstruct.cli import main
from seqstruct.data.fasta import read_fasta
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


def test_demo_runs_on_tiny_settings(tmp_path, capsys, caplog) -> None:
    out = tmp_path / "demo #1"  # a path is taken as given, not parsed as YAML
    args = [
        "demo",
        "-o",
        str(out),
        "model.preset=tiny",
        "train.max_steps=4",
        "train.eval_steps=2",
        "train.save_steps=2",
    ]
    args += ["data.eval_max=16", "data.max_length=64", "train.warmup_steps=1", "train.precision=fp32"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "unigram baseline" in printed
    for name in ("summary.md", "loss_curve.png", "embeddings.npz", "heldout.fasta", "model.safetensors"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "unigram-frequency baseline" in summary and "loss_curve.png" in summary
    with np.load(out / "embeddings.npz") as data:
        assert sorted(data["ids"].tolist()) == sorted(r.id for r in read_fasta(out / "heldout.fasta"))
    # Running again continues the finished run: nothing is trained anew.
    first = json.loads((out / "metrics.json").read_text())
    caplog.set_level(logging.INFO, logger="seqstruct")
    assert main(args) == 0
    assert "already reached max_steps=4: evaluating and saving only" in caplog.text
    again = json.loads((out / "metrics.json").read_text())
    assert again["steps"] == 4 and again["train_runtime_s"] == first["train_runtime_s"]
    assert again["heldout"]["perplexity"] == first["heldout"]["perplexity"]
    # Other settings in the same place are refused, not mixed in.
    assert main([*args, "train.seed=1"]) == 2
    assert "train.seed: 0 -> 1" in capsys.readouterr().err
