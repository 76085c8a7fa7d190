"""Prepared datasets: the directory `seqstruct data prepare NAME` writes and every task reads.

One layout for proteins and text, so that a task, a pretraining run and a user's own files meet in the
same place:

    DIR/
      dataset.json       DatasetInfo: name, kind, recipe and its config, split sizes, label columns,
                         graph statistics, provenance, licence
      README.md          the card: the same facts for a person, plus what the recipe says of its method
      splits/            a `datasets.DatasetDict` (save_to_disk, Arrow, memory-mapped). Every split has
                         `id` (str, unique across splits) and `text` (str: a protein sequence or a
                         sentence), then the recipe's label columns
      graph.tsv          edges with both ends in `train` (pretraining's `structure.graph`)
      graph_heldout.tsv  edges with an end outside `train` (held-out link retrieval); absent without edges
      heldout_nodes.txt  ids outside `train` that have an edge (the link-retrieval queries)
      train.fasta        protein datasets only: the `train` split, for `seqstruct pretrain` (data.fasta)

A recipe may add its own files (the synthetic recipes add sequences.fasta, every node's sequence, for
transductive pretraining on a graph whose held-out nodes' sequences are seen but not their edges).

Split names are identifiers (`datasets` refuses '-'): train, valid, test for text; protein datasets split
by homology into train, valid, test_close and test_remote. A directory is written under a temporary name
and swapped into place (`seqstruct.io.swap_in`: the old one renamed aside, the new one in, then the old one
removed), so an interrupted prepare leaves the old dataset or the new one, never a half-deleted one. One
process writes a dataset at a time: `DIR`'s lock (`.DIR.lock` beside it) is held from the recipe's start,
and what a killed writer left (a staging directory, an old dataset set aside) is tidied when it is taken.

Recipes register with `@register_recipe(NAME)`; `prepare(NAME, output, **options)` runs one.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqstruct.data.fasta import FastaRecord, write_fasta
from seqstruct.data.graph import Graph, write_edge_list
from seqstruct.io import DirectoryLock, atomic_open, recover_replaced, staging_directory, swap_in

if TYPE_CHECKING:  # imported where used: `seqstruct data list` reads the recipes without datasets
    from datasets import Dataset, DatasetDict

logger = logging.getLogger(__name__)

KINDS = ("protein", "text")
DEFAULT_ROOT = Path("data/prepared")  # `data prepare NAME` writes DEFAULT_ROOT/NAME unless told otherwise
TRAIN = "train"
FORMAT_VERSION = 1


@dataclass
class DatasetInfo:
    """What dataset.json holds."""

    name: str  # the dataset's name, e.g. swissprot-go
    kind: str  # protein | text: which tokenizers and baselines apply
    recipe: str  # the recipe that wrote it
    config: dict[str, Any]  # the recipe's resolved options
    splits: dict[str, int] = field(default_factory=dict)  # split -> records
    columns: dict[str, str] = field(default_factory=dict)  # label column -> what it holds
    graph: dict[str, Any] = field(default_factory=dict)  # edges, degree statistics, what an edge means
    source: str = ""  # provenance: package, version, files read
    licence: str = ""  # upstream licence(s) of the derived data
    counts: dict[str, Any] = field(default_factory=dict)  # anything else worth a number in the card
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True)
class Prepared:
    """A prepared dataset, opened."""

    path: Path
    info: DatasetInfo
    splits: DatasetDict

    def split(self, name: str) -> Dataset:
        if name not in self.splits:
            raise KeyError(f"{self.path}: no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]

    @property
    def graph_path(self) -> Path:
        return self.path / "graph.tsv"

    @property
    def heldout_graph_path(self) -> Path:
        return self.path / "graph_heldout.tsv"


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def _check_splits(splits: Mapping[str, Dataset], kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if TRAIN not in splits:
        raise ValueError(f"a prepared dataset needs a {TRAIN!r} split; got {sorted(splits)}")
    seen: dict[str, str] = {}
    for name, split in splits.items():
        missing = {"id", "text"} - set(split.column_names)
        if missing:
            raise ValueError(f"split {name!r} lacks columns {sorted(missing)}")
        for record_id in split["id"]:
            if record_id in seen:
                raise ValueError(f"id {record_id!r} is in split {seen[record_id]!r} and in {name!r}")
            seen[record_id] = name


def split_graph(graph: Graph, train_ids: Iterable[str]) -> tuple[Graph, Graph, list[str]]:
    """(the graph induced on the train ids, edges with an end outside train, the outside ids that have an
    edge). The first is over train nodes only, so its degree statistics describe what pretraining sees."""
    train = set(train_ids)
    inside = np.array([node in train for node in graph.nodes], dtype=bool)
    both = inside[graph.edges].all(axis=1) if len(graph.edges) else np.zeros(0, dtype=bool)

    def part(keep: np.ndarray) -> Graph:
        return Graph(graph.nodes, graph.edges[keep], graph.weights[keep], graph.directed)

    touched = np.zeros(len(graph.nodes), dtype=bool)
    touched[graph.edges[~both].ravel()] = True
    heldout = [node for node, out, hit in zip(graph.nodes, ~inside, touched, strict=True) if out and hit]
    return graph.subgraph(np.flatnonzero(inside)), part(~both), heldout


def degree_stats(graph: Graph) -> dict[str, float]:
    degrees = graph.degrees()
    if len(degrees) == 0:
        return {"nodes": 0, "edges": 0}
    return {
        "nodes": len(graph.nodes),
        "edges": len(graph.edges),
        "isolated": int((np.bincount(graph.edges.ravel(), minlength=len(graph.nodes)) == 0).sum()),
        "degree_min": int(degrees.min()),
        "degree_median": float(np.median(degrees)),
        "degree_mean": float(degrees.mean()),
        "degree_p99": float(np.percentile(degrees, 99)),
        "degree_max": int(degrees.max()),
    }


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return str(value)


def card(info: DatasetInfo, method: str = "") -> str:
    """README.md of a prepared dataset: counts, splits, columns, graph, provenance, licence, method."""
    out = [
        f"# {info.name}",
        "",
        f"A {info.kind} dataset prepared by `seqstruct data prepare {info.recipe}`.",
        "",
    ]
    out += ["## Splits", "", "| split | records |", "|---|---:|"]
    out += [f"| {name} | {count:,} |" for name, count in info.splits.items()]
    if info.columns:
        out += ["", "## Label columns", "", "| column | meaning |", "|---|---|"]
        out += [f"| `{name}` | {meaning} |" for name, meaning in info.columns.items()]
    if info.graph:
        flat = {key: value for key, value in info.graph.items() if not isinstance(value, dict)}
        nested = {key: value for key, value in info.graph.items() if isinstance(value, dict)}
        out += ["", "## Graph", "", "| | |", "|---|---|"]
        out += [f"| {key} | {_cell(value)} |" for key, value in flat.items()]
        if nested:  # degree statistics of the whole graph and of its train part, side by side
            stats = list(dict.fromkeys(stat for value in nested.values() for stat in value))
            out += ["", "| statistic | " + " | ".join(nested) + " |", "|---|" + "---:|" * len(nested)]
            out += [
                f"| {stat} | " + " | ".join(_cell(value.get(stat, "")) for value in nested.values()) + " |"
                for stat in stats
            ]
    if info.counts:
        out += ["", "## Counts", "", "| | |", "|---|---|"]
        out += [f"| {key} | {value} |" for key, value in info.counts.items()]
    if method:
        out += ["", "## Method", "", method.strip()]
    out += [
        "",
        "## Provenance",
        "",
        info.source or "(not recorded)",
        "",
        "## Licence",
        "",
        info.licence or "(not recorded)",
    ]
    out += ["", "## Configuration", "", "```json", json.dumps(info.config, indent=2, sort_keys=True), "```"]
    return "\n".join(out) + "\n"


# The datasets whose lock this thread of work already holds: `prepare` takes it for the whole recipe and
# `write_prepared`, which recipes also call directly, takes it only when no caller did (a second flock
# from the same process would wait on the first).
_LOCKED: ContextVar[frozenset[Path]] = ContextVar("locked_datasets", default=frozenset())


@contextmanager
def dataset_lock(output: str | Path) -> Iterator[None]:
    """Hold the lock of dataset directory `output` (DirectoryBusy if another live process holds it; a
    dead one's is taken over) and tidy what an interrupted writer left beside it."""
    output = Path(output)
    key = output.absolute()
    if key in _LOCKED.get():
        yield
        return
    with DirectoryLock.beside(output):
        recover_replaced(output)
        token = _LOCKED.set(_LOCKED.get() | {key})
        try:
            yield
        finally:
            _LOCKED.reset(token)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse an output that is a file, or a non-empty directory without `overwrite`."""
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} is a file; a prepared dataset is a directory")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} exists and is not empty; choose another directory or overwrite")


def write_prepared(
    output: str | Path,
    info: DatasetInfo,
    splits: Mapping[str, Dataset],
    graph: Graph | None = None,
    method: str = "",
    overwrite: bool = False,
    write_extra: Callable[[Path], None] | None = None,
    heldout_nodes: Sequence[str] | None = None,
) -> Prepared:
    """Write a prepared dataset to `output` (layout in the module docstring) and return it opened.

    `graph` is over any ids of the splits (its nodes may be a subset); it is cut into graph.tsv and
    graph_heldout.tsv along the train split. heldout_nodes.txt lists `heldout_nodes` where given (a
    recipe that chose its held-out nodes, some of which may have no edge), else the ids outside train
    that have an edge. An existing non-empty `output` is refused unless `overwrite`.
    `write_extra(directory)` writes a recipe's own files (a corpus's shards) into the directory before it
    is renamed into place, so that they arrive with the rest or not at all.
    """
    output = Path(output)
    with dataset_lock(output):
        check_output(output, overwrite)
        return _write_prepared(output, info, splits, graph, method, write_extra, heldout_nodes)


def _write_prepared(
    output: Path,
    info: DatasetInfo,
    splits: Mapping[str, Dataset],
    graph: Graph | None,
    method: str,
    write_extra: Callable[[Path], None] | None,
    heldout_nodes: Sequence[str] | None,
) -> Prepared:
    empty = [name for name, split in splits.items() if len(split) == 0]
    if TRAIN in empty:
        raise ValueError(f"{output}: the {TRAIN!r} split is empty")
    if empty:  # `load_from_disk` cannot read a zero-row split back
        logger.warning("%s: leaving out the empty splits %s", output, empty)
        splits = {name: split for name, split in splits.items() if len(split)}
    from datasets import DatasetDict

    _check_splits(splits, info.kind)
    info.splits = {name: len(split) for name, split in splits.items()}
    staging = staging_directory(output)
    try:
        DatasetDict(dict(splits)).save_to_disk(str(staging / "splits"))
        if graph is not None and len(graph.edges):
            training, heldout, queries = split_graph(graph, splits[TRAIN]["id"])
            queries = list(heldout_nodes) if heldout_nodes is not None else queries
            info.graph = {
                **info.graph,
                "all": degree_stats(graph),
                "train": degree_stats(training),
                "heldout_edges": len(heldout.edges),
                "heldout_nodes": len(queries),
            }
            write_edge_list(training, staging / "graph.tsv")
            if len(heldout.edges):
                write_edge_list(heldout, staging / "graph_heldout.tsv")
            with atomic_open(staging / "heldout_nodes.txt") as handle:
                handle.writelines(node + "\n" for node in queries)
        if info.kind == "protein":
            train = splits[TRAIN]
            write_fasta(
                (FastaRecord(i, "", s) for i, s in zip(train["id"], train["text"], strict=True)),
                staging / "train.fasta",
            )
        if write_extra is not None:
            write_extra(staging)
        with atomic_open(staging / "dataset.json") as handle:
            json.dump(dataclasses.asdict(info), handle, indent=2)
            handle.write("\n")
        with atomic_open(staging / "README.md") as handle:
            handle.write(card(info, method))
        swap_in(staging, output)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("wrote %s dataset %s to %s: %s", info.kind, info.name, output, info.splits)
    return load_prepared(output)


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


def load_prepared(path: str | Path) -> Prepared:
    """Open a prepared dataset directory (memory-mapped splits; nothing is copied)."""
    path = Path(path)
    meta = path / "dataset.json"
    if not meta.is_file() or not (path / "splits").is_dir():
        raise FileNotFoundError(
            f"{path}: not a prepared dataset (expected dataset.json and splits/, as "
            "`seqstruct data prepare` writes them)"
        )
    raw = json.loads(meta.read_text(encoding="utf-8"))
    known = {f.name for f in dataclasses.fields(DatasetInfo)}
    info = DatasetInfo(**{key: value for key, value in raw.items() if key in known})
    if info.format_version > FORMAT_VERSION:
        raise ValueError(f"{meta}: format version {info.format_version} is newer than this seqstruct reads")
    from datasets import DatasetDict, load_from_disk

    splits = load_from_disk(str(path / "splits"))
    if not isinstance(splits, DatasetDict):
        raise ValueError(f"{path / 'splits'}: expected a DatasetDict")
    return Prepared(path, info, splits)


# ---------------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------------

Recipe = Callable[..., Prepared]  # recipe(output, overwrite=..., **options) -> Prepared
RECIPES: dict[str, Recipe] = {}


def register_recipe(name: str) -> Callable[[Recipe], Recipe]:
    """Decorator: make `recipe` available as `seqstruct data prepare NAME`."""

    def wrap(recipe: Recipe) -> Recipe:
        if name in RECIPES and RECIPES[name] is not recipe:
            raise ValueError(f"a recipe named {name!r} is already registered")
        RECIPES[name] = recipe
        return recipe

    return wrap


def _load_builtin_recipes() -> None:
    # Imported here, not at the top: each recipe module imports this one to register itself.
    from seqstruct.data import synthetic  # noqa: F401  (cliques, manifold, topology)
    from seqstruct.data.sources import files, go_text, swissprot_go, swissprot_pretrain, wordnet  # noqa: F401


def recipes() -> dict[str, Recipe]:
    _load_builtin_recipes()
    return dict(RECIPES)


def recipe_options(recipe: Recipe) -> dict[str, Any]:
    """A recipe's options and their defaults: its keyword parameters other than `output` and `overwrite`."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        p.name: p.default
        for p in inspect.signature(recipe).parameters.values()
        if p.kind in kinds and p.name not in ("output", "overwrite")
    }


