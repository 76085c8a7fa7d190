"""`seqstruct curve CONFIG`: learning curves of pretrained encoders against LSTMs trained from scratch.

For one registered classification task, each arm (by default: a BiLSTM from scratch, the pretrained
encoder fine-tuned, the encoder frozen under a logistic probe) is trained on nested, stratified, seeded
subsets of the train split (`seqstruct.evaluation.curves`) at each fraction and seed, and scored on the
task's test splits. At a (fraction, seed) every arm gets the same rows: the same label budget. Validation
(early stopping, the probe's C) uses the task's valid split, capped by `max_valid` where given.

Every cell (arm, fraction, seed) writes its result.json when done; a re-run skips finished cells, and a
fine-tuning cell that was interrupted resumes from its last checkpoint (in the cell's directory). A cell
run with other settings than the config now asks for is refused rather than mixed in (--overwrite).
Processes running the same config share its cells: a cell is claimed (its directory's lock, the one every
writing command takes: `seqstruct.io.DirectoryLock`) before it runs, so a second process (e.g. one per CPU
core) skips the cells another one holds, a killed process's cells are taken over, and the tables are
written by the run that finds every cell finished.
Outputs: curve.csv (every metric of every cell), curve.md (mean ± std of `metric` per arm and fraction,
with each arm's gap to the reference arm, and where that gap falls below a point by a fitted power law:
`seqstruct.evaluation.extrapolation`), curve.json (the points, the fits and n*) and curve.png (the points,
and each arm's fitted law dashed where it is extrapolated).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.config import config_dict, save_config
from seqstruct.evaluation.curves import curve_points, curve_table, nested_subsets
from seqstruct.evaluation.extrapolation import extrapolate, extrapolation_note
from seqstruct.evaluation.run import json_value
from seqstruct.io import DirectoryLock, atomic_open
from seqstruct.report import plot_learning_curve

logger = logging.getLogger(__name__)

DEFAULT_ARMS = {
    # a BiLSTM from scratch with the encoder's tokenizer; LSTMs want a larger learning rate and more epochs
    "lstm": ["model=lstm:$encoder", "mode=finetune", "lr=1e-3", "epochs=20", "patience=3"],
    "finetune": ["model=$encoder", "mode=finetune"],
    "probe": ["model=$encoder", "mode=probe"],
}


@dataclass
class CurveConfig:
    output_dir: str = "runs/curve"  # one directory per arm/fraction/seed cell, plus curve.{csv,md,json,png}
    task: str = "wordnet-supersense"  # a registered classification task (`seqstruct evaluate --list`)
    data: str = ""  # its prepared dataset directory; "" = data/prepared/<the task's dataset>
    task_options: list[str] = field(default_factory=list)  # key=value for the task (min_count=5, ...)
    encoder: str = "minilm"  # the pretrained encoder, `$encoder` in the arms: a directory or `minilm`
    # arm name -> key=value: model= (MODEL as `seqstruct evaluate` takes it), mode= (probe | finetune), and
    # method options (lr=, epochs=, lstm_hidden=, ...) for that arm only.
    arms: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ARMS.items()})
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0])  # of train_size
    train_size: int = 0  # labelled rows at fraction 1.0, a stratified seeded sample of train; 0 = all
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # subset draw and training seed
    options: list[str] = field(default_factory=list)  # method options for every arm (max_valid=2000, ...)
    metric: str = "accuracy"  # the figure tabled and plotted (curve.csv keeps every metric)
    reference: str = ""  # the arm the gaps are measured against; "" = the first arm


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # MODEL for build_method
    mode: str
    options: tuple[str, ...]  # method key=value options: the config's shared ones, then the arm's own
    own: frozenset[str]  # the keys the arm itself gives: an error where its method does not read them


def parse_arms(config: CurveConfig) -> list[Arm]:
    """The arms with `$encoder` filled in and model=/mode= taken out of their options."""
    if not config.arms or not all(isinstance(v, list) for v in config.arms.values()):
        raise ValueError("arms: expected a mapping of arm name -> list of key=value (model=..., mode=...)")
    arms = []
    for name, items in config.arms.items():
        settings: dict[str, str] = {}
        options, own = list(config.options), set()
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise ValueError(f"arm {name!r}: {item!r} is not key=value")
            value = value.replace("$encoder", config.encoder)
            if key in ("model", "mode"):
                settings[key] = value
            else:
                options.append(f"{key}={value}")
                own.add(key)
        if "model" not in settings:
            raise ValueError(f"arm {name!r}: no model=... (e.g. model=$encoder or model=lstm:$encoder)")
        if any(o.startswith("max_train=") for o in options):
            raise ValueError(
                f"arm {name!r}: the curve sets each cell's training rows; use train_size, not max_train"
            )
        mode = settings.get("mode", "probe")
        arms.append(Arm(name, settings["model"], mode, tuple(options), frozenset(own)))
    return arms


class Budget:
    """A method seen through one cell's label budget: classify() fits it on the first rows of the seed's
    stratified order (`nested_subsets`) instead of all of train. Embedding and search are refused: a kNN or
    retrieval task would read the whole train split and escape the budget."""

    def __init__(self, method: Any, fraction: float, pool: int) -> None:
        self.method, self.fraction, self.pool = method, fraction, pool
        self.name, self.stochastic = method.name, True  # the subset depends on the seed
        self.examples = 0
        self.available = 0

    @property
    def last_fit(self) -> dict[str, Any]:
        return self.method.last_fit

    @last_fit.setter
    def last_fit(self, value: dict[str, Any]) -> None:
        self.method.last_fit = value

    def describe(self) -> dict[str, Any]:
        return self.method.describe()

    def classify(self, problem: Any, seed: int) -> dict[str, np.ndarray]:
        from dataclasses import replace

        from seqstruct.evaluation.tasks import Labelled

        rows = nested_subsets(problem.train.targets, [self.fraction], seed, self.pool)[self.fraction]
        train = problem.train
        subset = Labelled([train.ids[i] for i in rows], [train.texts[i] for i in rows], train.targets[rows])
        self.examples, self.available = len(subset), len(train)
        logger.info("fraction %g, seed %d: %d of %d train rows", self.fraction, seed, len(rows), len(train))
        return self.method.classify(replace(problem, train=subset), seed)

    def embed(self, texts: Any, kind: str, ids: Any = None) -> np.ndarray:
        raise ValueError(self._refusal())

    def search(self, queries: Any, corpus: Any, k: int, kind: str) -> np.ndarray:
        raise ValueError(self._refusal())

    def _refusal(self) -> str:
        return (
            "a learning curve needs a classification task whose method fits on train (classifier=probe); "
            "kNN and retrieval tasks have no training budget"
        )


def _cell_settings(config: CurveConfig, arm: Arm, fraction: float, seed: int) -> dict[str, Any]:
    """What a cell's result depends on: a cached cell with other settings is not reused. `weights` tells
    an encoder re-saved under the same name (a new protein-small) from the one the cell used."""
    from seqstruct.models.io import weights_fingerprint

    return {
        "task": config.task,
        "data": config.data,
        "task_options": list(config.task_options),
        "train_size": config.train_size,
        "model": arm.model,
        "weights": weights_fingerprint(arm.model),
        "mode": arm.mode,
        "options": list(arm.options),
        "fraction": fraction,
        "seed": seed,
    }


def _check(config: CurveConfig) -> list[Arm]:
    from seqstruct.evaluation.tasks import get_task

    get_task(config.task)  # names the tasks on a typo
    arms = parse_arms(config)
    if not config.fractions or not all(0.0 < f <= 1.0 for f in config.fractions):
        raise ValueError(f"fractions: expected values in (0, 1]; got {config.fractions}")
    if not config.seeds:
        raise ValueError("seeds: expected at least one seed")
    if config.train_size < 0:
        raise ValueError(f"train_size must be >= 0 (0: all train rows); got {config.train_size}")
    if config.reference and config.reference not in config.arms:
        raise ValueError(f"reference {config.reference!r} is not an arm ({', '.join(config.arms)})")
    return arms


def _task_options(config: CurveConfig) -> dict[str, Any]:
    from seqstruct.evaluation.run import split_options

    options, method_options = split_options(config.task_options, [config.task])
    if method_options:
        raise ValueError(f"task_options {method_options}: method options belong in `options` or an arm")
    return options


def _build(arm: Arm) -> Any:
    """The arm's method: the shared options it does not read are left out (an LSTM has no probe grid),
    its own options must all be read."""
    from seqstruct.evaluation.methods import build_method

    method = build_method(arm.model, arm.mode, None, arm.options, strict=False)
    unread = sorted(arm.own - method.reads)
    if unread:
        raise ValueError(f"arm {arm.name!r}: {method.name} ({arm.mode}) does not read option(s) {unread}")
    return method


def _run_cell(
    config: CurveConfig, arm: Arm, method: Any, fraction: float, seed: int, cell: Path
) -> dict[str, Any]:
    from seqstruct.data.prepared import DEFAULT_ROOT, load_prepared
    from seqstruct.evaluation.tasks import get_task

    spec = get_task(config.task)
    data = load_prepared(Path(config.data) if config.data else DEFAULT_ROOT / spec.dataset)
    budget = Budget(method, fraction, config.train_size)
    method.work_dir = cell  # an interrupted fine-tuning resumes from cell/checkpoints
    method.last_fit = {}
    start = time.perf_counter()
    result = spec.run(data, budget, seed, **_task_options(config))
    if not budget.examples:
        raise ValueError(f"task {config.task!r} never fitted {arm.name} on train: not a classification task")
    return {
        "arm": arm.name,
        "settings": _cell_settings(config, arm, fraction, seed),
        **method.describe(),
        "examples": budget.examples,
        "train_rows": budget.available,
        "metrics": result.metrics,
        "counts": result.counts,
        "fit": dict(method.last_fit),
        "wall_seconds": time.perf_counter() - start,
    }


def _cached_cell(cell: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    path = cell / "result.json"
    if overwrite or not path.is_file():
        return None
    found = json.loads(path.read_text(encoding="utf-8"))
    if "weights" not in found.get("settings", {"weights": None}):  # a cell from before weights were kept
        logger.warning("%s: cell from before its encoder's weights were recorded; reused unchecked", path)
        found["settings"]["weights"] = settings["weights"]
    if found.get("settings") != settings:
        raise ValueError(
            f"{path} was run with other settings ({found.get('settings')}; now {settings}); use "
            "--overwrite to run it again or another output_dir"
        )
    return found


def _run_claimed(
    config: CurveConfig,
    arm: Arm,
    build: Callable[[], Any],
    fraction: float,
    seed: int,
    cell: Path,
    settings: dict[str, Any],
    overwrite: bool,
) -> dict[str, Any]:
    """Run a cell this process has claimed (holds the lock of) and save its result.json."""
    # another process may have finished it between this one's cache check and its claim
    result = None if overwrite else _cached_cell(cell, settings, overwrite=False)
    if result is None:
        logger.info("curve cell: %s, fraction %g, seed %d", arm.name, fraction, seed)
        result = _run_cell(config, arm, build(), fraction, seed, cell)
        with atomic_open(cell / "result.json") as handle:
            json.dump(result, handle, indent=2, default=json_value)
            handle.write("\n")
    return result


def rows_of(result: dict[str, Any], fraction: float, seed: int) -> list[dict[str, Any]]:
    """The long-format CSV rows of one cell: a row per (split, metric)."""
    return [
        {"arm": result["arm"], "fraction": fraction, "seed": seed, "examples": result["examples"]}
        | {"split": split, "metric": metric, "value": value}
        for split, metrics in result["metrics"].items()
        for metric, value in metrics.items()
        if isinstance(value, int | float)
    ]


def unfinished_fits(results: list[dict[str, Any]]) -> dict[tuple[str, float], tuple[int, int]]:
    """Per (arm, fraction), (seeds whose best checkpoint was their last validated one, seeds with a fit).
    Such a fit ended on its step budget while valid loss was still falling, not by early stopping: the
    arm is under-trained there, and a gap to it says more about the budget than about the arm. Counted
    per fraction because the budget binds at one size: a few under-trained cells at the largest fraction
    are the whole right end of the curve, however well the rest of the arm trained."""
    counts: dict[tuple[str, float], tuple[int, int]] = {}
    for result in results:
        fit = result.get("fit") or {}
        if not fit.get("steps") or fit.get("best_step") is None:
            continue  # a probe, or a fit without validation
        last_eval = fit.get("last_eval_step") or fit["steps"]  # cells from before it was recorded
        key = (result["arm"], float(result["settings"]["fraction"]))
        last, fitted = counts.get(key, (0, 0))
        counts[key] = (last + (fit["best_step"] == last_eval), fitted + 1)
    return counts


def unfinished_note(counts: dict[tuple[str, float], tuple[int, int]]) -> str:
    """The curve.md paragraph naming the (arm, fraction) cells whose fits mostly ended still improving
    ("" when none did)."""
    cells = [
        f"{arm} at fraction {fraction:g} ({last} of {fitted} seeds)"
        for (arm, fraction), (last, fitted) in sorted(counts.items())
        if 2 * last > fitted
    ]
    if not cells:
        return ""
    return (
        f"**Still improving when stopped:** {'; '.join(cells)} ended on the step budget with the best "
        "valid loss at the last validation, not by early stopping. Those points are under-trained; raise "
        "the arm's `min_steps`, `epochs` or `lr`.\n\n"
    )


def majority_note(results: list[dict[str, Any]], metric: str) -> str:
    """The curve.md line giving each test split's majority-class accuracy: the floor an arm must beat
    to have learnt anything ("" when the metric is not accuracy or the task does not report it)."""
    if metric != "accuracy":
        return ""
    found = next(
        (r["counts"]["majority_accuracy"] for r in results if "majority_accuracy" in r.get("counts", {})), {}
    )
    if not found:
        return ""
    splits = ", ".join(f"{split} {value:.3f}" for split, value in found.items())
    return f"Majority class (the most frequent train class for every row), accuracy: {splits}.\n\n"


def cell_seconds(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per arm, the sum of its cells' wall times: what the grid cost, however many runs (and cached
    re-runs) it took to fill."""
    seconds: dict[str, float] = {}
    for result in results:
        seconds[result["arm"]] = seconds.get(result["arm"], 0.0) + result["wall_seconds"]
    return seconds


