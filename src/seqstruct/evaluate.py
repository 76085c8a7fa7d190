"""`seqstruct evaluate`: embed a dataset's sequences (or load their embeddings) and score the embedding
space as it is, without fine-tuning, with the metrics of `seqstruct.evaluation.structure`.

MODEL is a saved model directory (its encoder embeds `data_dir/sequences.fasta`) or a `.npz` written by
`seqstruct embed` (ids and embeddings; its ids must cover the FASTA's). With an output directory it
writes `evaluation.json` (every metric, with what produced it) and `evaluation.md` (a table row per task
and label column).

The registered tasks (`seqstruct.evaluation.tasks`: go-mf, protein-link, go-synonym-search, ...) run on
prepared datasets through `evaluate_tasks`: MODEL is then a model directory, `minilm` or a baseline
(`seqstruct.evaluation.methods`), and each task writes `<task>.json` and `<task>.md`, a table header and
one row, so that the rows of several models make one table (`results_table`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqstruct.evaluation.structure import TASKS, evaluate_embeddings
from seqstruct.io import atomic_open

if TYPE_CHECKING:
    from seqstruct.evaluation.methods import Method

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
    model_dir: str | Path, fasta: Path, pooling: str | None, batch_size: int, max_length: int | None
) -> tuple[list[str], np.ndarray, str]:
    """(ids, embeddings [N, D], the pooling used) of the records of `fasta`, embedded by the encoder in
    `model_dir`; pooling None is the model's own saved pooling, else mean (`load_embedder`)."""
    from seqstruct.embed import load_embedder, read_inputs  # transformers loads only when a model is used

    ids, sequences = read_inputs(fasta)  # before the model loads: a bad input fails fast
    embedder = load_embedder(model_dir, pooling)
    sizes = {} if max_length is None else {"max_length": max_length}
    vectors = embedder.encode(sequences, batch_size=batch_size, show_progress_bar=True, **sizes)
    return ids, vectors, embedder.pooling


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
    pooling: str | None = None,
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
        ids, embeddings, pooling_used = embed_dataset(
            model, data_dir / "sequences.fasta", pooling, batch_size, max_length
        )
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


# ---------------------------------------------------------------------------------------------------
# Registered tasks on prepared datasets (seqstruct.evaluation.tasks): one JSON and one table row per task
# ---------------------------------------------------------------------------------------------------


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
    import yaml

    from seqstruct.evaluation.methods import method_option_names
    from seqstruct.evaluation.tasks import get_task

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


def _aggregate(runs: list[dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """(mean, sample standard deviation) per split and metric over runs; std is 0.0 for one run."""
    mean: dict[str, dict[str, float]] = {}
    std: dict[str, dict[str, float]] = {}
    for split, metrics in runs[0].items():
        mean[split], std[split] = {}, {}
        for metric in metrics:
            values = np.array([run[split][metric] for run in runs], dtype=np.float64)  # [seeds]
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
    from seqstruct.data.prepared import DEFAULT_ROOT, load_prepared
    from seqstruct.evaluation.methods import NotApplicable
    from seqstruct.evaluation.tasks import get_task

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
        cells.append(f"{value:.3f} ± {spread:.3f}" if len(result["seeds"]) > 1 else f"{value:.3f}")
    mode = result.get("mode") or "-"  # baselines have no mode
    out.append(f"| {result['model']} | {mode} | {len(result['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def results_table(paths: Sequence[str | Path]) -> str:
    """One markdown table per task from several JSON files written by `evaluate_tasks` (a row per file,
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
            f"{m} {v:.3f}" + (f" ± {result['std'][split][m]:.3f}" if len(result["seeds"]) > 1 else "")
            for m, v in metrics.items()
        )
        label = ", ".join(filter(None, (result["model"], result.get("mode"))))
        lines.append(f"{result['task']} [{label}] {split}: {shown}")
    return "\n".join(lines)


def evaluate_tasks(
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
    from seqstruct.evaluation.methods import NotApplicable, build_method
    from seqstruct.evaluation.tasks import TASKS as REGISTERED

    unknown = [task for task in tasks if task not in REGISTERED]
    if unknown:
        raise ValueError(
            f"unknown task(s) {unknown}; expected some of {sorted(REGISTERED)} (or {list(TASKS)} on a "
            "synthetic dataset directory)"
        )
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
