"""The bench subcommands' settings come from their dataclasses: argparse restates no default differently."""

from __future__ import annotations

import dataclasses

import pytest

from seqstruct.bench.attention import AttentionBenchConfig
from seqstruct.bench.batching import BatchingConfig
from seqstruct.bench.cli import settings
from seqstruct.bench.favor_error import FavorErrorConfig
from seqstruct.bench.throughput import EncodeBenchConfig, ThroughputConfig
from seqstruct.cli import build_parser


@pytest.mark.parametrize(
    ("argv", "config_class", "given"),
    [
        (["bench", "throughput"], ThroughputConfig, {"fasta": "x.fasta"}),
        (["bench", "batching"], BatchingConfig, {}),
        (["bench", "encode"], EncodeBenchConfig, {}),
        (["bench", "favor-error", "-o", "out"], FavorErrorConfig, {}),
        (["bench", "attention", "-o", "out"], AttentionBenchConfig, {}),
    ],
)
def test_parsed_defaults_are_the_dataclass_defaults(argv, config_class, given) -> None:
    args = build_parser().parse_args(argv)
    built = settings(config_class, args, **given)
    default = config_class(**given)
    for field in dataclasses.fields(config_class):
        ours, theirs = getattr(built, field.name), getattr(default, field.name)
        if isinstance(theirs, (list, tuple)):
            ours, theirs = list(ours), list(theirs)
        assert ours == theirs, field.name


def test_given_values_win_and_lists_become_tuples() -> None:
    args = build_parser().parse_args(["bench", "encode", "--batch-sizes", "8", "16", "--repeats", "2"])
    config = settings(EncodeBenchConfig, args, device="cpu")
    assert config.batch_sizes == (8, 16) and config.repeats == 2 and config.device == "cpu"
