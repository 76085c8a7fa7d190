"""The pooling names and what each needs, without the poolings: what `seqstruct --help` lists.

seqstruct.models.pooling (which imports torch and sentence-transformers) implements them and re-exports
these names; the `seqstruct` command offers them as choices without importing either library.
"""

from __future__ import annotations

# The poolings with trained weights, by name: (form, queries) of LayerAttentionPooling.
LAYER_ATTENTION_VARIANTS: dict[str, tuple[str, str]] = {
    "layer-attention": ("residual", "all"),
    "layer-attention-1q": ("residual", "last"),
    "layer-attention-paper": ("paper", "all"),
    "layer-attention-paper-1q": ("paper", "last"),
}
LAYER_ATTENTION = tuple(LAYER_ATTENTION_VARIANTS)
POOLINGS: tuple[str, ...] = ("cls", "mean", "max", "first-last", *LAYER_ATTENTION)
# The poolings that read every layer's hidden states (the encoder must output them).
NEEDS_HIDDEN_STATES = frozenset({"first-last", *LAYER_ATTENTION})
