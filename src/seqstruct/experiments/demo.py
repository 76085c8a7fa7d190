"""`seqstruct demo`: masked-LM-only against structure-inducing pretraining on the embedded Swiss-Prot sample.

1. prepares the embedded sample (20,000 Swiss-Prot proteins with GO MF terms) with the `swissprot-go`
   recipe: GO-propagated labels, the shared-specific-GO-term graph, MMseqs2 30% clusters and the
   test_close / test_remote homology splits (data/);
2. pretrains the `small` encoder twice on the train split at equal steps, masked-LM only and
   structure-inducing on the graph (seed0/mlm, seed0/structure), with `seqstruct compare`;
3. probes both, with the naive and 2-mer-composition baselines, on the sample's tasks: GO-MF function
   prediction (Fmax, micro-AUPR), its single-label variant, and held-out link retrieval;
4. writes summary.md: the comparison table and each arm's pretraining summary;
5. writes report.html: everything above (summaries, loss curves, evaluations, results) on one offline page.

Re-running continues an interrupted demo: finished cells are kept, a pretraining run resumes from its last
checkpoint. Other settings in the same output directory are refused (`--fresh` starts over).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from seqstruct.config import PACKAGED_CONFIGS, config_dict, load_config
from seqstruct.data.prepared import load_prepared, prepare
from seqstruct.experiments.compare import CompareConfig, check_compare, compare_cells
from seqstruct.io import LOCK_NAME, DirectoryLock, atomic_open
from seqstruct.report import pretrain_summary, write_report

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


def demo_config(
    output_dir: str | None = None, overrides: list[str] | None = None, dataset: str | None = None
) -> CompareConfig:
    """The demo's comparison: demo-compare.yaml, with `key=value` overrides of the pretraining config."""
    config = load_config(CompareConfig, DEMO_CONFIG)
    config.output_dir = output_dir or DEFAULT_OUTPUT  # a path, taken as given (not parsed as YAML)
    config.dataset = dataset or str(Path(config.output_dir) / "data")
    config.pretrain_overrides = [*config.pretrain_overrides, *(overrides or [])]
    return config


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
        if fresh:
            for child in root.iterdir():  # the prepared sample is kept: it does not depend on the settings
                if child.name not in ("data", LOCK_NAME):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        _check_same_demo(config, root)
        data = Path(config.dataset)
        if dataset is None and not (data / "dataset.json").is_file():
            logger.info("preparing the embedded Swiss-Prot sample in %s", data)
            prepare("swissprot-go", data, overwrite=True, **SAMPLE_OPTIONS)
        result = compare_cells(config)
        summary = write_summary(config, result)
        report = write_report([root], root / "report.html", title="seqstruct demo")
    return {**result, "summary": str(summary), "report": str(report)}


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


def write_summary(config: CompareConfig, result: dict[str, Any]) -> Path:
    """summary.md: what ran, the comparison table, and links to each arm's pretraining summary."""
    root = Path(config.output_dir)
    info = load_prepared(config.dataset).info
    arms = list(config.arms)
    lines = [
        "# seqstruct demo: masked-LM vs structure-inducing pretraining",
        "",
        f"Data: `{config.dataset}` ({info.name}: "
        + ", ".join(f"{split} {count:,}" for split, count in info.splits.items())
        + f"; {info.graph.get('train', {}).get('edges', 0):,} graph edges among train proteins). "
        + split_sentence(info.config),
        "",
        f"Arms ({', '.join(arms)}) pretrain the same encoder for the same steps on the train split, seed "
        f"{config.seeds}; every model is probed frozen ({config.pooling} pooling, logistic regression, C "
        f"chosen on valid; options {config.eval_options}). Baselines: {', '.join(config.models)}.",
        "",
        "## Results",
        "",
        result["table"],
        "",
        "## Pretraining",
        "",
    ]
    for seed in config.seeds:
        for arm in arms:
            cell = root / f"seed{seed}" / arm
            if (cell / "metrics.json").is_file():
                summary = pretrain_summary(cell)
                lines.append(
                    f"- {arm}, seed {seed}: [{summary.relative_to(root)}]({summary.relative_to(root)})"
                )
    lines += [
        "",
        "Annotations are Swiss-Prot's of 2014-01 (metastudent-data), including electronic ones: noisy labels.",
        f"This is a smoke-scale run on {machine()}; docs/results.md has the larger comparison.",
    ]
    path = root / "summary.md"
    with atomic_open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
