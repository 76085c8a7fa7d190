"""The comparison's one sentence: the answer, its uncertainty, and no claim a run cannot support."""

from __future__ import annotations

import math
import re

import pytest

from seqstruct.report.answer import Question, answer_sentence

QUESTION = Question("structure", "mlm", "naive", "kmer", {"mlm": "MLM only", "kmer": "2-mer"})
FIGURES = ["go-mf test_remote fmax", "protein-link heldout mrr"]


def _summary(difference: float, std: float, seeds: int) -> dict:
    cell = lambda mean: {"mean": mean, "std": std if seeds > 1 else math.nan, "n": seeds}  # noqa: E731
    return {
        "go-mf test_remote fmax": {
            "mlm": cell(0.44),
            "structure": cell(0.44 + difference),
            "naive": {"mean": 0.45, "std": 0.0, "n": seeds},  # MLM only is below the naive predictor here
            "kmer": {"mean": 0.43, "std": 0.0, "n": seeds},
            "structure - mlm": cell(difference),
        },
        "protein-link heldout mrr": {
            "mlm": cell(0.36),
            "structure": cell(0.36 + difference),
            "naive": {"mean": math.nan, "std": math.nan, "n": 0},  # naive ranks nothing
            "kmer": {"mean": 0.55, "std": 0.0, "n": seeds},
            "structure - mlm": cell(difference),
        },
    }


def _left(left: bool) -> dict:
    return {"weight": 0.5, "left_chance": left, "loss_to_chance": 0.8 if left else 0.98}


def test_one_seed_answers_nothing_and_says_why() -> None:
    text = answer_sentence(_summary(0.05, 0.0, 1), QUESTION, FIGURES, [_left(True)])
    assert text.startswith("This run does not answer whether structure beats MLM only: ")
    assert "GO-MF Fmax, remote homology +0.050; protein links MRR, held-out sequences +0.050" in text
    assert "one seed, so no spread was measured" in text and "±" not in text
    assert "left its chance value (0.80 of it" in text
    # chance and the baseline: per encoder, on the figures each has
    assert "MLM only beats naive on 0 of 1 and 2-mer on 1 of 2" in text
    assert "structure beats naive on 1 of 1 and 2-mer on 1 of 2 headline figures." in text
    assert text.endswith(".") and not re.search(r"\.\s+[A-Z]", text)  # one sentence


@pytest.mark.parametrize(
    ("difference", "std", "left", "starts"),
    [
        (0.05, 0.01, True, "Yes, structure beats MLM only"),
        (0.05, 0.01, False, "It is not shown that"),  # never left chance: no claim that the graph helps
        (0.05, 0.03, True, "It is not shown that"),  # within twice the spread
        (-0.05, 0.01, True, "No, MLM only beats structure"),
    ],
)
def test_several_seeds_claim_only_what_the_spread_and_the_method_support(
    difference, std, left, starts
) -> None:
    text = answer_sentence(_summary(difference, std, 3), QUESTION, FIGURES, [_left(left)] * 3)
    assert text.startswith(starts)
    assert f"{difference:+.3f} ± {std:.3f}" in text and "± std over 3 seeds, paired by seed" in text
    assert ("never left its chance value (0.98" in text) == (not left)


def test_a_sentence_needs_a_difference() -> None:
    with pytest.raises(ValueError, match="no headline figure"):
        answer_sentence(_summary(0.0, 0.0, 1), QUESTION, ["go-mf test_close fmax"])
