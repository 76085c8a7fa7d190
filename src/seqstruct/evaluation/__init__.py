"""Evaluation of encoders: graded similarity on real data (`similarity`), agreement between two models."""
