"""Task results as tables: one markdown row per (model, task) file that concatenates with other models'
rows into one table, the tables of many result files, a line per split for the terminal, and the
comparison table of arms against one another (`seqstruct compare`, the demo).

A table says only what its numbers mean: a spread appears where runs differed (a value that every seed
gave alike is shown alone, not "± 0.000"), time rows have no differences, a model that does not pretrain
has "—" for pretraining time, and a figure's name can be put in words a reader knows (`figure_label`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

UNTABLED = frozenset({"threshold"})  # kept in the JSON, left out of the tables (Fmax's threshold)

# Registered tasks, metrics and splits in the words of a reader of the demo's table.
TASK_NAMES = {
    "go-mf": "GO-MF",
    "go-mf-class": "GO-MF class",
    "protein-link": "protein links",
    "go-category": "GO category",
    "go-link": "GO links",
    "wordnet-supersense": "WordNet supersense",
    "wordnet-link": "WordNet links",
}
METRIC_NAMES = {
    "fmax": "Fmax",
    "micro_aupr": "micro-AUPR",
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "knn_accuracy": "kNN accuracy",
    "knn_macro_f1": "kNN macro-F1",
    "mrr": "MRR",
    "mrr@10": "MRR@10",
    "ndcg@10": "nDCG@10",
    "recall@10": "recall@10",
    "spearman": "Spearman",
    "pearson": "Pearson",
}
SPLIT_NAMES = {
    "test_remote": "remote homology",
    "test_close": "close homology",
    "heldout": "held-out sequences",
    "test": "test",
}
TIME_SUFFIX = " seconds"  # figures that are durations (`pretrain seconds`): no differences, no "± 0"


def _columns(result: dict) -> list[tuple[str, str]]:
    """(split, metric) pairs of a result's table, in the task's order."""
    return [
        (split, metric)
        for split, metrics in result["metrics"].items()
        for metric in metrics
        if metric not in UNTABLED
    ]


def value_cell(mean: float | None, std: float | None, n: int, sign: str = "", digits: int = 3) -> str:
    """mean ± std over n runs; the mean alone for one run or for runs that all gave the same value (a
    deterministic method: a spread of 0 is not a measured one); "—" for none, "n/a" for an undefined
    value."""
    if n == 0:
        return "—"
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    shown = f"{mean:{sign}.{digits}f}"
    if n == 1 or std is None or math.isnan(std) or std == 0.0:
        return shown
    return f"{shown} ± {std:.{digits}f}"


def task_markdown(result: dict, header: bool = True) -> str:
    """A markdown table header (unless header=False) and ONE row for this model: rows of several models'
    files on one task concatenate into one table (`results_table`)."""
    columns = _columns(result)
    out = []
    if header:
        out.append("| model | mode | seeds | " + " | ".join(f"{s} {m}" for s, m in columns) + " |")
        out.append("|---|---|---:|" + "---:|" * len(columns))
    n = len(result["seeds"])
    cells = [
        value_cell(result["metrics"][split][metric], result["std"][split][metric], n)
        for split, metric in columns
    ]
    mode = result.get("mode") or "-"  # baselines have no mode
    out.append(f"| {result['model']} | {mode} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def results_table(paths: Sequence[str | Path]) -> str:
    """One markdown table per task from several JSON files written by `seqstruct.evaluation.run.evaluate` (a row per file,
    in the order given), each under a `## task` heading."""
    by_task: dict[str, list[dict]] = {}
    for path in paths:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
        if "task" not in result or "metrics" not in result:
            raise ValueError(f"{path}: not a task result of `seqstruct evaluate` (no task or metrics)")
        by_task.setdefault(result["task"], []).append(result)
    out = []
    for task, results in by_task.items():
        columns = _columns(results[0])
        for result, path in zip(results[1:], paths[1:], strict=False):
            if _columns(result) != columns:
                raise ValueError(f"{path}: its {task} metrics {_columns(result)} differ from {columns}")
        rows = [task_markdown(r, header=i == 0) for i, r in enumerate(results)]
        out += [f"## {task}", "", "".join(rows)]
    return "\n".join(out)


def task_summary(result: dict) -> str:
    """One line per split for the terminal."""
    lines = []
    n = len(result["seeds"])
    for split, metrics in result["metrics"].items():
        shown = ", ".join(f"{m} {value_cell(v, result['std'][split][m], n)}" for m, v in metrics.items())
        label = ", ".join(filter(None, (result["model"], result.get("mode"))))
        lines.append(f"{result['task']} [{label}] {split}: {shown}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# The comparison table: a row per figure, a column per arm, then paired differences
# ---------------------------------------------------------------------------------------------------------


def figure_label(figure: str) -> str:
    """A comparison figure's key (`<task> <split> <metric>`, as `seqstruct compare` names it) in words:
    "go-mf test_remote fmax" -> "GO-MF Fmax, remote homology". Keys of another shape, and unknown tasks,
    are returned as they are; the time row reads "pretraining time (s)"."""
    if figure.endswith(TIME_SUFFIX):
        return f"{figure.removesuffix(TIME_SUFFIX).replace('pretrain', 'pretraining')} time (s)"
    parts = figure.split(" ")
    if len(parts) != 3 or parts[0] not in TASK_NAMES:
        return figure
    task, split, metric = parts
    return f"{TASK_NAMES[task]} {METRIC_NAMES.get(metric, metric)}, {SPLIT_NAMES.get(split, split)}"


def is_time(figure: str) -> bool:
    """Whether a comparison figure is a duration: shown per arm, never differenced (a difference of run
    times says which arm was slower on a shared machine, not which method is better)."""
    return figure.endswith(TIME_SUFFIX)


def comparison_table(
    summary: dict[str, dict[str, dict[str, Any]]],
    arms: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    label: Callable[[str], str] = str,
    names: dict[str, str] | None = None,
) -> str:
    """The markdown of `summary` (figure -> {arm: {mean, std, n}, "arm - reference": {mean, std, n}}, as
    `seqstruct.experiments.compare.summarise` computes it): a row per figure named by `label`, a column per
    arm (headed by `names`, else the arm), then one per (arm, reference) pair. Time rows (`is_time`) have
    "—" under every difference; values with no spread are shown alone (`value_cell`)."""
    names = names or {}
    header = [
        "figure",
        *(names.get(arm, arm) for arm in arms),
        *(f"{names.get(arm, arm)} − {names.get(ref, ref)}" for arm, ref in pairs),
    ]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for figure, entry in summary.items():
        time = is_time(figure)
        digits = 0 if time else 3
        cells = [label(figure)]
        for arm in arms:
            stats = entry.get(arm, {"n": 0})
            cells.append(value_cell(stats.get("mean"), stats.get("std"), stats["n"], digits=digits))
        for arm, reference in pairs:
            stats = entry.get(f"{arm} - {reference}", {"n": 0})
            n = 0 if time else stats["n"]
            cells.append(value_cell(stats.get("mean"), stats.get("std"), n, sign="+", digits=digits))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
