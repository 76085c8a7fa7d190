"""Token-budget batches and the wall-clock budget, through `pretrain` (tiny runs, seconds each)."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from safetensors.torch import load_file

from seqstruct.config import PretrainConfig, load_config
from seqstruct.data.fasta import read_fasta, write_fasta
from seqstruct.training.mlm import pretrain
from tests.helpers import tiny_overrides

# 108 training proteins of <= 64 tokens in batches of <= 512 tokens: about 14 batches an epoch.
BUDGET = {"data.max_tokens": 512, "train.batch_size": 64}


def _config(fasta, out, **extra):
    return load_config(PretrainConfig, None, tiny_overrides(fasta, out, **{**BUDGET, **extra}))


def _log(out) -> list[dict[str, str]]:
    with open(out / "log.csv", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_token_budget_run_learns_and_reports_padding_and_throughput(protein_fasta, tmp_path) -> None:
    out = tmp_path / "budget"
    metrics = pretrain(_config(protein_fasta, out, **{"train.max_steps": 30, "train.eval_steps": 10}))
    eval_losses = [float(r["eval_loss"]) for r in _log(out) if r.get("eval_loss")]
    assert eval_losses[-1] < eval_losses[0] - 0.05
    batching = json.loads((out / "metrics.json").read_text())["batching"]
    assert batching["max_tokens"] == 512 and batching["max_batch_tokens"] <= 512
    assert batching["padding_fraction"] < 0.05
    assert metrics["train_tokens_per_s"] > 0
    # Non-padding tokens: 30 steps of ~500-token batches with <5% padding.
    assert 30 * 512 * 0.8 < metrics["train_tokens"] <= 30 * 512


def test_token_budget_resume_after_the_first_epoch_equals_uninterrupted(protein_fasta, tmp_path) -> None:
    """24 steps straight vs. resumed from step 16, in the second epoch: the epoch's batch order comes from
    (seed, epoch), never from the global RNG, so the resumed run draws the same batches."""
    settings = {"train.max_steps": 24, "train.save_steps": 8, "train.eval_steps": 8}
    straight = tmp_path / "straight"
    pretrain(_config(protein_fasta, straight, **settings))
    state = json.loads((straight / "checkpoints" / "checkpoint-16" / "trainer_state.json").read_text())
    assert 1.0 < state["epoch"] < 2.0, state["epoch"]  # the resume point lies in the second epoch
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoints" / "checkpoint-16", resumed / "checkpoints" / "checkpoint-16")
    pretrain(_config(protein_fasta, resumed, **settings), resume=True)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-6, key


def test_max_minutes_stops_cleanly_and_the_run_resumes_to_max_steps(protein_fasta, tmp_path) -> None:
    out = tmp_path / "timed"
    stopped = pretrain(_config(protein_fasta, out, **{"train.max_steps": 30, "train.max_minutes": 0.0001}))
    assert stopped["stopped_by_max_minutes"] is True
    assert 1 <= stopped["steps"] < 30
    assert (out / "model.safetensors").is_file() and stopped["heldout"]["masked_tokens"] > 0
    assert (out / "checkpoints" / f"checkpoint-{stopped['steps']}" / "trainer_state.json").is_file()
    # Another budget (here none) is a setting a resume may change.
    finished = pretrain(_config(protein_fasta, out, **{"train.max_steps": 30}), resume=True)
    assert finished["steps"] == 30 and finished["stopped_by_max_minutes"] is False


def test_learning_rate_decays_to_its_floor(protein_fasta, tmp_path) -> None:
    out = tmp_path / "floor"
    extra = {
        "train.max_steps": 20,
        "train.lr_scheduler": "cosine_with_min_lr",
        "train.min_lr_ratio": 0.1,
        "train.optim": "adamw_torch_fused",
        "train.adam_beta2": 0.98,
    }
    pretrain(_config(protein_fasta, out, **extra))
    rates = [float(r["learning_rate"]) for r in _log(out) if r.get("learning_rate")]
    floor = 3e-3 * 0.1  # tiny_overrides' peak is 3e-3
    assert min(rates) >= floor * (1 - 1e-6)  # never below the floor (a plain cosine would end near 0)
    assert rates[-1] == pytest.approx(floor, rel=0.1)  # the last logged step sits at it


def test_eval_fasta_holds_out_its_own_proteins(protein_fasta, tmp_path) -> None:
    records = read_fasta(protein_fasta)
    train, heldout = tmp_path / "train.fasta", tmp_path / "heldout.fasta"
    write_fasta(records[:100], train)
    write_fasta(records[100:], heldout)
    out = tmp_path / "run"
    metrics = pretrain(_config(train, out, **{"data.eval_fasta": heldout, "train.max_steps": 4}))
    assert metrics["train_proteins"] == 100 and metrics["heldout_proteins"] == 20
    assert [r.id for r in read_fasta(out / "heldout.fasta")] == [r.id for r in records[100:]]
    with pytest.raises(ValueError, match="shares 20 id"):
        pretrain(_config(protein_fasta, tmp_path / "leak", **{"data.eval_fasta": heldout}))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"data.max_tokens": 32}, "cannot hold one example"),
        ({"data.max_tokens": -1}, "data.max_tokens must be >= 0"),
        ({"train.min_lr_ratio": 0.1}, "needs lr_scheduler one of"),
        ({"train.min_lr_ratio": 1.5, "train.lr_scheduler": "cosine_with_min_lr"}, r"must be in \[0, 1\)"),
        ({"train.max_minutes": -1}, "max_minutes must be >= 0"),
        ({"structure.graph": "g.tsv", "structure.weight": 0.5}, "masked-LM alone"),
    ],
)
def test_bad_budget_settings_are_refused_before_any_data_is_read(tmp_path, extra, message) -> None:
    missing = tmp_path / "no-such.fasta"  # never read: the settings are refused first
    with pytest.raises(ValueError, match=message):
        pretrain(_config(missing, tmp_path / "out", **extra))
