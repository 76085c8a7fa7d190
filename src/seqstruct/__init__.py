"""seqstruct: pretrain, adapt and evaluate sequence encoders for proteins and scientific text.

The public names are imported on first use, so `seqstruct --help` does not wait for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "PretrainConfig": "seqstruct.config",
    "load_config": "seqstruct.config",
    "read_fasta": "seqstruct.data.fasta",
    "FastaError": "seqstruct.data.fasta",
    "build_protein_tokenizer": "seqstruct.data.tokenizers",
    "build_encoder": "seqstruct.models.encoders",
    "pretrain": "seqstruct.train",
    "encode": "seqstruct.embed",
    "load_encoder": "seqstruct.embed",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'seqstruct' has no attribute {name!r}")
