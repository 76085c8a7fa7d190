"""Attention implementations: FAVOR+ maths (`favor`) and its registration with transformers (`interface`)."""
