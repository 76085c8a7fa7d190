from __future__ import annotations

import pytest

from seqstruct.models.card import model_card


def _run(**extra: object) -> dict:
    run = {
        "data": "shard-000.fasta.gz",
        "continued_from": None,
        "steps": 1500,
        "train_tokens": 393_000_000,
        "train_tokens_per_s": 812_345.6,
        "train_runtime_s": 484.0,
        "wall_seconds": 540.0,
        "stopped_by_max_minutes": False,
        "padding_fraction": 0.0127,
        "mfu": 0.123,
        "heldout_perplexity": 12.61,
        "heldout_masked_accuracy": 0.214,
        "unigram_perplexity": 17.9,
        "parameters": 10_000_000,
        "device": "cuda",
        "machine": "NVIDIA H200",
        "torch": "2.11.0",
    }
    return run | extra


def test_card_sums_the_history_and_reports_the_latest_figures() -> None:
    history = [
        _run(),
        _run(
            data="shard-001.fasta.gz",
            continued_from="protein-small",
            steps=1000,
            train_tokens=262_000_000,
            heldout_perplexity=11.9,
            stopped_by_max_minutes=True,
            train_tokens_per_s=None,
        ),
    ]
    card = model_card(history)
    assert "pretraining runs: 2; tokens seen: 655,000,000; optimiser steps: 2,500" in card
    assert "held-out perplexity: 11.90 (unigram baseline 17.90)" in card
    assert (
        "| 1 | shard-000.fasta.gz | scratch | 1,500 | 393,000,000 | 812,346 | 12.3% | 1.27% | 9.0 min |"
        in card
    )
    assert "| 2 | shard-001.fasta.gz | protein-small | 1,000 (time budget) |" in card
    assert "| — |" in card  # a throughput not measured (a resumed run) is shown as such
    assert "CC BY 4.0" in card
    assert "trained on CPU only" not in card


def test_a_model_without_a_gpu_run_is_labelled_cpu_only() -> None:
    cpu = _run(device="cpu", machine="x86_64", mfu=None)
    assert "**trained on CPU only**" in model_card([cpu, cpu])
    assert "trained on CPU only" not in model_card([cpu, _run(continued_from="protein-small")])


def test_card_needs_a_run() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        model_card([])
