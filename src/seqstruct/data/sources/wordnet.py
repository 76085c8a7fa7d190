"""The `wordnet` recipe: Princeton WordNet 3.0 glosses as a text dataset, with the hypernym graph.

    seqstruct data prepare wordnet [root=/usr/share/wordnet] [valid_fraction=0.1] [test_fraction=0.1] [seed=0]

Reads the four data files of Debian's `wordnet-base` (data.noun, data.verb, data.adj, data.adv; format in
wndb(5WN)). A line of a data file is one synset:

    synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] [frames] | gloss

with w_cnt two hex digits, lex_id one hex digit, p_cnt three decimal digits, each pointer four fields
(symbol, target offset, target pos, source/target word numbers) and, in data.verb only, `f_cnt` then
`+ f_num w_num` per frame. Lines that begin with two spaces are the licence header.

Records: `id` is the file's part-of-speech letter and the offset, e.g. n02084071 for "dog". Adjective
satellites (ss_type 's') live in data.adj and keep the id letter 'a': an offset is only unique within one
file, and pointers name their target's file by 'a' or 's' interchangeably, so the file letter is what
makes an id found from a pointer; the `pos` column keeps the ss_type (n, v, a, s, r). `text` is the gloss
(definition and examples as WordNet writes them), `lemmas` the synset's words with '_' read as a space
and adjective position markers such as "(p)" removed, `supersense` the lexicographer file, e.g.
noun.animal. The graph is the hypernym (`@`) and instance hypernym (`@i`) pointers, undirected.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from seqstruct.data.prepared import DatasetInfo, Prepared, register_recipe
from seqstruct.data.sources.files import file_digest, graph_from_pairs, tally, write_random_split

if TYPE_CHECKING:
    from datasets import Features

logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/usr/share/wordnet")
FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}  # id letter -> data file
SS_TYPES = {"n": ("n",), "v": ("v",), "a": ("a", "s"), "r": ("r",)}  # id letter -> ss_types in its file
HYPERNYMS = ("@", "@i")  # hypernym, instance hypernym
INSTALL_HINT = "install it with `apt-get install -y wordnet-base`, or give root=DIR holding the data.* files"
LICENCE = (
    "WordNet 3.0 licence (Princeton University; permissive: use, copy, modify and distribute, without "
    "fee, keeping the copyright notice and disclaimer; https://wordnet.princeton.edu/license-and-commercial-use)"
)

# The 45 lexicographer files by lex_filenum, as listed in lexnames(5WN) of WordNet 3.0.
LEXNAMES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
)  # fmt: skip


def features() -> Features:
    """The splits' column types (datasets imported here: `seqstruct data list` reads the recipes
    without it)."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "lemmas": List(Value("string")),
            "pos": Value("string"),
            "supersense": Value("string"),
        }
    )


COLUMNS = {
    "lemmas": "list of the synset's words (spaces for '_', adjective markers removed)",
    "pos": "ss_type: n noun, v verb, a adjective, s adjective satellite, r adverb",
    "supersense": "lexicographer file (lexnames(5WN)), e.g. noun.animal",
}
_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: attributive, predicative, postnominal


class WordNetError(ValueError):
    """A malformed WordNet data file; `line` is 1-based."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{self.path}, line {line}: {reason}")

    def __reduce__(self) -> tuple[type[WordNetError], tuple[str, int, str]]:
        return (type(self), (self.path, self.line, self.reason))


@dataclass(frozen=True)
class Synset:
    id: str  # file letter + offset, e.g. n02084071
    pos: str  # ss_type: n v a s r
    supersense: str  # lexicographer file name, e.g. noun.animal
    lemmas: tuple[str, ...]  # "dog", "domestic dog", "Canis familiaris"
    gloss: str  # definition; "examples"
    hypernyms: tuple[str, ...]  # ids the @ and @i pointers name


def _parse(line: str, letter: str, path: Path, number: int) -> Synset:
    """One data line into a Synset; anything that does not fit wndb(5WN) is a WordNetError."""
    fields, bar, gloss = line.partition(" | ")
    if not bar:
        raise WordNetError(path, number, "no ' | ' before the gloss")
    tokens = fields.split()

    def take(position: int, what: str) -> str:
        if position >= len(tokens):
            raise WordNetError(path, number, f"line ends where {what} was expected (field {position + 1})")
        return tokens[position]

    def number_field(position: int, what: str, base: int) -> int:
        raw = take(position, what)
        try:
            return int(raw, base)
        except ValueError:
            raise WordNetError(path, number, f"{what} {raw!r} is not a base-{base} number") from None

    offset = take(0, "synset_offset")
    if not (len(offset) == 8 and offset.isdigit()):
        raise WordNetError(path, number, f"synset_offset {offset!r} is not 8 digits")
    lex_filenum = number_field(1, "lex_filenum", 10)
    if not 0 <= lex_filenum < len(LEXNAMES):
        raise WordNetError(path, number, f"lex_filenum {lex_filenum} is not one of 0..{len(LEXNAMES) - 1}")
    ss_type = take(2, "ss_type")
    if ss_type not in SS_TYPES[letter]:
        raise WordNetError(
            path, number, f"ss_type {ss_type!r}; this file holds {' or '.join(SS_TYPES[letter])}"
        )
    w_cnt = number_field(3, "w_cnt", 16)
    lemmas = tuple(_MARKER.sub("", take(4 + 2 * k, "a word")).replace("_", " ") for k in range(w_cnt))
    position = 4 + 2 * w_cnt
    p_cnt = number_field(position, "p_cnt", 10)
    hypernyms = []
    for k in range(p_cnt):
        symbol = take(position + 1 + 4 * k, "a pointer symbol")
        target = take(position + 2 + 4 * k, "a pointer offset")
        target_pos = take(position + 3 + 4 * k, "a pointer's pos")
        take(position + 4 + 4 * k, "a pointer's source/target")
        if symbol in HYPERNYMS:
            hypernyms.append(("a" if target_pos == "s" else target_pos) + target)
    position += 1 + 4 * p_cnt
    if letter == "v":
        position += 1 + 3 * number_field(position, "f_cnt", 10)
    if position < len(tokens):
        raise WordNetError(path, number, f"unexpected {tokens[position]!r} after the counted fields")
    if position > len(tokens):
        raise WordNetError(path, number, "line ends inside the verb frames")
    gloss = gloss.strip()
    if not gloss:
        raise WordNetError(path, number, "empty gloss")
    return Synset(letter + offset, ss_type, LEXNAMES[lex_filenum], lemmas, gloss, tuple(hypernyms))


def data_path(root: str | Path, letter: str) -> Path:
    """The data file for `letter` (n v a r) under `root`, gzipped or not; FileNotFoundError with the fix."""
    plain = Path(root) / FILES[letter]
    for path in (plain, plain.with_name(plain.name + ".gz")):
        if path.is_file():
            return path
    raise FileNotFoundError(f"WordNet data file {plain} not found; {INSTALL_HINT}")


def iter_synsets(path: str | Path, letter: str) -> Iterator[Synset]:
    """The synsets of one data file (letter n v a r says which), in file order."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    seen: dict[str, int] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith("  ") or not line.strip():
                continue  # licence header
            synset = _parse(line.rstrip("\r\n"), letter, path, number)
            if synset.id in seen:
                raise WordNetError(
                    path, number, f"synset offset {synset.id[1:]} repeats line {seen[synset.id]}"
                )
            seen[synset.id] = number
            yield synset


