"""`seqstruct bench ...`: the benchmark subcommands' arguments, each turned into its settings dataclass.

Benchmarks are never run by the fast tests; their figures go to docs/benchmarks.md with the command.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from seqstruct.models.pooling_names import POOLINGS


def settings(config_class: type, args: argparse.Namespace, **given: Any) -> Any:
    """`config_class` (a settings dataclass) from the parsed arguments of the same names, lists as
    tuples where the field's default is one, and `given` values as they are."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config_class):
        if field.name in given or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        default = (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        )
        values[field.name] = tuple(value) if isinstance(default, tuple) and value is not None else value
    return config_class(**values, **given)


def _bench_throughput(args: argparse.Namespace) -> None:
    from seqstruct.bench.throughput import ThroughputConfig, throughput_report
    from seqstruct.data.sources.embedded import SAMPLE_FASTA

    config = settings(
        ThroughputConfig, args, fasta=args.fasta or SAMPLE_FASTA, attentions=tuple(args.attention)
    )
    print(throughput_report(config, args.output))


def _bench_batching(args: argparse.Namespace) -> None:
    from seqstruct.bench.batching import BatchingConfig, batching_report

    print(batching_report(settings(BatchingConfig, args), args.output))


def _bench_encode(args: argparse.Namespace) -> None:
    from seqstruct.bench.throughput import EncodeBenchConfig, st_encode_report

    print(st_encode_report(settings(EncodeBenchConfig, args), args.output))


def _bench_favor_error(args: argparse.Namespace) -> None:
    from seqstruct.bench.favor_error import FavorErrorConfig, favor_error_report

    result = favor_error_report(settings(FavorErrorConfig, args), args.output)
    beats = result["orthogonal_beats_iid"]["positive"]
    print(f"orthogonal beats iid at every m (positive features): {beats}")
    print("wrote " + ", ".join(str(path) for path in result["files"].values()))


def _bench_attention(args: argparse.Namespace) -> None:
    from seqstruct.bench.attention import AttentionBenchConfig, attention_report

    result = attention_report(settings(AttentionBenchConfig, args, isolate=not args.in_process), args.output)
    print("wrote " + ", ".join(str(path) for path in result["files"].values()))


def _bench_embed_memory(args: argparse.Namespace) -> None:
    from seqstruct.bench.embed_memory import EmbedMemoryConfig, embed_memory_report

    # 0: no truncation, torch's default threads
    config = settings(
        EmbedMemoryConfig, args, max_length=args.max_length or None, threads=args.threads or None
    )
    print(embed_memory_report(config, args.output))


def _bench_cli_startup(args: argparse.Namespace) -> None:
    from seqstruct.bench.startup import StartupConfig, startup_report

    print(startup_report(settings(StartupConfig, args), args.output))


