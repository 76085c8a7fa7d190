"""scripts/synonym_competitors.py: which names outrank a synonym's own term, and how many are its relatives."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.helpers import load_script


def _script():
    return load_script("synonym_competitors")


def test_relatives_join_the_training_and_held_out_graphs_and_reach_two_hops(tmp_path) -> None:
    ids = ["a", "b", "c", "d", "e"]
    (tmp_path / "graph.tsv").write_text("a\tb\n")
    (tmp_path / "graph_heldout.tsv").write_text("b\tc\nd\te\n")
    data = SimpleNamespace(
        graph_path=tmp_path / "graph.tsv", heldout_graph_path=tmp_path / "graph_heldout.tsv"
    )
    one, two = _script().relatives(data, ids)
    assert one == [{1}, {0, 2}, {1}, {4}, {3}]
    assert two == [{1, 2}, {0, 2}, {0, 1}, {4}, {3}]  # a reaches c through b; never itself


def test_competitors_are_the_names_above_the_own_one_or_the_whole_top_ten() -> None:
    one = [set() for _ in range(40)]
    one[5] = {1, 11}  # 11 sits in ranks 11-20 of the first query: background, not competitor
    two = [set(s) for s in one]
    two[5] |= {2}
    first = [1, 2, 5, *range(20, 27), 11, *range(27, 36)]  # own name (5) at rank 3
    second = [*range(10, 20), *range(20, 30)]  # own name (7) not in the top 20
    found = _script().competitor_shares(np.array([first, second]), np.array([5, 7]), one, two)
    assert found["recall@10"] == pytest.approx(0.5)
    assert found["competitors"] == 2 + 10
    assert found["competitors 1-hop"] == pytest.approx(1 / 12)  # name 1, above the first query's own
    assert found["competitors 1-2 hops"] == pytest.approx(2 / 12)  # and name 2, two hops from 5
    assert found["ranks 11-20 1-hop"] == pytest.approx(1 / 20)  # name 11 among 10 + 10 background ranks