def _checked_options(name: str, recipe: Recipe, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` checked against the recipe's signature, scalars brought to the types of its defaults.

    Command-line values arrive parsed as YAML: `name=2024` as an int and `graph=` as None where the recipe
    wants strings, `valid_fraction=0` as an int where it wants a float. Those are converted, as is a Path
    given from Python for a string option; a value that cannot stand for the default's type (seed=0.5, a
    list for a string) is an error, as is an unknown name.
    """
    known = recipe_options(recipe)
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(f"{key}={value!r}" for key, value in known.items())
        raise ValueError(f"recipe {name!r} has no option {', '.join(unknown)}; its options are {listed}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        default = known[key]
        if isinstance(default, str) and (value is None or isinstance(value, (int, float, str, os.PathLike))):
            value = "" if value is None else str(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(default, (str, bool, int, float)) and type(value) is not type(default):
            raise ValueError(
                f"recipe {name!r}: option {key}={value!r} should be a {type(default).__name__} "
                f"(default {default!r})"
            )
        checked[key] = value
    return checked


def prepare(
    name: str, /, output: str | Path | None = None, overwrite: bool = False, **options: Any
) -> Prepared:
    """Run recipe `name`, writing to `output` (default data/prepared/NAME).

    `name` is positional-only so that a recipe may have an option called `name` (the `files` recipe does).
    An option the recipe does not take is a ValueError listing those it does (see `_checked_options`)."""
    available = recipes()
    if name not in available:
        raise ValueError(f"unknown dataset recipe {name!r}; expected one of {sorted(available)}")
    recipe = available[name]
    checked = _checked_options(name, recipe, options)
    target = Path(output) if output else DEFAULT_ROOT / name
    with dataset_lock(target):
        check_output(target, overwrite)  # before the recipe's work, not after it
        return recipe(target, overwrite=overwrite, **checked)
