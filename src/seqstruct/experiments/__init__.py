"""Experiments: compositions of the steps (pretraining, evaluation, reports) that answer a question."""
