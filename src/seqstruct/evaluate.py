"""`seqstruct evaluate`: embed a dataset's sequences (or load their embeddings) and score the embedding
space as it is, without fine-tuning, with the metrics of `seqstruct.evaluation.structure`.

MODEL is a saved model directory (its encoder embeds `data_dir/sequences.fasta`) or a `.npz` written by
`seqstruct embed` (ids and embeddings; its ids must cover the FASTA's). With an output directory it
writes `evaluation.json` (every metric, with what produced it) and `evaluation.md` (a table row per task
and label column).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqstruct.evaluation.structure import TASKS, evaluate_embeddings
from seqstruct.io import atomic_open

logger = logging.getLogger(__name__)


def load_embeddings(path: str | Path) -> tuple[list[str], np.ndarray, str | None]:
    """(ids, embeddings [N, D], pooling or None) from a .npz of `seqstruct embed`."""
    with np.load(path, allow_pickle=False) as npz:
        missing = {"ids", "embeddings"} - set(npz.files)
        if missing:
            raise ValueError(f"{path}: no {sorted(missing)} array (expected a .npz from `seqstruct embed`)")
        pooling = str(npz["pooling"]) if "pooling" in npz.files else None
        return [str(i) for i in npz["ids"]], npz["embeddings"], pooling


def embed_dataset(
    model_dir: str | Path, fasta: Path, pooling: str, batch_size: int, max_length: int | None
) -> tuple[list[str], np.ndarray]:
    """(ids, embeddings [N, D]) of the records of `fasta`, embedded by the encoder in `model_dir`."""
    from seqstruct.embed import embed_records  # transformers loads only when a model is used

    return embed_records(model_dir, fasta, pooling, batch_size, max_length=max_length)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_lines(result: dict) -> list[str]:
    """One line per (task, label column) with the key numbers, for the terminal."""
    lines = []
    for column, m in result.get("knn", {}).items():
        lines.append(
            f"knn {column}: accuracy {_number(m['accuracy'])} (chance {_number(m['chance'])}), "
            f"AUROC {_number(m['auroc'])}; k={m['k']}, {m['n']} nodes, {m['classes']} classes"
        )
    if "link" in result:
        m = result["link"]
        lines.append(
            f"link: MRR {_number(m['mrr'])}, nDCG@10 {_number(m['ndcg@10'])}, "
            f"P@1 {_number(m.get('precision@1'))}, R@10 {_number(m.get('recall@10'))}; "
            f"{m['queries']} held-out queries ({m['skipped']} without a relevant node skipped)"
        )
    return lines


def summary_markdown(result: dict) -> str:
    """evaluation.md: what was evaluated, then a table per task with a row per label column."""
    out = [
        f"# Evaluation of {result['model']}",
        "",
        f"Data `{result['data_dir']}` ({result['n']} sequences), pooling {result['pooling']}, "
        f"{result['metric']} similarity, {result['wall_seconds']:.1f} s.",
    ]
    if "knn" in result:
        out += [
            "",
            f"Leave-one-out {result['k']}-nearest-neighbour classification; AUROC is macro one-vs-rest "
            "over classes with at least two members; chance is the majority-class rate.",
            "",
            "| task | labels | nodes | classes | accuracy | chance | AUROC |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for column, m in result["knn"].items():
            out.append(
                f"| knn | {column} | {m['n']} | {m['classes']} | {_number(m['accuracy'])} | "
                f"{_number(m['chance'])} | {_number(m['auroc'])} |"
            )
    if "link" in result:
        m = result["link"]
        out += [
            "",
            f"Link retrieval: each held-out node ({m['heldout_rule']}) ranks every other node; its "
            "held-out edges are the relevant ones, its training edges are left out of the ranking.",
            "",
            "| task | queries | MRR | nDCG@10 | P@1 | P@10 | R@10 |",
            "|---|---:|---:|---:|---:|---:|---:|",
            f"| link | {m['queries']} | {_number(m['mrr'])} | {_number(m['ndcg@10'])} | "
            f"{_number(m.get('precision@1'))} | {_number(m.get('precision@10'))} | "
            f"{_number(m.get('recall@10'))} |",
        ]
    return "\n".join(out) + "\n"


def evaluate(
    model: str | Path,
    data_dir: str | Path,
    tasks: Sequence[str] = TASKS,
    pooling: str = "mean",
    label_columns: Sequence[str] | None = None,
    k: int = 3,
    output: str | Path | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    metric: str = "cosine",
) -> dict:
    """Evaluate the embeddings of `model` (model directory or .npz) on the dataset in `data_dir`.

    Returns (and with `output` writes to output/evaluation.json) model, data_dir, pooling, tasks, k,
    metric, n, the metrics of each task (`evaluate_embeddings`), and the seconds spent.
    """
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:  # before embedding, which can take a while
        raise ValueError(f"unknown tasks {unknown}; expected some of {TASKS}")
    start = time.perf_counter()
    data_dir = Path(data_dir)
    if Path(model).suffix == ".npz":
        ids, embeddings, pooling_used = load_embeddings(model)
    else:
        ids, embeddings = embed_dataset(model, data_dir / "sequences.fasta", pooling, batch_size, max_length)
        pooling_used = pooling
    embedded = time.perf_counter()
    metrics = evaluate_embeddings(ids, embeddings, data_dir, tasks, label_columns, k=k, metric=metric)
    result = {
        "model": str(model),
        "data_dir": str(data_dir),
        "pooling": pooling_used,
        "tasks": list(tasks),
        "k": k,
        "metric": metric,
        **metrics,
        "embed_seconds": embedded - start,
        "wall_seconds": time.perf_counter() - start,
    }
    if output is not None:
        output = Path(output)
        with atomic_open(output / "evaluation.json") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        with atomic_open(output / "evaluation.md") as handle:
            handle.write(summary_markdown(result))
        logger.info("wrote %s and %s", output / "evaluation.json", output / "evaluation.md")
    return result
