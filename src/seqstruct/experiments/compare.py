"""`seqstruct compare CONFIG`: pretraining arms x seeds on one graph dataset, each model evaluated without
fine-tuning, summarised as mean ± std per arm.

Every model is evaluated by `seqstruct evaluate` on registered `tasks` (seqstruct.evaluation.tasks): on a
synthetic dataset (`synth` or `data_dir`) typically kNN on labels and link retrieval, on a prepared
dataset (`dataset`, from `seqstruct data prepare`) e.g. GO prediction. The arms pretrain on a synthetic
dataset's every sequence (its graph's held-out nodes' edges unseen) or on a prepared dataset's train
split, beside `models` evaluated as they are (baselines, or a pretrained encoder such as `minilm` before
any continued pretraining).

This is how the structure-inducing results in docs/results.md are made: the arms differ only in their
pretraining overrides (e.g. `structure.weight=0` against `structure.weight=0.5`), at equal steps. With
`trainer: contrastive` the arms are `seqstruct contrastive` runs instead (`pretrain` then names a
contrastive config), each evaluated with the pooling it was trained with: how the embedding results of
docs/results.md (poolings, unsupervised and supervised contrastive training) are made. With a
synthetic dataset the data is regenerated per seed (data seed = training seed), so the spread covers both
the graph and the training draw. A k-mer composition baseline (`models: {kmer: baseline:kmer}`: no model,
normalised 2-mer counts of each sequence) says how much of a label a sequence's counts carry at all.

Every cell (arm, seed) lives in its own directory; a cell whose evaluation.json exists is not run again
and a cell with checkpoints resumes, so an interrupted comparison continues where it stopped. A finished
cell made otherwise than the config now asks (training settings, evaluation tasks/options/pooling, the
weights of the model evaluated or trained from) is refused by name rather than mixed into the table.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.config import PACKAGED_CONFIGS, PretrainConfig, load_config, save_config
from seqstruct.data.synthetic import generator, write_synthetic
from seqstruct.evaluation.run import evaluate
from seqstruct.evaluation.tables import comparison_table
from seqstruct.io import DirectoryLock, atomic_open
from seqstruct.training.mlm import pretrain
from seqstruct.training.run import RunPaths, check_same_run

logger = logging.getLogger(__name__)

TRAINERS = ("pretrain", "contrastive")


@dataclass
class CompareConfig:
    output_dir: str = "runs/compare"  # one directory per dataset seed and arm, plus results.{csv,md,json}
    synth: str = (
        ""  # synthetic generator (cliques | manifold | topology): a dataset per seed; or use data_dir
    )
    synth_overrides: list[str] = field(default_factory=list)  # key=value for the generator's config
    data_dir: str = (
        ""  # a fixed synthetic dataset (`seqstruct synth`) for all seeds: arms read sequences.fasta
    )
    dataset: str = ""  # or a prepared dataset (`seqstruct data prepare`), evaluated on registered `tasks`
    pretrain: str = "synthetic.yaml"  # base pretraining config: a path, or a name in seqstruct/configs
    # What an arm runs: pretrain (MLM / structure) | contrastive (then `pretrain` names a ContrastiveConfig).
    trainer: str = "pretrain"
    pretrain_overrides: list[str] = field(default_factory=list)  # key=value applied to every arm
    arms: dict[str, list[str]] = field(default_factory=dict)  # arm name -> its own pretraining overrides
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # training (and synthetic data) seeds
    # A budget for costly arms: arm name -> the subset of `seeds` it runs at (the table says n per arm).
    arm_seeds: dict[str, list[int]] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: ["knn", "link"])  # evaluations without fine-tuning
    pooling: str = "cls"  # how every model's embeddings are pooled for evaluation; "" = each model's own
    kmer: int = 0  # removed: the composition baseline is a model, `models: {kmer: baseline:kmer}`
    # Models evaluated as they are, beside the arms (name -> a model directory, `minilm`, a .npz or
    # baseline:NAME). Deterministic: on a fixed dataset each is evaluated once and repeated in every seed.
    models: dict[str, str] = field(default_factory=dict)
    # models: name -> the pooling it is evaluated with, where not `pooling` (MiniLM under every pooling)
    model_poolings: dict[str, str] = field(default_factory=dict)
    # The paired differences tabled: arm -> the arm it is compared with (default: every arm against the first).
    references: dict[str, str] = field(default_factory=dict)
    eval_options: list[str] = field(
        default_factory=list
    )  # key=value for `seqstruct evaluate` (max_train=...)


def _pretrain_path(name: str) -> Path:
    path = Path(name)
    return path if path.exists() else PACKAGED_CONFIGS / name


def check_compare(config: CompareConfig) -> None:
    """Refuse a comparison that cannot run, before anything is written."""
    if sum(map(bool, (config.synth, config.data_dir, config.dataset))) != 1:
        raise ValueError(
            "give exactly one of synth (a generator name), data_dir (a synthetic-layout dataset directory) "
            "and dataset (a prepared dataset directory)"
        )
    if config.kmer:
        raise ValueError(
            "kmer: the k-mer arm is now the baseline:kmer model; write `models: {kmer: baseline:kmer}` "
            "(baseline:kmer3 for k = 3) instead of kmer: N"
        )
    if config.trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {TRAINERS}; got {config.trainer!r}")
    if config.trainer == "contrastive" and not config.dataset:
        raise ValueError("trainer: contrastive evaluates on a prepared `dataset` (its registered tasks)")
    names = set(config.arms) | set(config.models)
    strangers = sorted({a for pair in config.references.items() for a in pair} - names)
    if strangers:
        raise ValueError(f"references: {strangers} are neither arms nor models")
    unknown = sorted(set(config.model_poolings) - set(config.models))
    if unknown:
        raise ValueError(f"model_poolings: {unknown} are not models ({', '.join(config.models)})")
    if config.synth:
        generator(config.synth)  # names the generators on a typo
    if not config.arms or not all(isinstance(v, list) for v in config.arms.values()):
        raise ValueError("arms: expected a mapping of arm name -> list of key=value overrides")
    if not config.seeds:
        raise ValueError("seeds: expected at least one seed")
    for arm, seeds in config.arm_seeds.items():
        if arm not in config.arms:
            raise ValueError(f"arm_seeds: {arm!r} is not an arm (arms: {', '.join(config.arms)})")
        if not isinstance(seeds, list) or not seeds or not set(seeds) <= set(config.seeds):
            raise ValueError(f"arm_seeds: {arm!r} expected a non-empty subset of seeds {config.seeds}")
    if not _pretrain_path(config.pretrain).exists():
        raise FileNotFoundError(
            f"pretrain config {config.pretrain!r} is neither a file nor a packaged config"
        )


def _dataset(config: CompareConfig, seed: int, root: Path) -> Path:
    """The dataset directory for `seed`, generated on first use."""
    if config.data_dir or config.dataset:
        return Path(config.data_dir or config.dataset)
    directory = root / f"data-seed{seed}"
    if not (directory / "dataset.json").exists():
        config_class, _ = generator(config.synth)
        synth_config = load_config(config_class, None, [*config.synth_overrides, f"seed={seed}"])
        write_synthetic(config.synth, synth_config, directory, overwrite=True)
    return directory


def _cached(cell: Path, run: Callable[[], dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """The cell's evaluation.json if it exists and was made with `settings`; else `run()`'s result,
    written there with them. One made otherwise is refused, not mixed into the table."""
    path = cell / "evaluation.json"
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        recorded = found.get("settings")
        if recorded is None:
            logger.warning("%s: from before evaluation settings were recorded; reused unchecked", path)
        elif recorded != settings:
            detail = ", ".join(
                f"{k}: {recorded.get(k)!r} -> {settings.get(k)!r}"
                for k in sorted(recorded.keys() | settings.keys())
                if recorded.get(k) != settings.get(k)
            )
            raise ValueError(
                f"{path} was made with other settings ({detail}); delete it to evaluate the cell again (a "
                "trained cell keeps its model; one trained from other weights must be moved aside), or "
                "choose another output_dir"
            )
        else:
            logger.info("comparison cell %s: finished earlier, its evaluation.json reused", cell)
        return found
    result = run() | {"settings": settings}
    with atomic_open(path) as handle:
        json.dump(result, handle, indent=2)
    return result


def _evaluation_settings(
    config: CompareConfig, model: str, pooling: str | None = None, trained: bool = False
) -> dict[str, Any]:
    """What a cell's figures depend on besides its training settings (its run's config.yaml, checked
    apart): the evaluation, and the weights of `model`, the model evaluated or (`trained`) the one the cell
    was trained from, "" for none: a packaged encoder re-saved under the same name is another model."""
    from seqstruct.models.io import weights_fingerprint

    return {
        "tasks": list(config.tasks),
        "eval_options": list(config.eval_options),
        "pooling": pooling or config.pooling or None,
        "trained_from" if trained else "model": model,
        "weights": weights_fingerprint(model) if model else None,
    }


def _set_data(config: CompareConfig, settings: PretrainConfig, data: Path) -> None:
    """Where a pretraining arm reads its sequences and graph: a synthetic dataset's every sequence
    (sequences.fasta), or a prepared dataset's train split (proteins as train.fasta, text through data.dataset). Paths are set on
    the config, not passed as key=value text, which YAML would cut at a ' #'."""
    settings.structure.graph = str(data / "graph.tsv")
    if not config.dataset:
        settings.data.fasta = str(data / "sequences.fasta")
        return
    from seqstruct.data.prepared import load_prepared

    if load_prepared(data).info.kind == "protein":
        settings.data.fasta = str(data / "train.fasta")
    else:
        settings.data.dataset = str(data)


def _evaluate_cell(
    config: CompareConfig, model: str, data: Path, cell: Path, pooling: str | None = None
) -> dict[str, Any]:
    pooling = pooling or config.pooling or None  # None: the model's own (a contrastive run's)
    results = evaluate(
        model,
        config.tasks,
        data,
        pooling=pooling,
        options=config.eval_options,
        output=cell / "eval",
        strict=False,  # one option list for encoders and baselines: each reads its own
    )
    return {"task_results": {result["task"]: result for result in results}}


def _arm_settings(config: CompareConfig, arm: str, seed: int, data: Path, cell: Path) -> Any:
    """The arm's resolved training config for `seed`, writing into `cell`."""
    overrides = [*config.pretrain_overrides, *config.arms[arm], f"train.seed={seed}"]
    if config.trainer == "contrastive":
        from seqstruct.config import ContrastiveConfig

        settings: Any = load_config(ContrastiveConfig, _pretrain_path(config.pretrain), overrides)
    else:
        settings = load_config(PretrainConfig, _pretrain_path(config.pretrain), overrides)
        _set_data(config, settings, data)
    settings.output_dir = str(cell)
    return settings


