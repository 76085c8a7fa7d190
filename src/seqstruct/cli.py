"""The `seqstruct` command: parses arguments and calls the library; no logic of its own.

Building the parser imports nothing beyond the standard library and seqstruct's name tables, so
`seqstruct --help`, `seqstruct CMD --help`, `data list` and `evaluate --list` answer at once; each command
imports what it runs (torch, transformers, sentence-transformers, datasets) inside its function.
`seqstruct bench cli-startup` measures this.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

from seqstruct.bench.cli import add_bench_commands
from seqstruct.models.pooling_names import POOLINGS


def _pretrain(args: argparse.Namespace) -> None:
    from seqstruct.config import PretrainConfig, load_config
    from seqstruct.report.summary import heldout_line
    from seqstruct.training.mlm import pretrain

    config = load_config(PretrainConfig, args.config, args.overrides)
    metrics = pretrain(config, resume=args.resume, overwrite=args.overwrite)
    print(f"{heldout_line(metrics)}\nmodel, metrics.json and log.csv in {config.output_dir}")


def _distill(args: argparse.Namespace) -> None:
    from seqstruct.config import DistillConfig, load_config
    from seqstruct.experiments.recovery import distill

    config = load_config(DistillConfig, args.config, args.overrides)
    metrics = distill(config, resume=args.resume, overwrite=args.overwrite)
    before, after, targets = metrics["before"], metrics["after"], metrics["targets"]
    print(
        f"FAVOR+ vs exact mean cosine on {after['cosine']['n']} held-out GO definitions: "
        f"{before['cosine']['mean']:.4f} before, {after['cosine']['mean']:.4f} after "
        f"(target >= {targets['min_mean_cosine']}: {'met' if targets['cosine_met'] else 'NOT met'})\n"
        f"Spearman vs Lin similarity on {metrics['pairs']} pairs: teacher {metrics['teacher_spearman']:.4f}, "
        f"student {before['spearman']:.4f} before, {after['spearman']:.4f} after "
        f"(drop {after['spearman_drop']:+.4f}, target <= {targets['max_spearman_drop']}: "
        f"{'met' if targets['spearman_met'] else 'NOT met'})\n"
        f"student, metrics.json and summary.md in {config.output_dir}"
    )


def _contrastive(args: argparse.Namespace) -> None:
    from seqstruct.config import ContrastiveConfig, load_config
    from seqstruct.training.contrastive import contrastive

    config = load_config(ContrastiveConfig, args.config, args.overrides)
    metrics = contrastive(config, resume=args.resume, overwrite=args.overwrite)
    heldout = metrics["heldout"]
    loss = "no held-out pairs" if heldout is None else f"held-out loss {heldout['loss']:.4f}"
    print(
        f"{metrics['setting']} contrastive training on {metrics['train_pairs']:,} {metrics['pairs']} pairs, "
        f"{metrics['steps']} steps: train loss {metrics['train_loss']:.4f}, {loss} "
        f"({metrics['heldout_pairs']:,} pairs)\n"
        f"sentence-transformers model, metrics.json and log.csv in {config.output_dir}"
    )


def _embed(args: argparse.Namespace) -> None:
    from seqstruct.config import MIN_MAX_LENGTH

    # Shorter than <cls> x <eos> leaves no residue to embed: refused before a model loads.
    if args.max_length is not None and args.max_length < MIN_MAX_LENGTH:
        raise ValueError(
            f"--max-length {args.max_length}: must be at least {MIN_MAX_LENGTH} (one residue or word "
            "piece plus the two special tokens), or left out for no truncation"
        )
    import signal
    import threading

    from seqstruct.models.extract import embed_file

    include = list(args.include or ["pooled"]) + (["per_residue"] if args.per_residue else [])

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    # A scheduler's SIGTERM unwinds like Ctrl-C, so the temporary files beside the output are removed.
    in_main_thread = threading.current_thread() is threading.main_thread()  # where signal() may be called
    previous = signal.signal(signal.SIGTERM, terminated) if in_main_thread else None
    try:
        count = embed_file(
            args.model_dir,
            args.inputs,
            args.output,
            pooling=args.pooling,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
            max_length=args.max_length,
            normalize_embeddings=args.normalize,
            include=include,
            layers=args.layers or [-1],
            residue_dtype=args.residue_dtype,
            resume=args.resume,
            chunk_size=args.chunk_size,
        )
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(f"wrote {count} embeddings to {args.output}")


def _evaluate(args: argparse.Namespace) -> None:
    if args.list:
        from seqstruct.evaluation.catalogue import listing  # a static table: no model library loads

        print(listing())
        return
    if args.model is None:
        raise ValueError("give MODEL (a model directory, minilm, baseline:NAME, a .npz), or --list")
    from seqstruct.evaluation.run import evaluate
    from seqstruct.evaluation.tables import task_summary

    # key=value after --task NAME... lands in the task list; it is an option all the same.
    tasks = [t for t in args.task if "=" not in t]
    options = [*args.options, *(t for t in args.task if "=" in t)]
    # --label, --k and --metric are the knn and link tasks' options, under their older flags.
    flags = {"columns": args.label and json.dumps(args.label), "neighbours": args.k, "metric": args.metric}
    if any(v is not None for v in flags.values()) and not {"knn", "link"} & set(tasks):
        raise ValueError("--label, --k and --metric apply to the knn and link tasks only")
    flags |= {"batch_size": args.batch_size, "max_length": args.max_length}
    options += [f"{key}={value}" for key, value in flags.items() if value is not None]
    results = evaluate(
        args.model, tasks, args.data, args.mode, args.seeds, args.pooling, options, args.output
    )
    print("\n".join(task_summary(result) for result in results))
    if args.output:
        print(f"{', '.join(f'{t}.json and {t}.md' for t in tasks)} in {args.output}")


def _demo(args: argparse.Namespace) -> None:
    from seqstruct.experiments.demo import run_demo

    result = run_demo(args.output_dir, args.overrides, fresh=args.fresh, dataset=args.data)
    print(result["table"], end="")
    print(f"summary: {result['summary']}")
    print(f"report: {result['report']}")


def _synth(args: argparse.Namespace) -> None:
    from seqstruct.config import load_config
    from seqstruct.data.synthetic import generator, write_synthetic

    config_class, _ = generator(args.name)
    config = load_config(config_class, None, args.overrides)
    prepared = write_synthetic(args.name, config, args.output_dir, overwrite=args.overwrite)
    counts, labels = prepared.info.counts, ", ".join(prepared.info.columns)
    print(
        f"wrote {args.name}: {counts['nodes']} sequences, {counts['edges']} edges ({counts['training_edges']} "
        f"in graph.tsv, {counts['heldout_edges']} touching {counts['heldout_nodes']} held-out nodes in "
        f"graph_heldout.tsv), labels {labels} to {args.output_dir}"
    )


def _data_prepare(args: argparse.Namespace) -> None:
    from seqstruct.config import apply_overrides
    from seqstruct.data.prepared import prepare

    prepared = prepare(args.name, args.output, overwrite=args.overwrite, **apply_overrides({}, args.options))
    sizes = ", ".join(f"{split} {count:,}" for split, count in prepared.info.splits.items())
    print(f"wrote {prepared.info.kind} dataset {prepared.info.name} ({sizes}) to {prepared.path}")


def _data_align(args: argparse.Namespace) -> None:
    import json

    from seqstruct.data.alignment import alignment_table, dataset_alignment
    from seqstruct.io import atomic_open

    rows = dataset_alignment(args.dataset, args.graph, args.columns, args.draws, args.seed)
    print(alignment_table(rows), end="")
    print(
        f"Random graphs: {args.draws} degree-preserving shuffles of the same edges. A column is aligned when "
        "homophily and the kNN score both lie more than 3 stds (and 0.05) above them: only then can structure-inducing "
        "pretraining on this graph be expected to help tasks on that column."
    )
    if args.json:
        with atomic_open(args.json) as handle:
            json.dump([row.as_dict() for row in rows], handle, indent=2)
            handle.write("\n")


def _data_list(args: argparse.Namespace) -> None:
    from seqstruct.data.prepared import recipe_options, recipes

    for name, recipe in sorted(recipes().items()):
        summary = " ".join((recipe.__doc__ or "").strip().split("\n\n")[0].split())  # first paragraph
        options = " ".join(f"{key}={value!r}" for key, value in recipe_options(recipe).items())
        print(f"{name}\n    {summary}\n    options: {options or '(none)'}")


def _compare(args: argparse.Namespace) -> None:
    from seqstruct.config import load_config
    from seqstruct.experiments.compare import CompareConfig, compare

    config = load_config(CompareConfig, args.config, args.overrides)
    result = compare(config)
    print(f"{result['table']}results.md, results.csv and every run in {config.output_dir}")


def _curve(args: argparse.Namespace) -> None:
    from seqstruct.config import load_config
    from seqstruct.experiments.curve import CurveConfig, curve

    config = load_config(CurveConfig, args.config, args.overrides)
    result = curve(config, overwrite=args.overwrite)
    if "busy" in result:
        print(result["message"])
        return
    print(f"{result['table']}curve.md, curve.csv, curve.png and every cell in {config.output_dir}")


def _report(args: argparse.Namespace) -> None:
    from seqstruct.report import find_sections, write_report

    path = write_report(args.dirs, args.output, args.title)
    sections, dirs = len(find_sections(args.dirs)), len(args.dirs)
    print(f"wrote {path}: {sections} sections from {dirs} director{'y' if dirs == 1 else 'ies'}")


def _training_command(
    commands: Any, name: str, func: Any, summary: str, example: str, overrides: str
) -> None:
    """A training subcommand: CONFIG [key=value ...] [--resume | --overwrite] (one Run's rules)."""
    p = commands.add_parser(name, help=summary)
    p.add_argument("config", help=f"YAML run configuration, e.g. {example}")
    p.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {overrides}")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from output_dir's last checkpoint")
    again.add_argument("--overwrite", action="store_true", help="discard checkpoints already in output_dir")
    p.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqstruct", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    _training_command(
        commands,
        "pretrain",
        _pretrain,
        "masked-LM pretraining of a protein encoder from FASTA",
        "src/seqstruct/configs/mlm-1024.yaml",
        "train.max_steps=100",
    )
    _training_command(
        commands,
        "distill",
        _distill,
        "performerize a sentence encoder (FAVOR+), recover it by distillation on GO text",
        "src/seqstruct/configs/distill-minilm.yaml",
        "train.max_steps=100",
    )
    _training_command(
        commands,
        "contrastive",
        _contrastive,
        "SimCSE-style sentence embeddings (unsupervised, or supervised pairs from a prepared dataset)",
        "src/seqstruct/configs/contrastive-go-text.yaml",
        "setting=unsupervised dropout=0.1",
    )

    p = commands.add_parser(
        "embed", help="embed proteins (FASTA) or texts (.txt, .jsonl) with a saved encoder or `minilm`"
    )
    p.add_argument("model_dir", help="saved model directory (HF or sentence-transformers layout) or `minilm`")
    p.add_argument(
        "inputs",
        help='FASTA (ids from headers), .txt (one text per line; ids = line numbers) or .jsonl ({"id", "text"})',
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help=".npz with `ids` and `embeddings` (and what --include adds), checked before the model loads; "
        "chunks are written to OUTPUT.parts/ as they are embedded and the file assembled from them at the end",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="default: a sentence-transformers model's own pooling (trained layer attention included), "
        "else mean; a layer-attention name the model has no trained module for starts untrained",
    )
    p.add_argument("--batch-size", type=int, default=64, help="most sequences in one batch")
    p.add_argument("--max-tokens", type=int, default=16384, help="most padded tokens in one batch")
    p.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="truncate longer inputs (default: a sentence-transformers model's max_seq_length, else none)",
    )
    p.add_argument("--normalize", action="store_true", help="L2-normalise the pooled embeddings")
    p.add_argument(
        "--include",
        nargs="+",
        choices=["pooled", "mean", "per_residue", "bos"],
        default=None,
        help="what to write (default pooled: `embeddings` by --pooling, today's file); mean, per_residue "
        "and bos (ESM's extract: residue mean, every residue with ids kept and special tokens dropped, "
        "the <cls> state) for each of --layers, as mean_L<l>, per_residue_L<l> (rows offsets[i]:offsets[i+1]) "
        "and bos_L<l>",
    )
    p.add_argument(
        "--per-residue", action="store_true", help="add per_residue to --include (pooled, unless given)"
    )
    p.add_argument(
        "--layers",
        nargs="+",
        type=int,
        default=None,
        help="layers of mean, per_residue and bos, as ESM's repr_layers: 0 the embedding output, -1 the "
        "last (default -1); written resolved (-1 of 6 layers: _L6)",
    )
    p.add_argument(
        "--residue-dtype",
        choices=["float32", "float16"],
        default="float32",
        help="of per_residue vectors (float16 halves the largest array)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from the chunks it finished (OUTPUT.parts/), every setting the "
        "same but --batch-size and --max-tokens; refused, naming the difference, otherwise",
    )
    p.add_argument(
        "--chunk-size",
        type=int,
        default=4096,
        help="records embedded and written at a time: bounds memory (per_residue chunks also end at 2^27 "
        "values) and what an interruption loses",
    )
    p.set_defaults(func=_embed)

    p = commands.add_parser(
        "evaluate",
        help="a model, baseline or stored embeddings on registered tasks (go-mf, knn, link, "
        "go-synonym-search, ...; --list names them all)",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="saved model directory, `minilm`, baseline:aac|kmer|kmer3|tfidf|bm25|mmseqs|naive, lstm:DIR, "
        "or a .npz from `seqstruct embed` (vectors by record id)",
    )
    p.add_argument("options", nargs="*", help="task and method options key=value, e.g. min_count=10 lr=3e-5")
    p.add_argument("--list", action="store_true", help="list the tasks and methods, one line each")
    p.add_argument(
        "--data",
        default=None,
        help="prepared dataset directory (`data prepare`, `synth`; default data/prepared/<the task's dataset>)",
    )
    p.add_argument("--task", nargs="+", default=["knn", "link"], help="task names (see --list)")
    p.add_argument("--mode", choices=["probe", "finetune"], default="probe", help="how an encoder is used")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 for stochastic methods (finetune)")
    p.add_argument("--label", nargs="+", default=None, help="knn: label columns (columns=; default all)")
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="default: the model's own saved pooling (trained layer attention included), else mean; "
        "ignored for a .npz and for baselines",
    )
    p.add_argument("--k", type=int, default=None, help="knn: neighbours that vote (neighbours=; default 3)")
    p.add_argument(
        "--metric", choices=["cosine", "euclidean"], default=None, help="knn, link (default cosine)"
    )
    p.add_argument("-o", "--output", default=None, help="directory for <task>.json and <task>.md")
    p.add_argument("--batch-size", type=int, default=None, help="most sequences in one batch (default 64)")
    p.add_argument("--max-length", type=int, default=None, help="truncate longer inputs (default: none)")
    p.set_defaults(func=_evaluate)

    p = commands.add_parser(
        "demo",
        help="MLM vs structure-inducing pretraining on the embedded Swiss-Prot sample, probed on its tasks",
    )
    p.add_argument("-o", "--output-dir", default=None, help="default: runs/demo")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the demo config")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming an earlier demo")
    p.add_argument(
        "--data",
        default=None,
        help="an already prepared swissprot-go directory (default: the embedded sample)",
    )
    p.set_defaults(func=_demo)

    p = commands.add_parser(
        "synth",
        help="synthetic graph dataset with a sequence per node: cliques | manifold | topology (the "
        "`data prepare` recipes of the same names, written to -o)",
    )
    p.add_argument("name", help="generator: cliques | manifold | topology (seqstruct.data.synthetic)")
    p.add_argument("-o", "--output-dir", required=True, help="prepared dataset directory to write")
    # argparse takes positionals only before an option: `synth NAME key=value -o DIR`, as for `demo`.
    p.add_argument(
        "overrides", nargs="*", help="key=value generator config overrides (before -o), e.g. seed=1"
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    p.set_defaults(func=_synth)

    data = commands.add_parser("data", help="prepared datasets: splits, labels and graph in one layout")
    actions = data.add_subparsers(dest="data", required=True)
    p = actions.add_parser("prepare", help="run a dataset recipe (see `seqstruct data list`)")
    p.add_argument("name", help="recipe, e.g. go-text, wordnet, files")
    # Positionals before options, as for `synth`: `data prepare NAME key=value -o DIR`.
    p.add_argument(
        "options", nargs="*", help="key=value recipe options (YAML values; before -o), e.g. seed=1"
    )
    p.add_argument("-o", "--output", default=None, help="directory to write (default: data/prepared/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty directory")
    p.set_defaults(func=_data_prepare)
    p = actions.add_parser("list", help="the dataset recipes and their options")
    p.set_defaults(func=_data_list)
    p = actions.add_parser(
        "align", help="how well a graph predicts each label column (before spending compute on it)"
    )
    p.add_argument("dataset", help="a prepared dataset directory")
    p.add_argument("--graph", default=None, help="an edge list over its ids (default: its graph.tsv)")
    p.add_argument("--columns", nargs="+", default=None, help="label columns (default: all of them)")
    p.add_argument("--draws", type=int, default=20, help="random graphs to compare against (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=_data_align)

    p = commands.add_parser(
        "compare", help="pretraining arms x seeds on one graph dataset, evaluated without fine-tuning"
    )
    p.add_argument("config", help="YAML, e.g. src/seqstruct/configs/compare-manifold.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. 'synth_overrides=[shape=torus]'")
    p.set_defaults(func=_compare)

    p = commands.add_parser(
        "curve", help="learning curves: pretrained encoders vs an LSTM from scratch as labelled data grows"
    )
    p.add_argument("config", help="YAML, e.g. src/seqstruct/configs/curve-wordnet.yaml")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. 'seeds=[0]' train_size=2000")
    p.add_argument(
        "--overwrite", action="store_true", help="run finished cells again instead of reusing them"
    )
    p.set_defaults(func=_curve)

    p = commands.add_parser(
        "report", help="one offline HTML page with the result tables (*.md) and plots (*.png) of runs"
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run or result directories, searched recursively")
    p.add_argument("-o", "--output", required=True, help="the HTML file to write, e.g. report.html")
    p.add_argument("--title", default="seqstruct report", help="the page's title")
    p.set_defaults(func=_report)

    add_bench_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # FastaError, ConfigError among them
        if not is_user_error(err):
            raise  # a bug (a library's ValueError from our call): its whole traceback
        # One line for the user; the traceback with -v, for when the message is not enough.
        logging.getLogger("seqstruct").debug("traceback", exc_info=True)
        print(f"seqstruct {args.command}: error: {err}", file=sys.stderr)
        return 2
    if "torch" in sys.modules:  # a torchrun rank's Trainer opened a process group: closed before exit
        from seqstruct.training.arguments import close_process_group

        close_process_group()
    return 0


_PACKAGE = Path(__file__).resolve().parent


def is_user_error(err: BaseException) -> bool:
    """Whether `err` reports bad input (one line to the user) rather than a bug (a traceback): files
    missing or in the way, and the ValueErrors seqstruct raises itself, which name the setting or
    record at fault. A ValueError raised inside numpy, torch or transformers is a call we got wrong."""
    from seqstruct.config import ConfigError
    from seqstruct.data.fasta import FastaError

    if not isinstance(err, ValueError) or isinstance(err, (FastaError, ConfigError)):
        return True
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE)


if __name__ == "__main__":
    sys.exit(main())
