"""Reports: a one-page summary (markdown + loss-curve PNG) of a pretraining run, from the files it wrote."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402

from seqstruct.io import atomic_open, atomic_path  # noqa: E402


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of a run's log.csv with numeric cells as floats and empty cells dropped."""
    with open(path, encoding="utf-8") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def plot_loss_curve(rows: list[dict[str, float]], path: Path, baseline_nll: float | None = None) -> None:
    """Training loss and held-out loss against optimiser steps, with the unigram baseline's held-out loss."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    heldout = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss (80/10/10 masking)")
    if heldout:
        ax.plot(*zip(*heldout, strict=True), "o-", label="held-out loss (all <mask>)")
    if baseline_nll is not None:
        ax.axhline(baseline_nll, color="grey", linestyle="--", label="unigram baseline, held-out")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("masked-LM cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def pretrain_summary(run_dir: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write `summary.md` and `loss_curve.png` into a pretraining run directory; returns the summary path."""
    run = Path(run_dir)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    model, base = metrics["heldout"], metrics["unigram_baseline"]
    plot_loss_curve(read_log(run / "log.csv"), run / "loss_curve.png", math.log(base["perplexity"]))
    tokens, seconds = metrics.get("train_tokens") or 0, metrics.get("train_runtime_s") or math.nan
    lines = [
        f"# Pretraining summary: `{run}`",
        "",
        f"Encoder with {metrics['parameters']:,} parameters, {metrics['steps']} steps on "
        f"{metrics['train_proteins']:,} proteins ({tokens:,} tokens, {_fmt(seconds, 0)} s, "
        f"{_fmt(tokens / seconds, 0)} tokens/s, bf16={metrics.get('bf16')}, "
        f"{metrics.get('torch_threads')} CPU threads, world size {metrics.get('world_size')}).",
        "",
        f"## Held-out masked-LM ({metrics['heldout_proteins']:,} proteins, "
        f"{model['masked_tokens']:,} masked residues)",
        "",
        "Every scored residue is replaced by `<mask>`, so accuracy measures prediction from context alone. The "
        f"baseline ignores context: it predicts the most frequent training residue ({base['most_frequent']}) "
        "and scores residues by their training frequency.",
        "",
        "| | masked-token accuracy | perplexity |",
        "|---|---|---|",
        f"| this encoder | {_fmt(model['masked_accuracy'])} | {_fmt(model['perplexity'], 2)} |",
        f"| unigram-frequency baseline | {_fmt(base['masked_accuracy'])} | {_fmt(base['perplexity'], 2)} |",
        "",
        f"Paired on the same positions, with standard errors clustered by protein: accuracy gain "
        f"{model['accuracy_gain']:+.4f} +/- {model['accuracy_gain_se']:.4f}, log-likelihood gain "
        f"{model['nll_gain']:+.4f} +/- {model['nll_gain_se']:.4f} nats per masked residue.",
        "",
        "![training and held-out loss](loss_curve.png)",
        "",
        "## Files",
        "",
        "- `config.json`, `model.safetensors`, `tokenizer*.json`: the model in the Hugging Face layout "
        "(`AutoModelForMaskedLM.from_pretrained`)",
        "- `config.yaml`: the resolved run configuration; `metrics.json`, `log.csv`, `tensorboard/`: metrics",
        "- `checkpoints/`: resume points (`--resume`); `heldout.fasta`: the held-out proteins",
    ]
    for name, text in (extra or {}).items():
        lines.append(f"- `{name}`: {text}")
    path = run / "summary.md"
    with atomic_open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path