def _run_arm(config: CompareConfig, settings: Any, cell: Path, data: Path) -> dict[str, Any]:
    if config.trainer == "contrastive":
        from seqstruct.training.contrastive import contrastive as run
    else:
        run = pretrain
    start = time.perf_counter()
    if not (cell / "metrics.json").exists():
        resume = (cell / "checkpoints").is_dir() and any((cell / "checkpoints").glob("checkpoint-*"))
        run(settings, resume=resume, overwrite=not resume)
    trained = time.perf_counter() - start
    return _evaluate_cell(config, str(cell), data, cell) | {"pretrain_seconds": trained}


def _start_model(settings: Any) -> str:
    """The pretrained model an arm starts from ("" for a fresh encoder)."""
    return settings.model if isinstance(settings.model, str) else settings.model.pretrained


def _run_model(config: CompareConfig, name: str, data: Path, cell: Path) -> dict[str, Any]:
    pooling = config.model_poolings.get(name)
    return _evaluate_cell(config, config.models[name], data, cell, pooling) | {"pretrain_seconds": 0.0}


# Per registered task, the figures a comparison table shows (the JSON of each cell keeps them all).
HEADLINE = (
    *("fmax", "micro_aupr", "accuracy", "macro_f1", "knn_accuracy", "knn_macro_f1"),
    *("mrr", "mrr@10", "ndcg@10", "recall@10", "spearman", "pearson"),
)