def add_bench_commands(commands: Any) -> None:
    """Add `bench` and its subcommands to the `seqstruct` subparsers `commands`."""
    bench = commands.add_parser("bench", help="benchmarks (results belong in docs/benchmarks.md)")
    kinds = bench.add_subparsers(dest="bench", required=True)
    p = kinds.add_parser("throughput", help="pretraining tokens/s; encode() vs plain transformers seq/s")
    p.add_argument("--fasta", default=None, help="proteins to use (default: the embedded sample)")
    p.add_argument("--preset", default="small")
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--attention", nargs="+", default=["sdpa"], help="attention implementations to compare")
    p.add_argument("--embed-n", type=int, default=512, help="proteins embedded per repeat (0: skip)")
    p.add_argument("--embed-batch-size", type=int, default=32)
    p.add_argument("--embed-max-length", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench_throughput)

    p = kinds.add_parser(
        "batching", help="pretraining useful tokens/s: length-grouped rows vs token-budget batches, one run"
    )
    p.add_argument("--preset", default="small")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16, help="rows; the token budget is this x max-length")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--repeats", type=int, default=2, help="times the two arms alternate")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--proteins", type=int, default=4000, help="the first N proteins of the embedded sample")
    p.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench_batching)

    p = kinds.add_parser(
        "encode", help="encode() vs SentenceTransformer.encode of the same model: texts/s and proteins/s"
    )
    p.add_argument("--text-model", default="minilm", help="text model directory, or minilm")
    p.add_argument(
        "--texts",
        default=None,
        help="prepared text dataset, GO SQLite, or .txt/.jsonl (default: data/prepared/go-text, else GO.sqlite)",
    )
    p.add_argument("--text-n", type=int, default=512, help="texts per timed run (0: skip texts)")
    p.add_argument("--text-max-length", type=int, default=None, help="default: the model's max_seq_length")
    p.add_argument("--protein-model", default=None, help="saved model directory (default: a fresh --preset)")
    p.add_argument("--preset", default="small")
    p.add_argument("--fasta", default=None, help="proteins to use (default: the embedded sample)")
    p.add_argument("--protein-n", type=int, default=256, help="proteins per timed run (0: skip proteins)")
    p.add_argument("--protein-max-length", type=int, default=1024)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32], help="the same for both sides")
    p.add_argument("--poolings", nargs="+", choices=POOLINGS, default=["mean", "layer-attention"])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per side, alternated after a warm-up")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench_encode)

    p = kinds.add_parser("favor-error", help="FAVOR+ output MSE vs exact softmax over m (Performer fig. 3)")
    p.add_argument(
        "-o", "--output", required=True, help="directory for favor_error.{csv,md,png}, config.json"
    )
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--features", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="values of m")
    p.add_argument("--draws", type=int, default=10, help="independent inputs and projections per m")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-std", type=float, default=1.0, help="standard deviation of q and k entries")
    p.set_defaults(func=_bench_favor_error)

    p = kinds.add_parser(
        "attention",
        help="time, bandwidth and peak memory: SDPA vs favor (PyTorch, Triton) vs performer-pytorch over L",
    )
    p.add_argument("-o", "--output", required=True, help="directory for attention.{csv,md,png}, config.json")
    p.add_argument("--lengths", type=int, nargs="+", default=[256 * 2**i for i in range(9)])
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--features", type=int, default=256, help="random features m")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per case (median), after a warm-up")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=["sdpa", "favor", "performer", "sdpa-flash", "sdpa-efficient", "favor-triton"],
        default=["sdpa", "favor", "performer"],
        help="the last three need --device cuda (favor-triton runs on the CPU under TRITON_INTERPRET=1)",
    )
    p.add_argument(
        "--modes", nargs="+", choices=["bidirectional", "causal"], default=["bidirectional", "causal"]
    )
    p.add_argument("--max-seconds", type=float, default=60.0, help="skip longer L once fwd+bwd exceeds this")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument(
        "--in-process", action="store_true", help="no fresh process per case: quicker, peaks less trustworthy"
    )
    p.add_argument(
        "--matmul-size", type=int, default=4096, help="square matmul (in --dtype) that measures the peak"
    )
    p.add_argument("--copy-mib", type=int, default=256, help="MiB copied to measure the memory bandwidth")
    p.set_defaults(func=_bench_attention)

    p = kinds.add_parser("embed-memory", help="peak RSS of `seqstruct embed` over the number of proteins")
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 500000], help="proteins per run, ascending")
    p.add_argument("--min-residues", type=int, default=50, help="length of the shortest random protein")
    p.add_argument("--max-residues", type=int, default=1000, help="of the longest")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--max-length", type=int, default=64, help="`embed --max-length` (0: no truncation)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=16384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of embed (0: torch's default)")
    p.add_argument(
        "--workdir", default=None, help="keep the model and outputs here (default: a temporary dir)"
    )
    p.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench_embed_memory)

    p = kinds.add_parser(
        "cli-startup", help="wall time and peak RSS of quick `seqstruct` commands, each in fresh processes"
    )
    p.add_argument(
        "--commands",
        nargs="+",
        default=["--help", "data list", "evaluate --list", "pretrain --help", "embed --help"],
        help='seqstruct arguments, one quoted string per command, e.g. "data list" " --help" (a leading space '
        "keeps one that starts with - from being read as an option here)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per command, after one warm-up")
    p.add_argument(
        "--source",
        default=None,
        help="time this seqstruct source tree instead (e.g. a worktree of an older commit)",
    )
    p.add_argument("-o", "--output", default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench_cli_startup)