def read_wordnet(root: str | Path = DEFAULT_ROOT) -> list[Synset]:
    """Every synset of the four data files under `root`: nouns, verbs, adjectives, adverbs."""
    paths = {letter: data_path(root, letter) for letter in FILES}  # all four present before any is read
    return [synset for letter, path in paths.items() for synset in iter_synsets(path, letter)]


def _debian_version(root: Path) -> str:
    """wordnet-base's Debian version, from its changelog when `root` is the packaged directory."""
    changelog = Path("/usr/share/doc/wordnet-base/changelog.Debian.gz")
    if root.resolve() != DEFAULT_ROOT.resolve() or not changelog.is_file():
        return ""
    with gzip.open(changelog, "rt", encoding="utf-8") as handle:
        found = re.match(r"\S+ \(([^)]+)\)", handle.readline())
    return found.group(1) if found else ""


@register_recipe("wordnet")
def prepare_wordnet(
    output: str | Path,
    overwrite: bool = False,
    *,
    root: str | Path = str(DEFAULT_ROOT),
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Prepared:
    """WordNet 3.0 glosses with lemmas, pos and supersense (lexicographer file); hypernym graph."""
    root_path = Path(root or DEFAULT_ROOT)
    synsets = read_wordnet(root_path)
    columns = {
        "id": [s.id for s in synsets],
        "text": [s.gloss for s in synsets],
        "lemmas": [list(s.lemmas) for s in synsets],
        "pos": [s.pos for s in synsets],
        "supersense": [s.supersense for s in synsets],
    }
    pairs = [(s.id, target) for s in synsets for target in s.hypernyms]
    graph, dangling = graph_from_pairs(columns["id"], pairs)
    if dangling:
        # The full WordNet has none; an extract (the test fixtures) keeps lines whole, pointers and all.
        logger.warning(
            "%s: %d hypernym pointers name a synset not in the data files; dropped", root_path, dangling
        )
    files = [data_path(root_path, letter) for letter in FILES]
    version = _debian_version(root_path)
    source = f"Princeton WordNet 3.0{f' (Debian wordnet-base {version})' if version else ''}: " + "; ".join(
        f"{path.resolve()} (sha256 {file_digest(path)})" for path in files
    )
    counts = {"synsets": len(synsets), "hypernym pointers to absent synsets (dropped)": dangling}
    counts |= tally(columns["pos"], "pos: ") | tally(columns["supersense"], "supersense: ")
    info = DatasetInfo(
        name="wordnet",
        kind="text",
        recipe="wordnet",
        config={
            "root": str(root_path.resolve()),
        },
        columns=dict(COLUMNS),
        graph={"meaning": "WordNet hypernym (@) and instance hypernym (@i) pointers, undirected"},
        source=source,
        licence=LICENCE,
        counts=counts,
    )
    method = (
        "One record per synset of data.{noun,verb,adj,adv}; text = the gloss. Ids are the file's letter "
        "(n, v, a, r; satellites stay 'a') and the synset offset. "
    )
    fractions = (valid_fraction, test_fraction, seed)
    return write_random_split(output, info, columns, features(), graph, method, fractions, overwrite)
