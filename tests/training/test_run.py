"""The Run's directory rules (issue 20): an --overwrite'n run is kept aside until its replacement has
finished, whatever interrupts the replacement; what interrupted writers leave is tidied by the next
holder of the directory's lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqstruct.config import PretrainConfig, load_config, save_config
from seqstruct.io import LOCK_NAME
from seqstruct.training.run import PREVIOUS_RUN, Run, RunPaths, check_same_run
from tests.helpers import tiny_overrides


def _config(fasta: Path, out: Path, **extra: object) -> PretrainConfig:
    return load_config(PretrainConfig, None, tiny_overrides(fasta, out, **extra))


def _fake_finished_run(out: Path, tag: str) -> dict[str, bytes]:
    """The files a finished run leaves (contents tagged so that two runs can be told apart)."""
    files = {
        "metrics.json": json.dumps({"run": tag}).encode(),
        "model.safetensors": f"weights of {tag}".encode(),
        "checkpoints/checkpoint-4/trainer_state.json": b"{}",
    }
    for name, content in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(content)
    return files


def _contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_overwritten_run_stays_aside_until_its_replacement_finishes(protein_fasta, tmp_path) -> None:
    out = tmp_path / "run"
    old = _fake_finished_run(out, "old")
    config = _config(protein_fasta, out)

    # The replacement is interrupted after the old run was set aside: the old run is whole, aside.
    with pytest.raises(RuntimeError, match="interrupted"), Run(config, overwrite=True) as run:
        run.clear_stale()
        assert _contents(out / PREVIOUS_RUN) == old and not (out / "metrics.json").exists()
        (out / "log.csv").write_text("step\n1\n")  # the replacement's first output
        raise RuntimeError("interrupted")
    assert _contents(out / PREVIOUS_RUN) == old

    # A second --overwrite drops the unfinished replacement and keeps the finished run aside...
    with pytest.raises(RuntimeError, match="again"), Run(config, overwrite=True) as run:
        run.clear_stale()
        assert not (out / "log.csv").exists() and _contents(out / PREVIOUS_RUN) == old
        raise RuntimeError("again")

    # ...until a replacement finishes: only then is the old run removed.
    with Run(config, overwrite=True) as run:
        run.clear_stale()
        new = _fake_finished_run(out, "new")
        assert _contents(out / PREVIOUS_RUN) == old
    assert not (out / PREVIOUS_RUN).exists()
    assert {k: v for k, v in _contents(out).items() if k != LOCK_NAME} == new


def test_a_finished_replacement_killed_before_its_clean_up_is_tidied(protein_fasta, tmp_path) -> None:
    out = tmp_path / "run"
    _fake_finished_run(out / PREVIOUS_RUN, "old")
    new = _fake_finished_run(out, "new")  # killed after its last write, before removing the old run
    (out / ".metrics.json.abc123.tmp").write_text("half")  # an interrupted atomic write
    (out / ".save-xyz").mkdir()  # an interrupted model save
    (out / ".save-xyz" / "model.safetensors").write_text("half")
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        Run(_config(protein_fasta, out))  # the finished run is still refused without a flag
    assert not (out / PREVIOUS_RUN).exists()
    assert not (out / ".metrics.json.abc123.tmp").exists() and not (out / ".save-xyz").exists()
    assert {k: v for k, v in _contents(out).items() if k != LOCK_NAME} == new


def test_pretrain_overwrite_that_fails_in_training_keeps_the_old_run(
    protein_fasta, tmp_path, monkeypatch
) -> None:
    """End to end: `pretrain --overwrite` whose training fails leaves the old run's every byte aside, and a
    later successful --overwrite removes it."""
    from transformers import Trainer

    from seqstruct.training.mlm import pretrain

    out = tmp_path / "run"
    pretrain(_config(protein_fasta, out, **{"train.max_steps": 4}))
    old = {k: v for k, v in _contents(out).items() if k != LOCK_NAME}

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(Trainer, "train", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        pretrain(_config(protein_fasta, out, **{"train.max_steps": 4, "train.seed": 1}), overwrite=True)
    assert _contents(out / PREVIOUS_RUN) == old
    monkeypatch.undo()
    metrics = pretrain(_config(protein_fasta, out, **{"train.max_steps": 4, "train.seed": 1}), overwrite=True)
    assert metrics["steps"] == 4 and not (out / PREVIOUS_RUN).exists()


def test_a_resume_may_extend_the_budget_a_finished_run_reused_may_not(protein_fasta, tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    save_config(_config(protein_fasta, out), out / "config.yaml")
    longer = _config(protein_fasta, out, **{"train.max_steps": 99})
    check_same_run(RunPaths(out), longer)  # resuming to go on longer is allowed
    with pytest.raises(FileExistsError, match=r"other settings \(train.max_steps: \d+ -> 99\)"):
        check_same_run(RunPaths(out), longer, finished=True)
    check_same_run(RunPaths(out), _config(protein_fasta, out), finished=True)  # the same budget: reused