# The knn and link tasks' figures keep the names the synthetic comparisons have always tabled
# (docs/results.md): "knn accuracy (topic)" rather than "knn topic accuracy".
NAMED = {
    ("knn", "accuracy"): "knn accuracy ({split})",
    ("knn", "auroc"): "knn AUROC ({split})",
    ("link", "mrr"): "link MRR",
    ("link", "ndcg@10"): "link nDCG@10",
}


def headline_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The figures a comparison reports, per task and split (label column for knn): `HEADLINE` metrics."""
    if "task_results" not in result:
        raise ValueError(
            "a cell's evaluation.json predates the one evaluation path (no task_results): delete it to "
            "evaluate the cell again"
        )
    figures: dict[str, float] = {}
    for task, outcome in result["task_results"].items():
        for split, metrics in outcome["metrics"].items():
            for name, number in metrics.items():
                named = NAMED.get((task, name))
                if number is None or (named is None and (task in ("knn", "link") or name not in HEADLINE)):
                    continue
                figures[named.format(split=split) if named else f"{task} {split} {name}"] = number
    return figures


def _mean_std(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def summarise(
    rows: list[dict[str, Any]], arms: list[str], references: dict[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """Mean ± std over seeds per (figure, arm), and paired differences: each arm named in `references`
    against its reference arm, or (no references) every arm against the first. The table is
    `seqstruct.evaluation.tables.comparison_table`'s."""
    figures = list(dict.fromkeys(row["figure"] for row in rows))
    value = {(row["figure"], row["arm"], row["seed"]): row["value"] for row in rows}
    seeds = sorted({row["seed"] for row in rows})
    pairs = list((references or {arm: arms[0] for arm in arms[1:]}).items())  # (arm, its reference)
    summary: dict[str, Any] = {}
    for figure in figures:
        entry = {}
        for arm in arms:
            values = [value[(figure, arm, s)] for s in seeds if (figure, arm, s) in value]
            mean, std = _mean_std(values) if values else (math.nan, math.nan)
            entry[arm] = {"mean": mean, "std": std, "n": len(values)}
        for arm, reference in pairs:
            paired = [
                value[(figure, arm, s)] - value[(figure, reference, s)]
                for s in seeds
                if (figure, arm, s) in value and (figure, reference, s) in value
            ]
            mean, std = _mean_std(paired) if paired else (math.nan, math.nan)
            entry[f"{arm} - {reference}"] = {"mean": mean, "std": std, "n": len(paired)}
        summary[figure] = entry
    return summary, comparison_table(summary, arms, pairs)