def cell_time_note(seconds: dict[str, float]) -> str:
    """The curve.md line giving the grid's cell time in minutes, in all and per arm."""
    arms = ", ".join(f"{arm} {value / 60:.0f}" for arm, value in seconds.items())
    return f"Cell time (the sum of the cells' wall times): {sum(seconds.values()) / 60:.0f} min ({arms}).\n\n"


def curve(config: CurveConfig, overwrite: bool = False) -> dict[str, Any]:
    """Run every (arm, fraction, seed) cell not yet finished, then write curve.csv/md/json/png."""
    arms = _check(config)
    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    save_config(config, root / "curve.yaml")
    reference = config.reference or arms[0].name
    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    busy: list[str] = []  # cells another process holds
    start = time.perf_counter()
    for arm in arms:
        # built on first need, then kept for the arm: a probe embeds each text once for all cells
        build = functools.cache(functools.partial(_build, arm))
        for fraction in sorted(config.fractions):
            for seed in config.seeds:
                cell = root / arm.name / f"f{fraction:g}" / f"seed{seed}"
                settings = _cell_settings(config, arm, fraction, seed)
                result = _cached_cell(cell, settings, overwrite)
                if result is None:
                    claim = DirectoryLock(cell)
                    holder = claim.acquire()
                    if holder is not None:
                        logger.info("curve cell %s: held by %s, skipped", cell, holder)
                        busy.append(f"{cell} ({holder})")
                        continue
                    try:
                        result = _run_claimed(config, arm, build, fraction, seed, cell, settings, overwrite)
                    finally:
                        claim.release()
                cell_rows = rows_of(result, fraction, seed)
                if not any(r["metric"] == config.metric for r in cell_rows):
                    found = sorted({r["metric"] for r in cell_rows})
                    raise ValueError(f"metric {config.metric!r}: task {config.task!r} reports {found}")
                rows += cell_rows
                results.append(result)
    if busy:
        message = (
            f"{len(busy)} cell(s) are being run by other processes, so no tables were written: "
            f"{'; '.join(busy)}. Run the config again when they finish."
        )
        logger.warning("%s", message)
        return {"busy": busy, "message": message}
    note = unfinished_note(unfinished_fits(results))
    if note:
        logger.warning("%s", note.strip().replace("**", ""))
    spent = cell_seconds(results)
    note += majority_note(results, config.metric) + cell_time_note(spent)
    return write_outputs(config, rows, reference, time.perf_counter() - start, note, spent)


