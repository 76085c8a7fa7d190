"""`seqstruct demo`: masked-LM-only against structure-inducing pretraining on the embedded Swiss-Prot sample.

1. prepares the embedded sample (20,000 Swiss-Prot proteins with GO MF terms) with the `swissprot-go`
   recipe: GO-propagated labels, the shared-specific-GO-term graph, MMseqs2 30% clusters and the
   test_close / test_remote homology splits (data/);
2. pretrains the `small` encoder twice on the train split at equal steps, masked-LM only and
   structure-inducing on the graph (seed0/mlm, seed0/structure), with `seqstruct compare`: both arms
   continue the packaged pretrained protein encoder (`protein-small`) when seqstruct ships one, and start
   from scratch when it does not (`model.pretrained=` given as an override decides either way);
3. probes both, with the naive and 2-mer-composition baselines, on the sample's tasks: GO-MF function
   prediction (Fmax, micro-AUPR), its single-label variant, and held-out link retrieval;
4. writes summary.md: one sentence with the answer and its uncertainty, the comparison figure
   (comparison.png: each arm and baseline per task, the paired differences), the table in words, where
   the time went (timings.json), and each arm's pretraining summary;
5. writes report.html: everything above (summaries, loss curves, evaluations, results) on one offline page.

What costs time and does not change the answer is left out: no evaluation or checkpoint before the last
step, and no held-out link retrieval during pretraining (the protein-link probe measures it).

Re-running continues an interrupted demo: finished cells are kept, a pretraining run resumes from its last
checkpoint. Other settings in the same output directory are refused (`--fresh` starts over).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from seqstruct.config import PACKAGED_CONFIGS, config_dict, load_config
from seqstruct.data.prepared import load_prepared, prepare
from seqstruct.evaluation.tables import SPLIT_NAMES, comparison_table, figure_label
from seqstruct.experiments.compare import CompareConfig, check_compare, compare_cells
from seqstruct.io import LOCK_NAME, DirectoryLock, atomic_open
from seqstruct.models.io import packaged_models
from seqstruct.report import plot_comparison, pretrain_summary, write_report
from seqstruct.report.answer import Question, answer_sentence

logger = logging.getLogger(__name__)

DEMO_CONFIG = PACKAGED_CONFIGS / "demo-compare.yaml"
DEFAULT_OUTPUT = "runs/demo"
# The recipe's options for the sample: one clustering level (the split needs only 30%) and small test
# splits, so that preparing and probing stay within the demo's budget.
SAMPLE_OPTIONS: dict[str, Any] = {
    "source": "sample",
    "levels": [0.3],
    "remote_fraction": 0.05,
    "close_fraction": 0.025,
    "valid_fraction": 0.025,
    "seed": 0,
}
# The figures the sentence and the picture show: one per task and test split (the table has them all).
HEADLINE_FIGURES = (
    "go-mf test_remote fmax",
    "go-mf test_close fmax",
    "go-mf-class test_remote accuracy",
    "go-mf-class test_close accuracy",
    "protein-link heldout mrr",
)
NAMES = {
    "mlm": "MLM only",
    "structure": "structure-inducing",
    "naive": "naive (label frequencies)",
    "kmer": "2-mer composition",
}
QUESTION = Question("structure", "mlm", chance="naive", baseline="kmer", names=NAMES)
# The encoder both arms continue when seqstruct ships it (scripts/gpu/ship.sh, docs/gpu.md): the question is
# then asked as a user of a pretrained model asks it, of continued pretraining.
START_MODEL = "protein-small"


def demo_config(
    output_dir: str | None = None, overrides: list[str] | None = None, dataset: str | None = None
) -> CompareConfig:
    """The demo's comparison: demo-compare.yaml, with `key=value` overrides of the pretraining config."""
    config = load_config(CompareConfig, DEMO_CONFIG)
    config.output_dir = output_dir or DEFAULT_OUTPUT  # a path, taken as given (not parsed as YAML)
    config.dataset = dataset or str(Path(config.output_dir) / "data")
    start = [f"model.pretrained={START_MODEL}"] if START_MODEL in packaged_models() else []
    if any(o.startswith("model.pretrained=") for o in overrides or []):
        start = []  # the user's choice, a fresh start (`model.pretrained=`) included
    config.pretrain_overrides = [*config.pretrain_overrides, *start, *(overrides or [])]
    return config


def start_sentence(config: CompareConfig) -> str:
    """Where the arms' encoder starts: the pretrained model it continues, or scratch."""
    given = [o.split("=", 1)[1] for o in config.pretrain_overrides if o.startswith("model.pretrained=")]
    if given and given[-1]:
        return f"both continue the pretrained `{given[-1]}`"
    if START_MODEL in packaged_models():
        return "both start from a freshly initialised encoder"
    return "both start from a freshly initialised encoder (seqstruct ships no pretrained protein encoder yet)"


