"""The model card of a pretrained protein encoder: its history of pretraining runs, rendered as README.md.

A shipped encoder improves with every GPU run it gets (each continues it on a fresh shard of the same
leak-free corpus), so its card is a history, not one run: `history.json` beside the weights holds one
entry per run (written by scripts/gpu/export.py), and `model_card(history)` renders it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HISTORY = "history.json"

_ABOUT = """\
An ESM-2-style masked-LM protein encoder (rotary positions, pre-LayerNorm, no dropout) pretrained by
seqstruct on UniProtKB/Swiss-Prot (2014-01, Debian's metastudent-data) with every protein of the
evaluation splits of seqstruct's prepared `swissprot-go` datasets excluded, and every Swiss-Prot protein
within 30% identity of a `test_remote` protein too (`seqstruct data prepare swissprot-pretrain`; its card
gives the rule, the counts and the leakage audit). Held-out perplexity is measured on whole 50% clusters
kept out of every shard, against the unigram (residue frequency) baseline.

Weights are stored in bf16 (to travel within the GPU machine's limits) and load as fp32:

```python
from transformers import AutoModelForMaskedLM, AutoTokenizer

model = AutoModelForMaskedLM.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
```

Licence: the weights derive from UniProtKB/Swiss-Prot and GO annotations, CC BY 4.0; cite UniProt.
Reproduce: docs/gpu.md (scripts/gpu/bundle.sh here, scripts/gpu/pretrain.sh on the GPU machine).
"""


def _number(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _cpu_only(history: Sequence[dict[str, Any]]) -> list[str]:
    """The label a model trained without any GPU run carries (issue 18's fallback): its token count is a
    CPU's, orders of magnitude below a protein LM's usual, and its figures are read as such."""
    if any(run["device"] != "cpu" for run in history):
        return []
    return [
        "- **trained on CPU only**: no GPU run yet; the best model the CPU allowed with the GPU recipe, at a "
        "token count orders of magnitude below ESM-2's (and below the 2x10^8 a model of this size needs to "
        "carry more than composition). A GPU run continues it (docs/gpu.md)."
    ]


def model_card(history: Sequence[dict[str, Any]], name: str = "seqstruct protein encoder") -> str:
    """README.md for a model whose runs are `history` (oldest first)."""
    if not history:
        raise ValueError("a model card needs at least one run in its history")
    last = history[-1]
    total_tokens = sum(run["train_tokens"] or 0 for run in history)
    total_steps = sum(run["steps"] or 0 for run in history)
    lines = [
        f"# {name}",
        "",
        _ABOUT,
        "## Now",
        "",
        f"- parameters: {last['parameters']:,}",
        f"- pretraining runs: {len(history)}; tokens seen: {total_tokens:,}; optimiser steps: {total_steps:,}",
        f"- held-out perplexity: {last['heldout_perplexity']:.2f} (unigram baseline "
        f"{last['unigram_perplexity']:.2f}); masked accuracy {last['heldout_masked_accuracy']:.3f}",
        *_cpu_only(history),
        "",
        "## Runs",
        "",
        "| # | data | continued from | steps | tokens | tokens/s | MFU | padding | wall time | machine | held-out ppl |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(history, start=1):
        wall = run.get("wall_seconds") or run.get("train_runtime_s")
        stopped = " (time budget)" if run.get("stopped_by_max_minutes") else ""
        lines.append(
            f"| {i} | {run['data']} | {run.get('continued_from') or 'scratch'} | {run['steps']:,}{stopped} | "
            f"{run['train_tokens']:,} | {_number(run.get('train_tokens_per_s'), ',.0f')} | "
            f"{_number(run.get('mfu'), '.1%')} | "
            f"{_number(run.get('padding_fraction'), '.2%')} | {_number(wall and wall / 60, '.1f')} min | "
            f"{run['machine']} ({run['device']}, torch {run['torch']}) | {run['heldout_perplexity']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)
