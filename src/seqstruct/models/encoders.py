"""Protein encoder presets: ESM-2-style masked-LM models from `transformers`, built from a config.

ESM-2's architecture (pre-LayerNorm, rotary positions, no token-type embeddings) is the expected choice
for proteins: rotary positions put no ceiling on length, so long proteins need no position table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from transformers import EsmConfig, EsmForMaskedLM, PreTrainedModel, PreTrainedTokenizerBase

from seqstruct.config import FavorConfig


@dataclass(frozen=True)
class EncoderPreset:
    hidden_size: int  # width of every residue representation
    num_hidden_layers: int  # Transformer blocks
    num_attention_heads: int  # heads per block; head width = hidden_size / heads
    intermediate_size: int  # feed-forward width, 4x hidden as in ESM-2


PRESETS: dict[str, EncoderPreset] = {
    "tiny": EncoderPreset(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
    # Synthetic-graph experiments: big enough to learn a sequence-level signal, seconds per hundred steps.
    "mini": EncoderPreset(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=256),
    "small": EncoderPreset(
        hidden_size=320, num_hidden_layers=8, num_attention_heads=10, intermediate_size=1280
    ),
    "base": EncoderPreset(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}


# The config.json key that says what a model encodes (protein | text), so nothing has to guess it.
SEQUENCE_KIND = "sequence_kind"


def build_encoder(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    attn_implementation: str = "sdpa",
    dropout: float = 0.0,
    favor: FavorConfig | None = None,
) -> EsmForMaskedLM:
    """A freshly initialised masked-LM encoder of the given preset, its special-token ids from
    `tokenizer`; with attn_implementation="favor" its config carries the FAVOR+ settings (`favor`,
    defaults if None)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown encoder preset {preset!r}; expected one of {sorted(PRESETS)}")
    config = EsmConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.eos_token_id,
        mask_token_id=tokenizer.mask_token_id,
        position_embedding_type="rotary",
        # Only sizes a non-persistent buffer under rotary positions; it does not bound protein length.
        max_position_embeddings=1026,
        # ESM's token dropout rescales embeddings by the observed mask ratio, which would make an
        # embedding depend on the masking recipe; plain BERT-style masking keeps MLM standard.
        token_dropout=False,
        emb_layer_norm_before=False,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        layer_norm_eps=1e-5,
        **asdict(PRESETS[preset]),
    )
    setattr(config, SEQUENCE_KIND, "protein")
    config._attn_implementation = attn_implementation
    if attn_implementation == "favor":
        config.favor = asdict(favor or FavorConfig())
    return EsmForMaskedLM(config)


def count_parameters(model: EsmForMaskedLM) -> int:
    return sum(p.numel() for p in model.parameters())


def keep_module_weight_names(model: PreTrainedModel) -> PreTrainedModel:
    """Make `save_pretrained` (and so every Trainer checkpoint) write parameters under their module names.

    transformers 5 saves an ESM model's `LayerNorm.weight/bias` under the original ESM names
    `LayerNorm.gamma/beta`. `from_pretrained` renames them back, but the Trainer resumes a checkpoint with
    plain `load_state_dict`, which then leaves every LayerNorm at its initial value without an error. An
    empty conversion list keeps the module's own names, which every loader reads.
    """
    model._weight_conversions = []
    return model