def _check_same_demo(config: CompareConfig, root: Path) -> None:
    """Refuse to mix a demo with other settings into an earlier one's directory."""
    saved = root / "compare.yaml"
    if not saved.is_file():
        return
    before = yaml.safe_load(saved.read_text(encoding="utf-8"))
    now = config_dict(config)
    changed = [f"{key}: {before.get(key)!r} -> {now[key]!r}" for key in now if before.get(key) != now[key]]
    if changed:
        raise ValueError(
            f"{root} holds a demo with other settings ({'; '.join(changed)}); use --fresh to start over "
            "or -o for another directory"
        )


def run_demo(
    output_dir: str | None = None,
    overrides: list[str] | None = None,
    fresh: bool = False,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Run (or continue) the demo; `dataset` uses an already prepared swissprot-go directory instead of
    preparing the embedded sample. Returns the comparison's result with the summary's and the report's
    paths."""
    config = demo_config(output_dir, overrides, dataset)
    check_compare(config)  # before the lock creates the directory
    root = Path(config.output_dir)
    with DirectoryLock(root):  # held from before --fresh deletes anything to the report's last byte
        start = time.perf_counter()
        if fresh:
            for child in root.iterdir():  # the prepared sample is kept: it does not depend on the settings
                if child.name not in ("data", LOCK_NAME):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        _check_same_demo(config, root)
        data = Path(config.dataset)
        prepared = None
        if dataset is None and not (data / "dataset.json").is_file():
            logger.info("preparing the embedded Swiss-Prot sample in %s", data)
            began = time.perf_counter()
            prepare("swissprot-go", data, overwrite=True, **SAMPLE_OPTIONS)
            prepared = time.perf_counter() - began
        result = compare_cells(config)
        timings = write_timings(config, root, prepared, time.perf_counter() - start)
        summary = write_summary(config, result, timings)
        report = write_report([root], root / "report.html", title="seqstruct demo")
    return {**result, "summary": str(summary), "report": str(report)}


def _cell_dirs(config: CompareConfig, root: Path) -> dict[str, list[Path]]:
    """model -> its cells: a pretrained arm's per seed, a baseline's one."""
    cells = {arm: [root / f"seed{seed}" / arm for seed in config.seeds] for arm in config.arms}
    return cells | {name: [root / "models" / name] for name in config.models}


def write_timings(config: CompareConfig, root: Path, prepared: float | None, wall: float) -> dict[str, Any]:
    """timings.json: where this demo's time went, from what its cells recorded (a rerun that reused them
    keeps their times): preparing the sample (None when prepared earlier), each model's pretraining and
    evaluation (every task's embedding and probe, summed over seeds), this invocation's wall time, and the
    machine's load average at the end (the machine may be shared: the figures are as loaded as it was)."""
    before = root / "timings.json"
    earlier = json.loads(before.read_text(encoding="utf-8")) if before.is_file() else {}
    models: dict[str, dict[str, float]] = {}
    for model, cells in _cell_dirs(config, root).items():
        pretrain = evaluate = 0.0
        for cell in cells:
            if (cell / "evaluation.json").is_file():
                pretrain += json.loads((cell / "evaluation.json").read_text(encoding="utf-8"))[
                    "pretrain_seconds"
                ]
            for task in sorted((cell / "eval").glob("*.json")):
                evaluate += json.loads(task.read_text(encoding="utf-8")).get("wall_seconds") or 0.0
        models[model] = {"pretrain_seconds": pretrain, "evaluate_seconds": evaluate}
    timings = {
        "prepare_seconds": prepared if prepared is not None else earlier.get("prepare_seconds"),
        "models": models,
        "wall_seconds": wall,
        "load_average": list(os.getloadavg()),
        "machine": machine(),
    }
    with atomic_open(before, "w") as handle:
        json.dump(timings, handle, indent=2)
    return timings


def _seconds(value: float | None) -> str:
    if value is None:
        return "not timed here (prepared earlier, or given with --data)"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min ({value:.0f} s)"


def time_lines(timings: dict[str, Any]) -> list[str]:
    """The summary's time section: each phase, then the whole."""
    lines = [
        "| phase | time |",
        "|---|---:|",
        f"| preparing the sample (MMseqs2 clustering, splits, graph) | {_seconds(timings['prepare_seconds'])} |",
    ]
    for model, phases in timings["models"].items():
        name = NAMES.get(model, model)
        if phases["pretrain_seconds"]:
            lines.append(f"| pretraining {name} | {_seconds(phases['pretrain_seconds'])} |")
        lines.append(
            f"| evaluating {name} (embedding and probes, every task) | {_seconds(phases['evaluate_seconds'])} |"
        )
    load = ", ".join(f"{x:.2f}" for x in timings["load_average"])
    lines += [
        f"| **this run, end to end** | **{_seconds(timings['wall_seconds'])}** |",
        "",
        f"On {timings['machine']}; load average at the end {load} (1, 5, 15 min): the machine may have been "
        "shared, and the times are as slow as it was.",
    ]
    return lines


def split_sentence(recipe: dict[str, Any]) -> str:
    """How the dataset's test splits relate to train, from the options its recipe ran with."""
    levels = recipe.get("levels") or []
    if not levels:
        return "Its splits are the recipe's own (see the dataset card)."
    identity = f"{min(levels):.0%}-identity"
    return f"test_remote proteins share no {identity} MMseqs2 cluster with train; test_close ones do."


def machine() -> str:
    """This machine in a few words: CPU cores the run could use, and its GPU if one was used."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} with {cores} CPU cores"
    return f"{cores} CPU cores (no GPU)"


def splits_legend(recipe: dict[str, Any]) -> str:
    """The table's split names, explained once."""
    levels = recipe.get("levels") or []
    identity = f"{min(levels):.0%}-identity MMseqs2 cluster" if levels else "homology cluster"
    return (
        f"*{SPLIT_NAMES['test_remote']}*: the `test_remote` proteins, which share no {identity} with the "
        f"training proteins; *{SPLIT_NAMES['test_close']}*: `test_close`, which do; "
        f"*{SPLIT_NAMES['heldout']}*: proteins outside train, each ranking the others by cosine to find its "
        "graph neighbours (shared specific GO term)."
    )


def _structure_blocks(root: Path, seeds: list[int]) -> list[dict[str, Any] | None]:
    blocks = []
    for seed in seeds:
        path = root / f"seed{seed}" / QUESTION.arm / "metrics.json"
        blocks.append(
            json.loads(path.read_text(encoding="utf-8")).get("structure") if path.is_file() else None
        )
    return blocks


def write_summary(config: CompareConfig, result: dict[str, Any], timings: dict[str, Any]) -> Path:
    """summary.md: the answer in one sentence, the comparison figure and table, where the time went, and
    links to each arm's pretraining summary."""
    root = Path(config.output_dir)
    info = load_prepared(config.dataset).info
    arms, models = list(config.arms), [*config.arms, *config.models]
    summary = result["summary"]
    pairs = [(arm, arms[0]) for arm in models[1:]]  # as compare's table: every model against the first arm
    sentence = answer_sentence(summary, QUESTION, HEADLINE_FIGURES, _structure_blocks(root, config.seeds))
    plot_comparison(
        summary, root / "comparison.png", models, [(QUESTION.arm, QUESTION.reference)], HEADLINE_FIGURES,
        figure_label, NAMES,
    )  # fmt: skip
    lines = [
        "# seqstruct demo: masked-LM vs structure-inducing pretraining",
        "",
        f"**{sentence}**",
        "",
        "![each model per task, and structure-inducing minus MLM only](comparison.png)",
        "",
        f"Data: `{config.dataset}` ({info.name}: "
        + ", ".join(f"{split} {count:,}" for split, count in info.splits.items())
        + f"; {info.graph.get('train', {}).get('edges', 0):,} graph edges among train proteins). "
        + split_sentence(info.config),
        "",
        f"Arms ({', '.join(NAMES.get(a, a) for a in arms)}) pretrain the same encoder for the same steps on "
        f"the train split, seed {config.seeds}, and {start_sentence(config)}; every model is probed frozen ({config.pooling} pooling, "
        f"logistic regression, C chosen on valid; options {config.eval_options}). Baselines: "
        f"{', '.join(NAMES.get(m, m) for m in config.models)}.",
        "",
        "## Results",
        "",
        "Higher is better everywhere. " + splits_legend(info.config),
        "",
        comparison_table(summary, models, pairs, label=figure_label, names=NAMES),
        "Differences are paired by seed; with one seed there is no spread to show. `results.md` has the same "
        "table under the figures' keys (as `results.json` and `results.csv` name them).",
        "",
        "## Time",
        "",
        *time_lines(timings),
        "",
        "## Pretraining",
        "",
    ]
    for seed in config.seeds:
        for arm in arms:
            cell = root / f"seed{seed}" / arm
            if (cell / "metrics.json").is_file():
                path = pretrain_summary(cell).relative_to(root)
                lines.append(f"- {NAMES.get(arm, arm)}, seed {seed}: [{path}]({path})")
    lines += [
        "",
        "Annotations are Swiss-Prot's of 2014-01 (metastudent-data), including electronic ones: noisy labels.",
        f"This is a smoke-scale run on {machine()}; docs/results.md has the larger comparison.",
    ]
    path = root / "summary.md"
    with atomic_open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
