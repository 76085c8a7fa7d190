from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml
from safetensors.torch import load_file

from seqstruct.config import PretrainConfig, load_config
from seqstruct.data.fasta import read_fasta
from seqstruct.training.mlm import pretrain
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def finished_run(protein_fasta, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    config = load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out, **{"train.max_steps": 40}))
    metrics = pretrain(config)
    return out, metrics


def test_heldout_loss_drops_and_outputs_are_written(finished_run) -> None:
    out, metrics = finished_run
    with open(out / "log.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    eval_losses = [float(r["eval_loss"]) for r in rows if r.get("eval_loss")]
    assert len(eval_losses) >= 3
    assert eval_losses[-1] < eval_losses[0] - 0.05
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "config.yaml",
        "metrics.json",
        "heldout.fasta",
    ):
        assert (out / name).is_file(), name
    assert any((out / "tensorboard").iterdir())
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["steps"] == 40 and saved["heldout"]["masked_tokens"] > 0
    assert 0.0 < saved["unigram_baseline"]["masked_accuracy"] < 0.2
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["max_steps"] == 40
    heldout = read_fasta(out / "heldout.fasta")
    assert len(heldout) == 12 and all(len(r.sequence) > 0 for r in heldout)


def test_rerunning_a_finished_run_only_evaluates_and_saves(finished_run, protein_fasta, caplog) -> None:
    out, metrics = finished_run
    config = load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out, **{"train.max_steps": 40}))
    caplog.set_level("INFO", logger="seqstruct")
    again = pretrain(config, resume=True)
    assert "already reached max_steps=40: evaluating and saving only" in caplog.text
    assert again["steps"] == 40 and again["train_runtime_s"] == metrics["train_runtime_s"]
    assert again["heldout"]["perplexity"] == pytest.approx(metrics["heldout"]["perplexity"])


def test_resume_equals_uninterrupted(protein_fasta, tmp_path) -> None:
    """8 steps straight vs. 4 steps, 'interrupted' (later checkpoint removed), resumed to 8."""
    straight = tmp_path / "straight"
    pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, straight)))
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    metrics = pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, resumed)), resume=True)
    assert metrics["steps"] == 8
    a = load_file(straight / "model.safetensors")
    b = load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-6, key
    first = load_file(straight / "checkpoints" / "checkpoint-4" / "model.safetensors")
    assert any((first[k] - a[k]).abs().max() > 1e-4 for k in a)  # steps 5-8 really changed the weights


def test_refuses_to_mix_runs_and_resume_needs_checkpoint(protein_fasta, tmp_path, finished_run) -> None:
    out, _ = finished_run
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out)))
    with pytest.raises(FileExistsError, match=r"data.eval_fraction: 0.1 -> 0.2"):
        overrides = tiny_overrides(protein_fasta, out, **{"train.max_steps": 40, "data.eval_fraction": 0.2})
        pretrain(load_config(PretrainConfig, None, overrides), resume=True)
    # A bad input fails before an --overwrite removes the old run's checkpoints.
    with pytest.raises(FileNotFoundError):
        pretrain(
            load_config(PretrainConfig, None, tiny_overrides(tmp_path / "missing.fa", out)), overwrite=True
        )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == checkpoints
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        pretrain(
            load_config(PretrainConfig, None, tiny_overrides(protein_fasta, tmp_path / "new")), resume=True
        )


def test_gradient_accumulation_keeps_the_loss_scale(protein_fasta, tmp_path) -> None:
    """Batch 8 at once and 2 x 4 accumulated log the same loss scale: ESM's forward ignores
    `num_items_in_batch`, and the model must say so (`accepts_loss_kwargs`), or the Trainer would skip
    dividing by the accumulation steps and the logged loss (and the gradient) would double."""
    first_losses = []
    for steps, batch in ((1, 8), (2, 4)):
        out = tmp_path / f"ga{steps}"
        overrides = tiny_overrides(
            protein_fasta, out, **{"train.gradient_accumulation_steps": steps, "train.batch_size": batch}
        )
        pretrain(load_config(PretrainConfig, None, overrides))
        with open(out / "log.csv", encoding="utf-8") as handle:
            first_losses.append(float(next(row["loss"] for row in csv.DictReader(handle) if row["loss"])))
    assert abs(first_losses[1] / first_losses[0] - 1) < 0.2, first_losses


def test_resume_in_a_later_epoch_equals_uninterrupted(protein_fasta, tmp_path) -> None:
    """108 training proteins in batches of 8: 14 steps an epoch; resumed at step 20, inside epoch 1,
    whose batch order must be the uninterrupted run's (not drawn from the checkpoint's global RNG)."""
    extra = {"train.max_steps": 24, "train.save_steps": 4, "train.save_total_limit": 10}
    straight = tmp_path / "straight"
    pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, straight, **extra)))
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-20", resumed / "checkpoints" / "checkpoint-20")
    config = load_config(PretrainConfig, None, tiny_overrides(protein_fasta, resumed, **extra))
    assert pretrain(config, resume=True)["steps"] == 24
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_an_unfinished_checkpoint_is_set_aside_and_the_last_complete_one_resumes(
    protein_fasta, tmp_path, caplog
) -> None:
    straight = tmp_path / "straight"
    pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, straight)))
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-4", resumed / "checkpoints" / "checkpoint-4")
    shutil.copytree(straight / "checkpoints" / "checkpoint-8", resumed / "checkpoints" / "checkpoint-8")
    (resumed / "checkpoints" / "checkpoint-8" / "trainer_state.json").unlink()  # killed while saving
    caplog.set_level("WARNING", logger="seqstruct")
    metrics = pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, resumed)), resume=True)
    assert "checkpoint-8 was not finished (no complete trainer_state.json)" in caplog.text
    assert (resumed / "checkpoints" / "incomplete-checkpoint-8").is_dir() and metrics["steps"] == 8
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6


def test_a_finished_run_without_checkpoints_is_not_replaced_silently(protein_fasta, tmp_path) -> None:
    out = tmp_path / "run"
    pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out)))
    shutil.rmtree(out / "checkpoints")
    before = (out / "model.safetensors").read_bytes()
    other = load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out, **{"train.seed": 1}))
    with pytest.raises(FileExistsError, match=r"already holds a finished run \(metrics.json"):
        pretrain(other)
    assert (out / "model.safetensors").read_bytes() == before


def test_a_second_writer_of_one_run_directory_is_refused(protein_fasta, tmp_path) -> None:
    from seqstruct.io import DirectoryBusy, DirectoryLock

    out = tmp_path / "run"
    with DirectoryLock(out), pytest.raises(DirectoryBusy, match="being written by"):
        pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out)))
    assert not (out / "config.yaml").exists()  # nothing was written by the refused run
    pretrain(load_config(PretrainConfig, None, tiny_overrides(protein_fasta, out)))  # free again: it runs
