"""Task results as tables: one markdown row per (model, task) file that concatenates with other models'
rows into one table, the tables of many result files, and a line per split for the terminal."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

UNTABLED = frozenset({"threshold"})  # kept in the JSON, left out of the tables (Fmax's threshold)


def _columns(result: dict) -> list[tuple[str, str]]:
    """(split, metric) pairs of a result's table, in the task's order."""
    return [
        (split, metric)
        for split, metrics in result["metrics"].items()
        for metric in metrics
        if metric not in UNTABLED
    ]


def task_markdown(result: dict, header: bool = True) -> str:
    """A markdown table header (unless header=False) and ONE row for this model: rows of several models'
    files on one task concatenate into one table (`results_table`)."""
    columns = _columns(result)
    out = []
    if header:
        out.append("| model | mode | seeds | " + " | ".join(f"{s} {m}" for s, m in columns) + " |")
        out.append("|---|---|---:|" + "---:|" * len(columns))
    cells = []
    for split, metric in columns:
        value, spread = result["metrics"][split][metric], result["std"][split][metric]
        if value is None:
            cells.append("n/a")
        else:
            cells.append(f"{value:.3f} ± {spread:.3f}" if len(result["seeds"]) > 1 else f"{value:.3f}")
    mode = result.get("mode") or "-"  # baselines have no mode
    out.append(f"| {result['model']} | {mode} | {len(result['seeds'])} | " + " | ".join(cells) + " |")
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
    for split, metrics in result["metrics"].items():
        shown = ", ".join(
            f"{m} n/a"
            if v is None
            else f"{m} {v:.3f}" + (f" ± {result['std'][split][m]:.3f}" if len(result["seeds"]) > 1 else "")
            for m, v in metrics.items()
        )
        label = ", ".join(filter(None, (result["model"], result.get("mode"))))
        lines.append(f"{result['task']} [{label}] {split}: {shown}")
    return "\n".join(lines)
