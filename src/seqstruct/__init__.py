"""seqstruct: pretrain, adapt and evaluate sequence encoders for proteins and scientific text.

Importing seqstruct registers two things with transformers: `attn_implementation="favor"` (FAVOR+),
and the BiLSTM baseline (model_type "seqstruct-lstm"), so that AutoModelForSequenceClassification loads
a saved one. Both are registered when transformers is first used, not at import (seqstruct.registration
says how), and the public names are imported on first use: `import seqstruct` itself imports neither
torch, transformers nor sentence-transformers, so the `seqstruct` command starts at once.
`load_sentence_model(dir)` loads a sentence-transformers model seqstruct saved, its own pooling modules
included, without trust_remote_code (plain `SentenceTransformer(dir)` does only when the pooling is
sentence-transformers' own; see seqstruct.models.sentence).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from seqstruct.registration import register_when_imported as _register_when_imported

__version__ = "0.1.0"

_PUBLIC = {
    "PretrainConfig": "seqstruct.config",
    "load_config": "seqstruct.config",
    "read_fasta": "seqstruct.data.fasta",
    "FastaError": "seqstruct.data.fasta",
    "build_protein_tokenizer": "seqstruct.data.tokenizers",
    "build_encoder": "seqstruct.models.encoders",
    "pretrain": "seqstruct.training.mlm",
    "encode": "seqstruct.models.embed",
    "load_encoder": "seqstruct.models.embed",
    "performerize": "seqstruct.attention.interface",
    "redraw_projections": "seqstruct.attention.interface",
    "FavorRedrawCallback": "seqstruct.attention.interface",
    "favor_attention": "seqstruct.attention.favor",
    "FavorConfig": "seqstruct.config",
    "load_sentence_model": "seqstruct.models.sentence",
    "sentence_model": "seqstruct.models.sentence",
    "LstmConfig": "seqstruct.models.lstm",
    "LstmForSequenceClassification": "seqstruct.models.lstm",
}
__all__ = sorted(_PUBLIC)

_register_when_imported()


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'seqstruct' has no attribute {name!r}")
