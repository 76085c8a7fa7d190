"""A pretraining run's one-page summary: summary.md (held-out masked-LM against the unigram baseline, the
structure loss against its chance value) and loss_curve.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from seqstruct.io import atomic_open
from seqstruct.report.figures import plot_loss_curve, read_log


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def heldout_line(metrics: dict[str, Any]) -> str:
    """One line of a run's metrics.json: held-out masked-LM against the unigram baseline (what
    `seqstruct pretrain` prints when it ends)."""
    model, base = metrics["heldout"], metrics["unigram_baseline"]
    return (
        f"held-out masked-token accuracy {model['masked_accuracy']:.3f} (unigram baseline "
        f"{base['masked_accuracy']:.3f}; gain {model['accuracy_gain']:+.3f} +/- {model['accuracy_gain_se']:.3f} SE), "
        f"perplexity {model['perplexity']:.2f} (baseline {base['perplexity']:.2f})"
    )


def _structure_lines(structure: dict[str, Any] | None) -> list[str]:
    """The summary's structure section: the structure loss against its chance value (what an embedding
    that ignores the graph scores), in plain words when the run never left it, and held-out link MRR."""
    if not structure or not structure.get("weight"):
        return []
    lines = [f"## Structure-inducing loss ({structure['loss']}, λ = {structure['weight']})", ""]
    loss, chance, best = (structure.get(key) for key in ("final_loss", "chance", "best_loss_to_chance"))
    cannot = (
        "the encoder did not learn the graph, so this run cannot show whether structure-inducing "
        "pretraining helps or hurts; it shows only that this loss did not train."
    )
    if loss is None or chance is None:
        lines.append("No structure loss was logged (fewer steps than `train.logging_steps`).")
    elif structure.get("left_chance"):
        lines.append(
            f"The structure loss left its chance value: {_fmt(loss)} at the last logged step against "
            f"{_fmt(chance)} for an embedding that ignores the graph ({_fmt(loss / chance, 2)} of it)."
        )
    elif best is not None and best < structure["left_chance_threshold"]:
        lines.append(
            f"**The structure loss fell back to chance.** It reached {_fmt(best, 2)} of its chance value "
            f"at step {structure.get('best_step')}, but at the last logged step it is {_fmt(loss)}, "
            f"{_fmt(loss / chance, 2)} of the {_fmt(chance)} that an embedding ignoring the graph scores: "
            + cannot
        )
    else:
        lines.append(
            f"**The structure loss never left chance.** At the last logged step it is {_fmt(loss)}, "
            f"{_fmt(loss / chance, 2)} of the {_fmt(chance)} that an embedding ignoring the graph scores "
            f"(at best {_fmt(best, 2)}): " + cannot
        )
    if structure.get("link_mrr") is not None:
        lines += [
            "",
            f"Held-out link retrieval at the last step (`eval_link_mrr`, {structure.get('link_queries')} "
            f"held-out sequences querying by cosine): MRR {_fmt(structure['link_mrr'])}.",
        ]
    return [*lines, ""]


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
        *_structure_lines(metrics.get("structure")),
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
