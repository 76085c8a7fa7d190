"""The one sentence a comparison ends with: the answer to its question and how sure it is.

It states each headline figure's paired difference with its spread (or that one seed measured none),
whether the method under test did what it is meant to (a structure loss that never left its chance value
cannot show that structure helps), and whether each arm left chance on the tasks (beat the naive
predictor) and beat a reference baseline. It claims that a method helps only when the method did its job
and every headline difference is positive beyond twice its spread over at least two seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from seqstruct.evaluation.tables import figure_label

MIN_SEEDS = 2  # fewer seeds measure no spread: no claim either way


@dataclass(frozen=True)
class Question:
    """What a comparison asks: does `arm` beat `reference`? `chance` is the model that knows no input (its
    scores are what an encoder that learned nothing of the task reaches), `baseline` a cheap one to beat."""

    arm: str
    reference: str
    chance: str
    baseline: str
    names: dict[str, str]  # model -> its name in words

    def name(self, model: str) -> str:
        return self.names.get(model, model)


def _difference(entry: dict[str, Any], key: str) -> str:
    stats = entry[key]
    spread = f" ± {stats['std']:.3f}" if stats["n"] >= MIN_SEEDS and math.isfinite(stats["std"]) else ""
    return f"{stats['mean']:+.3f}{spread}"


def _beats(summary: dict[str, Any], figures: Sequence[str], model: str, other: str) -> tuple[int, int]:
    """(figures where `model`'s mean is above `other`'s, figures where both have one)."""
    both = [f for f in figures if summary[f].get(model, {}).get("n") and summary[f].get(other, {}).get("n")]
    return sum(summary[f][model]["mean"] > summary[f][other]["mean"] for f in both), len(both)


def _method_status(structure: Sequence[dict[str, Any] | None]) -> tuple[bool, str]:
    """(whether the structure loss left chance in every run, the clause that says so) from the arm's
    metrics.json `structure` blocks, one per seed."""
    blocks = [b for b in structure if b and b.get("weight")]
    if not blocks:
        return True, ""
    ratios = [b.get("loss_to_chance") for b in blocks]
    if any(b.get("left_chance") is None for b in blocks):
        return False, "no structure loss was logged, so this run cannot say whether the graph helps"
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    if all(b["left_chance"] for b in blocks):
        return True, f"the structure loss left its chance value ({shown} of it at the last step)"
    return False, (
        f"the structure loss never left its chance value ({shown} of it at the last step), so the encoder "
        "did not learn the graph and this run cannot say whether the graph helps"
    )


def answer_sentence(
    summary: dict[str, dict[str, dict[str, Any]]],
    question: Question,
    figures: Sequence[str],
    structure: Sequence[dict[str, Any] | None] = (),
) -> str:
    """One sentence from `summary` (`seqstruct.experiments.compare.summarise`'s) on the headline
    `figures`; `structure`: the tested arm's metrics.json `structure` blocks, one per seed."""
    key = f"{question.arm} - {question.reference}"
    shown = [f for f in figures if f in summary and summary[f].get(key, {}).get("n")]
    if not shown:
        raise ValueError(f"no headline figure among {list(figures)} has a {key} difference")
    seeds = min(summary[f][key]["n"] for f in shown)
    differences = "; ".join(f"{figure_label(f)} {_difference(summary[f], key)}" for f in shown)
    worked, method = _method_status(structure)
    arm, reference = question.name(question.arm), question.name(question.reference)
    if seeds < MIN_SEEDS:
        spread = "one seed, so no spread was measured and no difference here is evidence either way"
        lead = f"This run does not answer whether {arm} beats {reference}"
    else:
        spread = f"± std over {seeds} seeds, paired by seed"
        stats = [summary[f][key] for f in shown]
        if worked and all(s["mean"] - 2 * s["std"] > 0 for s in stats):  # every lead beyond 2 std
            lead = f"Yes, {arm} beats {reference}"
        elif all(s["mean"] + 2 * s["std"] < 0 for s in stats):
            lead = f"No, {reference} beats {arm}"
        else:
            lead = f"It is not shown that {arm} beats {reference}"
    models = [question.reference, question.arm]
    versus = []
    for model in models:
        above_chance, n_chance = _beats(summary, shown, model, question.chance)
        above_base, n_base = _beats(summary, shown, model, question.baseline)
        versus.append(
            f"{question.name(model)} beats {question.name(question.chance)} on {above_chance} of "
            f"{n_chance} and {question.name(question.baseline)} on {above_base} of {n_base}"
        )
    parts = [
        f"{lead}: {arm} minus {reference} is {differences} ({spread})",
        *([method] if method else []),
        ", ".join(versus) + " headline figures",
    ]
    return "; ".join(parts) + "."