def write_outputs(
    config: CurveConfig,
    rows: list[dict[str, Any]],
    reference: str,
    seconds: float,
    note: str = "",
    cell_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """curve.csv, curve.md, curve.json and curve.png in the output directory, from the cells' rows;
    `note` goes above the table. `seconds` is this run's time, `cell_seconds` each arm's cell time. Each arm
    other than `reference` gets the n* from which its fitted lead over the reference stays below a point."""
    root = Path(config.output_dir)
    points = curve_points(rows, config.metric)
    table = curve_table(rows, config.metric, reference)
    fitted = extrapolate(rows, config.metric, reference)
    with atomic_open(root / "curve.csv", "w") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["arm", "fraction", "seed", "examples", "split", "metric", "value"]
        )
        writer.writeheader()
        writer.writerows(rows)
    title = f"{config.task}: {config.metric} against labelled training examples"
    arms = ", ".join(f"{a.name} ({a.model}, {a.mode})" for a in parse_arms(config))
    block = extrapolation_note(fitted, config.metric, reference)
    block = f"\n{block}" if block else ""
    with atomic_open(root / "curve.md", "w") as handle:
        handle.write(
            f"# Learning curve: {config.task}\n\n"
            f"Arms: {arms}. Seeds {config.seeds}: mean ± std over seeds; a gap is paired by seed (the same "
            f"training rows). Fractions of {config.train_size or 'all'} train rows, nested and stratified.\n\n"
            f"{note}{table}\n![{title}](curve.png)\n{block}"
        )
    plot_learning_curve(points, root / "curve.png", config.metric, title, fitted["fits"], fitted["crossings"])
    result = {
        "config": config_dict(config),
        "reference": reference,
        "points": points,
        "extrapolation": fitted,
        "seconds": seconds,
        "cell_seconds": cell_seconds or {},
    }
    with atomic_open(root / "curve.json", "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    return result | {"table": table}
