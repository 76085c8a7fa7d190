"""A pretraining run's summary.md: the structure loss against its chance value (issue 21)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqstruct.report import pretrain_summary

# ---------------------------------------------------------------------------------------------------------
# Pretraining summary: the structure loss against its chance value (issue 21)
# ---------------------------------------------------------------------------------------------------------


def _pretraining_run(root: Path, structure: dict | None) -> Path:
    """A run directory with the metrics.json and log.csv `pretrain_summary` reads."""
    root.mkdir()
    metrics = {
        "parameters": 1000,
        "steps": 8,
        "train_proteins": 36,
        "heldout_proteins": 4,
        "train_tokens": 8640,
        "train_runtime_s": 6.0,
        "heldout": {
            "masked_accuracy": 0.1,
            "perplexity": 18.0,
            "masked_tokens": 39,
            "accuracy_gain": 0.05,
            "accuracy_gain_se": 0.01,
            "nll_gain": 0.1,
            "nll_gain_se": 0.02,
        },
        "unigram_baseline": {"masked_accuracy": 0.05, "perplexity": 20.0, "most_frequent": "L"},
        "structure": structure,
    }
    (root / "metrics.json").write_text(json.dumps(metrics))
    (root / "log.csv").write_text("step,loss,eval_loss\n4,3.0,\n8,,2.9\n")
    return root


def _structure(final: float, chance: float, best: float, link_mrr: float | None = 0.25) -> dict:
    return {
        "weight": 0.5,
        "loss": "info_nce",
        "final_loss": final,
        "chance": chance,
        "loss_to_chance": final / chance,
        "left_chance": final / chance < 0.9,
        "best_loss_to_chance": best,
        "best_step": 4,
        "left_chance_threshold": 0.9,
        "link_mrr": link_mrr,
        "link_queries": 4,
    }


@pytest.mark.parametrize(
    ("structure", "says", "never_says"),
    [
        (_structure(3.1, 3.135, 0.98), "never left chance", "left its chance value"),
        (_structure(3.1, 3.135, 0.5), "fell back to chance", "never left"),
        (_structure(1.2, 3.135, 0.38), "left its chance value", "cannot show"),
        (None, None, "Structure-inducing loss"),  # no graph: no section
        (_structure(3.1, 3.135, 0.98) | {"weight": 0.0}, None, "chance"),  # masked-LM alone on the graph
    ],
)
def test_pretrain_summary_flags_a_structure_loss_that_never_left_chance(
    tmp_path, structure, says, never_says
) -> None:
    text = pretrain_summary(_pretraining_run(tmp_path / "run", structure)).read_text(encoding="utf-8")
    if says is not None:
        assert says in text
        assert "MRR 0.250" in text
    assert never_says not in text
    if says == "never left chance":
        assert "cannot show whether structure-inducing pretraining helps or hurts" in text


def test_heldout_line_reads_the_gain_against_the_unigram_baseline(tmp_path) -> None:
    from seqstruct.report.summary import heldout_line

    metrics = json.loads((_pretraining_run(tmp_path / "run", None) / "metrics.json").read_text())
    line = heldout_line(metrics)
    assert "accuracy 0.100 (unigram baseline 0.050; gain +0.050 +/- 0.010 SE)" in line
    assert line.endswith("perplexity 18.00 (baseline 20.00)")
