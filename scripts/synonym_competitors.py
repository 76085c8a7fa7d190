"""Who outranks the right name in GO synonym search? A diagnostic for docs/results.md (issue 21).

For the 2,000 test queries of `go-synonym-search` (the task's own sample), each model ranks all term names
(cosine, the task's `method.search`). A *competitor* is a name ranked in the top 10 above the query's own
term's name (all 10 when the own name is not there). The script reports, per model, the share of
competitors that are the own term's is_a relatives in the whole GO graph (graph.tsv, the edges the structure
loss was trained on, with graph_heldout.tsv, since the test terms' edges are held out of training) at one
and at two hops, and the same share for the names ranked 11-20 below them
(each model's own background), so a model whose top 10 fills with graph relatives stands out.

    python scripts/synonym_competitors.py data/prepared/go-text minilm runs/compare/go-text-valid/seed0/structure-only
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from seqstruct.data.graph import read_edge_list
from seqstruct.data.prepared import Prepared, load_prepared
from seqstruct.evaluation.methods import build_method
from seqstruct.evaluation.tasks.search import SynonymSearchTask

DEPTH = 20  # ranks read: the top 10 scored, 11-20 the background


def relatives(data: Prepared, ids: list[str]) -> tuple[list[set[int]], list[set[int]]]:
    """Each row's neighbours in graph.tsv and graph_heldout.tsv together, at one hop, and at one or two."""
    one: list[set[int]] = [set() for _ in ids]
    for path in (data.graph_path, data.heldout_graph_path):
        graph, _ = read_edge_list(path, ids)
        for row, found in enumerate(graph.neighbours()):
            one[row] |= set(map(int, found))
    two = [set().union(first, *(one[j] for j in first)) - {i} for i, first in enumerate(one)]
    return one, two


def competitor_shares(
    ranked: np.ndarray, targets: np.ndarray, one: list[set[int]], two: list[set[int]]
) -> dict[str, float]:
    """ranked [Q, DEPTH]: shares of top-10 competitors and of ranks 11-20 that are 1-hop / 2-hop relatives."""
    counts = {"competitors": 0, "hop1": 0, "hop2": 0, "background": 0, "bg_hop1": 0, "bg_hop2": 0}
    for row, target in zip(ranked, targets, strict=True):
        top = list(row[:10])
        above = top[: top.index(target)] if target in top else top
        for item, prefix in [(i, "") for i in above] + [(i, "bg_") for i in row[10:] if i != target]:
            counts["competitors" if not prefix else "background"] += 1
            counts[f"{prefix}hop1"] += int(item) in one[target]
            counts[f"{prefix}hop2"] += int(item) in two[target]
    top10 = np.mean([t in r[:10] for r, t in zip(ranked, targets, strict=True)])
    return {
        "recall@10": float(top10),
        "competitors": counts["competitors"],
        "competitors 1-hop": counts["hop1"] / max(counts["competitors"], 1),
        "competitors 1-2 hops": counts["hop2"] / max(counts["competitors"], 1),
        "ranks 11-20 1-hop": counts["bg_hop1"] / max(counts["background"], 1),
        "ranks 11-20 1-2 hops": counts["bg_hop2"] / max(counts["background"], 1),
    }


def main(argv: list[str] | None = None) -> list[dict[str, float | str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("models", nargs="+", help="as `seqstruct evaluate --model` names them")
    args = parser.parse_args(argv)
    data = load_prepared(args.dataset)
    queries, targets, names, _ = SynonymSearchTask().queries(data)  # the task's own 2,000 test queries
    one, two = relatives(data, [i for s in data.splits for i in data.split(s)["id"]])
    found = []
    for model in args.models:
        ranked = build_method(model, pooling="mean").search(queries, names, DEPTH, "text")  # [Q, DEPTH]
        found.append({"model": model} | competitor_shares(ranked, np.array(targets), one, two))
        print(json.dumps(found[-1]), flush=True)
    return found


if __name__ == "__main__":
    main()
