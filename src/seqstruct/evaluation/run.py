"""`seqstruct evaluate MODEL --task NAME...`: the one evaluation path. Build the method MODEL names
(`seqstruct.evaluation.methods`), run each registered task (`seqstruct.evaluation.tasks`) on its prepared
dataset, and write `<task>.json` (everything) and `<task>.md` (a table header and one row, so that the
rows of several models make one table: `seqstruct.evaluation.tables`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from seqstruct.data.prepared import DEFAULT_ROOT, load_prepared
from seqstruct.evaluation.methods import Method, NotApplicable, build_method, method_option_names
from seqstruct.evaluation.tables import task_markdown
from seqstruct.evaluation.tasks import TASKS, get_task
from seqstruct.io import atomic_open

logger = logging.getLogger(__name__)


def json_value(value: object) -> object:
    """numpy scalars and arrays as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {value!r}")


def split_options(overrides: Sequence[str], task_names: Sequence[str]) -> tuple[dict[str, object], list[str]]:
    """Route `key=value` strings: ({task option: parsed value}, [method key=value]). A key that neither
    any of the tasks nor the methods know is an error listing both."""
    task_keys = {key for name in task_names for key in get_task(name).options()}
    method_keys = method_option_names()
    task_options: dict[str, object] = {}
    method_options: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"option {item!r}: expected key=value, e.g. min_count=10")
        if key not in task_keys | method_keys:
            raise ValueError(
                f"unknown option {key!r}; the tasks {list(task_names)} take {sorted(task_keys)}, "
                f"the methods {sorted(method_keys)}"
            )
        if key in task_keys:
            task_options[key] = yaml.safe_load(raw)
        if key in method_keys:
            method_options.append(item)
    return task_options, method_options


def _aggregate(runs: list[dict[str, dict[str, float | None]]]) -> tuple[dict, dict]:
    """(mean, sample standard deviation) per split and metric over runs; std is 0.0 for one run. A metric
    that is None (undefined: a kNN AUROC without a class of two) in any run is None in both."""
    mean: dict[str, dict[str, float | None]] = {}
    std: dict[str, dict[str, float | None]] = {}
    for split, metrics in runs[0].items():
        mean[split], std[split] = {}, {}
        for metric in metrics:
            found = [run[split][metric] for run in runs]
            if any(value is None for value in found):
                mean[split][metric] = std[split][metric] = None
                continue
            values = np.array(found, dtype=np.float64)  # [seeds]
            mean[split][metric] = float(values.mean())
            std[split][metric] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def run_task(
    method: Method, task: str, data: str | Path | None = None, seeds: int = 1, **options: object
) -> dict:
    """Run registered `task` with a built method (seqstruct.evaluation.methods.build_method) on the
    prepared dataset `data` (default data/prepared/<the task's dataset>). A stochastic method runs with
    seeds 0..seeds-1; a deterministic one once. Returns the record that `task_markdown` and the JSON
    file hold: metrics (mean per split), std, per_seed, counts, fit, dataset, wall_seconds."""
    spec = get_task(task)
    start = time.perf_counter()
    prepared = load_prepared(Path(data) if data is not None else DEFAULT_ROOT / spec.dataset)
    settings = {key: value for key, value in options.items() if key in spec.options()}
    runs, fits, counts = [], [], {}
    chosen = list(range(seeds)) if method.stochastic else [0]
    for seed in chosen:
        method.last_fit = {}  # a task that fits nothing (search, kNN) must not record the previous fit
        try:
            result = spec.run(prepared, method, seed, **settings)
        except NotApplicable as err:
            raise NotApplicable(f"task {task!r} with {method.name}: {err}") from None
        runs.append(result.metrics)
        fits.append(dict(method.last_fit))
        counts = result.counts
        logger.info("%s, %s, seed %d: %s", task, method.name, seed, result.metrics)
    mean, std = _aggregate(runs)
    info = prepared.info
    return {
        "task": task,
        "model": method.name,
        **method.describe(),
        "seeds": chosen,
        "deterministic": not method.stochastic,
        "note": "" if method.stochastic else f"deterministic: ran once (seeds={seeds} asked)",
        "task_options": spec.options() | settings,
        "dataset": {
            "path": str(prepared.path),
            "name": info.name,
            "recipe": info.recipe,
            "kind": info.kind,
            "splits": info.splits,
        },
        "metrics": mean,
        "std": std,
        "per_seed": runs,
        "counts": counts,
        "fit": fits,
        "wall_seconds": time.perf_counter() - start,
    }


def evaluate(
    model: str,
    tasks: Sequence[str],
    data: str | Path | None = None,
    mode: str = "probe",
    seeds: int = 1,
    pooling: str | None = None,
    options: Sequence[str] = (),
    output: str | Path | None = None,
    strict: bool = True,
) -> list[dict]:
    """`seqstruct evaluate MODEL --task NAME...`: build the method MODEL names once (so that tasks on one
    dataset share its embeddings), run each task (`run_task`) and, with `output`, write
    output/<task>.json (everything) and output/<task>.md (`task_markdown`). `options` are key=value
    strings, each routed to the tasks and/or the method that know it. strict=False suits one option list
    for several methods: method options this one does not read, and tasks it does not apply to (mmseqs on
    link retrieval), are left out and logged instead of raising."""
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:  # before the method is built, which can take a while
        raise ValueError(f"unknown task(s) {unknown}; expected some of {sorted(TASKS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1; got {seeds}")
    task_options, method_options = split_options(options, tasks)
    method = build_method(model, mode, pooling, method_options, strict=strict)
    results = []
    for task in tasks:
        try:
            result = run_task(method, task, data, seeds, **task_options)
        except NotApplicable as err:
            if strict:
                raise
            logger.info("left out: %s", err)
            continue
        results.append(result)
        if output is not None:
            with atomic_open(Path(output) / f"{task}.json") as handle:
                json.dump(result, handle, indent=2, default=json_value)
                handle.write("\n")
            with atomic_open(Path(output) / f"{task}.md") as handle:
                handle.write(task_markdown(result))
            logger.info("wrote %s.json and %s.md in %s", task, task, output)
    return results