def compare(config: CompareConfig) -> dict[str, Any]:
    """Run every (seed, arm) cell not yet finished, then write results.csv, results.md, results.json;
    the output directory is locked meanwhile (a second process on it is refused, by name)."""
    check_compare(config)
    with DirectoryLock(config.output_dir):
        return compare_cells(config)


def stuck_at_chance(root: Path, config: CompareConfig) -> dict[str, list[int]]:
    """{arm: seeds} of the pretrained cells whose structure loss never left its chance value (their
    metrics.json says `structure.left_chance: false`); arms without a structure loss are never listed."""
    stuck: dict[str, list[int]] = {}
    for seed in config.seeds:
        for arm in config.arms:
            metrics = root / f"seed{seed}" / arm / "metrics.json"
            if not metrics.is_file():
                continue
            with open(metrics, encoding="utf-8") as handle:
                structure = json.load(handle).get("structure") or {}
            if structure.get("left_chance") is False:
                stuck.setdefault(arm, []).append(seed)
    return stuck


def compare_cells(config: CompareConfig) -> dict[str, Any]:
    """`compare` for a caller that has checked `config` (check_compare) and holds the output directory's
    lock (the demo)."""
    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    save_config(config, root / "compare.yaml")
    arms = list(config.arms) + list(config.models)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for seed in config.seeds:
        data = _dataset(config, seed, root)
        for arm in arms:
            if seed not in config.arm_seeds.get(arm, [seed]):
                continue
            cell = root / f"seed{seed}" / arm
            logger.info("comparison cell: seed %d, arm %s", seed, arm)
            if arm in config.models:  # on a fixed dataset evaluated once, the same in every seed
                fixed = cell if config.synth else root / "models" / arm
                evaluated = _evaluation_settings(config, config.models[arm], config.model_poolings.get(arm))
                result = _cached(fixed, partial(_run_model, config, arm, data, fixed), evaluated)
            else:
                settings = _arm_settings(config, arm, seed, data, cell)
                # a finished cell is not trained again, so it must have run this config's whole budget
                check_same_run(RunPaths(cell), settings, finished=(cell / "metrics.json").exists())
                evaluated = _evaluation_settings(config, _start_model(settings), trained=True)
                result = _cached(cell, partial(_run_arm, config, settings, cell, data), evaluated)
            for figure, number in headline_metrics(result).items():
                rows.append({"seed": seed, "arm": arm, "figure": figure, "value": number})
            if arm not in config.models:  # a model that is not pretrained has no pretraining time ("—")
                rows.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "figure": "pretrain seconds",
                        "value": result["pretrain_seconds"],
                    }
                )
    summary, table = summarise(rows, arms, config.references or None)
    fewer = [f"{arm} at seeds {config.arm_seeds[arm]}" for arm in arms if arm in config.arm_seeds]
    header = f"Mean ± std over seeds {config.seeds}" + (f" ({'; '.join(fewer)})" if fewer else "")
    at_chance = stuck_at_chance(root, config)
    if at_chance:  # issue 21: no table may say "structure helps/hurts" from a loss that learnt nothing
        stuck = "; ".join(f"{arm} at seeds {seeds}" for arm, seeds in at_chance.items())
        header = (
            f"**The structure loss never left its chance value in {stuck}** (metrics.json "
            "`structure.left_chance`): those figures say nothing about the structure loss.\n\n" + header
        )
    with atomic_open(root / "results.csv", "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=["seed", "arm", "figure", "value"])
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(root / "results.md", "w") as handle:
        handle.write(f"{header}; differences are paired by seed.\n\n{table}")
    result = {"arms": arms, "seeds": config.seeds, "summary": summary, "seconds": time.perf_counter() - start}
    result["structure_at_chance"] = at_chance
    with atomic_open(root / "results.json", "w") as handle:
        json.dump(result, handle, indent=2)
    result["table"] = table
    return result
