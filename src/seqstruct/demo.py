"""`seqstruct demo`: pretrain the `small` encoder on the embedded Swiss-Prot sample, embed its held-out
proteins, and write a one-page summary. Re-running continues an interrupted demo from its last checkpoint.
"""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Any

from seqstruct.config import PretrainConfig, load_config
from seqstruct.data.sources.embedded import SAMPLE_FASTA
from seqstruct.embed import embed_fasta
from seqstruct.report import pretrain_summary
from seqstruct.train import RunPaths, pretrain

logger = logging.getLogger(__name__)

DEMO_CONFIG = Path(str(files("seqstruct") / "configs" / "demo.yaml"))


def demo_config(output_dir: str | None = None, overrides: list[str] | None = None) -> PretrainConfig:
    config = load_config(PretrainConfig, DEMO_CONFIG, overrides)
    if output_dir is not None:
        config.output_dir = output_dir  # a path, taken as given (not parsed as YAML like an override)
    if not config.data.fasta:
        config.data.fasta = str(SAMPLE_FASTA)
    return config


def run_demo(
    output_dir: str | None = None, overrides: list[str] | None = None, fresh: bool = False
) -> dict[str, Any]:
    config = demo_config(output_dir, overrides)
    paths = RunPaths(Path(config.output_dir))
    # An earlier demo here is continued (pretrain refuses if its settings differ); --fresh starts over.
    has_checkpoints = paths.checkpoints.is_dir() and any(paths.checkpoints.glob("checkpoint-*"))
    metrics = pretrain(config, resume=has_checkpoints and not fresh, overwrite=fresh)

    heldout_fasta = paths.heldout_fasta  # written by pretrain, with the FASTA ids
    embeddings = paths.root / "embeddings.npz"
    count = embed_fasta(paths.root, heldout_fasta, embeddings, pooling="mean")
    summary = pretrain_summary(
        paths.root,
        extra={
            "embeddings.npz": f"mean-pooled embeddings of the {count} held-out proteins (`ids`, `embeddings`), "
            f"as `seqstruct embed {paths.root} {heldout_fasta} -o {embeddings}` writes them",
        },
    )
    model, base = metrics["heldout"]["masked_accuracy"], metrics["unigram_baseline"]["masked_accuracy"]
    if model <= base:
        logger.warning("held-out masked accuracy %.3f does not beat the unigram baseline %.3f", model, base)
    return {"summary": str(summary), "embeddings": str(embeddings), **metrics}
