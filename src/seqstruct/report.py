"""Reports, from the files runs wrote: a pretraining run's one-page summary (markdown + loss-curve PNG),
learning-curve plots, and one offline HTML page gathering the tables and plots of any runs."""

from __future__ import annotations

import base64
import csv
import fnmatch
import json
import logging
import math
import mimetypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

import markdown
import matplotlib
import numpy as np
from markdown.treeprocessors import Treeprocessor

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter  # noqa: E402

from seqstruct.evaluation.extrapolation import CAP, HORIZON, PowerLaw  # noqa: E402
from seqstruct.io import atomic_open, atomic_path  # noqa: E402

logger = logging.getLogger(__name__)


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of a run's log.csv with numeric cells as floats and empty cells dropped."""
    with open(path, encoding="utf-8") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def plot_loss_curve(rows: list[dict[str, float]], path: Path, baseline_nll: float | None = None) -> None:
    """Training loss and held-out loss against optimiser steps, with the unigram baseline's held-out loss."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    heldout = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss (80/10/10 masking)")
    if heldout:
        ax.plot(*zip(*heldout, strict=True), "o-", label="held-out loss (all <mask>)")
    if baseline_nll is not None:
        ax.axhline(baseline_nll, color="grey", linestyle="--", label="unigram baseline, held-out")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("masked-LM cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _fmt(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _structure_lines(structure: dict[str, Any] | None) -> list[str]:
    """The summary's structure section: the structure loss against its chance value (what an embedding
    that ignores the graph scores), in plain words when the run never left it, and held-out link MRR."""
    if not structure or not structure.get("weight"):
        return []
    lines = [f"## Structure-inducing loss ({structure['loss']}, λ = {structure['weight']})", ""]
    loss, chance, best = (structure.get(key) for key in ("final_loss", "chance", "best_loss_to_chance"))
    cannot = (
        "the encoder did not learn the graph, so this run cannot show whether structure-inducing "
        "pretraining helps or hurts; it shows only that this loss did not train."
    )
    if loss is None or chance is None:
        lines.append("No structure loss was logged (fewer steps than `train.logging_steps`).")
    elif structure.get("left_chance"):
        lines.append(
            f"The structure loss left its chance value: {_fmt(loss)} at the last logged step against "
            f"{_fmt(chance)} for an embedding that ignores the graph ({_fmt(loss / chance, 2)} of it)."
        )
    elif best is not None and best < structure["left_chance_threshold"]:
        lines.append(
            f"**The structure loss fell back to chance.** It reached {_fmt(best, 2)} of its chance value "
            f"at step {structure.get('best_step')}, but at the last logged step it is {_fmt(loss)}, "
            f"{_fmt(loss / chance, 2)} of the {_fmt(chance)} that an embedding ignoring the graph scores: "
            + cannot
        )
    else:
        lines.append(
            f"**The structure loss never left chance.** At the last logged step it is {_fmt(loss)}, "
            f"{_fmt(loss / chance, 2)} of the {_fmt(chance)} that an embedding ignoring the graph scores "
            f"(at best {_fmt(best, 2)}): " + cannot
        )
    if structure.get("link_mrr") is not None:
        lines += [
            "",
            f"Held-out link retrieval at the last step (`eval_link_mrr`, {structure.get('link_queries')} "
            f"held-out proteins querying by cosine): MRR {_fmt(structure['link_mrr'])}.",
        ]
    return [*lines, ""]


def pretrain_summary(run_dir: str | Path, extra: dict[str, str] | None = None) -> Path:
    """Write `summary.md` and `loss_curve.png` into a pretraining run directory; returns the summary path."""
    run = Path(run_dir)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    model, base = metrics["heldout"], metrics["unigram_baseline"]
    plot_loss_curve(read_log(run / "log.csv"), run / "loss_curve.png", math.log(base["perplexity"]))
    tokens, seconds = metrics.get("train_tokens") or 0, metrics.get("train_runtime_s") or math.nan
    lines = [
        f"# Pretraining summary: `{run}`",
        "",
        f"Encoder with {metrics['parameters']:,} parameters, {metrics['steps']} steps on "
        f"{metrics['train_proteins']:,} proteins ({tokens:,} tokens, {_fmt(seconds, 0)} s, "
        f"{_fmt(tokens / seconds, 0)} tokens/s, bf16={metrics.get('bf16')}, "
        f"{metrics.get('torch_threads')} CPU threads, world size {metrics.get('world_size')}).",
        "",
        f"## Held-out masked-LM ({metrics['heldout_proteins']:,} proteins, "
        f"{model['masked_tokens']:,} masked residues)",
        "",
        "Every scored residue is replaced by `<mask>`, so accuracy measures prediction from context alone. The "
        f"baseline ignores context: it predicts the most frequent training residue ({base['most_frequent']}) "
        "and scores residues by their training frequency.",
        "",
        "| | masked-token accuracy | perplexity |",
        "|---|---|---|",
        f"| this encoder | {_fmt(model['masked_accuracy'])} | {_fmt(model['perplexity'], 2)} |",
        f"| unigram-frequency baseline | {_fmt(base['masked_accuracy'])} | {_fmt(base['perplexity'], 2)} |",
        "",
        f"Paired on the same positions, with standard errors clustered by protein: accuracy gain "
        f"{model['accuracy_gain']:+.4f} +/- {model['accuracy_gain_se']:.4f}, log-likelihood gain "
        f"{model['nll_gain']:+.4f} +/- {model['nll_gain_se']:.4f} nats per masked residue.",
        "",
        "![training and held-out loss](loss_curve.png)",
        "",
        *_structure_lines(metrics.get("structure")),
        "## Files",
        "",
        "- `config.json`, `model.safetensors`, `tokenizer*.json`: the model in the Hugging Face layout "
        "(`AutoModelForMaskedLM.from_pretrained`)",
        "- `config.yaml`: the resolved run configuration; `metrics.json`, `log.csv`, `tensorboard/`: metrics",
        "- `checkpoints/`: resume points (`--resume`); `heldout.fasta`: the held-out proteins",
    ]
    for name, text in (extra or {}).items():
        lines.append(f"- `{name}`: {text}")
    path = run / "summary.md"
    with atomic_open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------
# Learning curves: score against labelled training examples, one line per arm, one panel per split
# ---------------------------------------------------------------------------------------------------------


def learning_curve_figure(
    points: list[dict[str, Any]],
    metric: str,
    title: str = "",
    fits: Sequence[dict[str, Any]] = (),
    crossings: Sequence[dict[str, Any]] = (),
) -> Figure:
    """The learning-curve figure, unsaved (the caller closes it).

    `points` rows: {"arm", "split", "examples" (mean labelled training examples at that fraction), "mean",
    "std" (nan for one seed), "n" (seeds)}. One panel per split, side by side with a shared y axis; x is
    log-scaled, so the small fractions where pretraining should matter most are not crushed into a corner.
    Arms keep their first-seen order and one colour in every panel; bands are mean ± std where std is finite.
    `fits` and `crossings` (`seqstruct.evaluation.extrapolation.extrapolate`), where given, add each arm's
    fitted law and each n* (`_draw_extrapolation`).
    """
    if not points:
        raise ValueError("no learning-curve points to plot")
    bad = [p for p in points if not p["examples"] > 0]
    if bad:  # a log axis would drop them without a word
        raise ValueError(f"learning-curve points need examples > 0 for the log axis; got {bad[0]}")
    splits = list(dict.fromkeys(p["split"] for p in points))
    arms = list(dict.fromkeys(p["arm"] for p in points))
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    fig, axes = plt.subplots(1, len(splits), figsize=(1.5 + 4.5 * len(splits), 4), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        for arm in arms:
            rows = sorted(
                (p for p in points if p["arm"] == arm and p["split"] == split), key=lambda p: p["examples"]
            )
            if not rows:
                continue
            x = np.array([r["examples"] for r in rows], dtype=float)
            y = np.array([r["mean"] for r in rows], dtype=float)
            std = np.array([r["std"] for r in rows], dtype=float)
            ax.plot(x, y, "o-", color=colours[arm], label=arm)
            finite = np.isfinite(std)
            if finite.any():
                spread = np.where(finite, std, 0.0)
                ax.fill_between(
                    x, y - spread, y + spread, where=finite, color=colours[arm], alpha=0.2, linewidth=0
                )
        n_max = max(p["examples"] for p in points if p["split"] == split)
        own = [f for f in fits if f["split"] == split], [c for c in crossings if c["split"] == split]
        _draw_extrapolation(ax, *own, colours, n_max)
        ax.set_xscale("log")
        # Plain counts (20, 50, 100, 10,000) rather than 2x10^1-style labels, which run into one another;
        # powers of ten from 10^5 on, where an extrapolation reaches.
        ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
        ax.xaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
        ax.set_title(split)
        ax.set_xlabel("labelled training examples")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _count_label(x: float, position: int | None = None) -> str:
    """A major tick of the examples axis (a power of ten): 100, 10,000, then $10^5$ and up."""
    return f"{x:,.0f}" if x < 1e5 else f"$10^{{{math.log10(x):.0f}}}$"


def _draw_extrapolation(
    ax: Any,
    fits: Sequence[dict[str, Any]],
    crossings: Sequence[dict[str, Any]],
    colours: dict[str, str],
    n_max: float,
) -> None:
    """One panel's fitted laws and n*s. Each arm's law is thin and solid over its budgets, dashed beyond them
    out to the panel's furthest n* (× 1.5) or 100× the largest budget, whichever is further (at most 10^7);
    each finite n* (the bootstrap median, or the one fit's) is a dotted line in its arm's colour, its 95%
    interval a bar at the panel's foot. The region beyond 10× the largest budget is shaded: the lines there
    are extrapolations the data do not support."""
    laws = [f for f in fits if f["a"] is not None]
    if not laws:
        return
    stars = [(c, c["median"] if c["draws"] else c["n_star"]) for c in crossings if c["fitted"]]
    stars = [(c, star) for c, star in stars if star is not None]
    right = min(CAP, max([100.0 * n_max] + [1.5 * star for _, star in stars]))
    for fit in laws:
        law, colour = PowerLaw(fit["a"], fit["b"], fit["c"]), colours.get(fit["arm"], "grey")
        inside = np.geomspace(fit["n_min"], fit["n_max"], 50)  # [50]
        beyond = np.geomspace(fit["n_max"], right, 100)  # [100]
        # labels starting with "_" stay out of the legend: the arm is already named by its points
        ax.plot(inside, law(inside), "-", linewidth=0.8, color=colour, label=f"_{fit['arm']} fit")
        ax.plot(beyond, law(beyond), "--", linewidth=1.0, color=colour, label=f"_{fit['arm']} extrapolated")
    if right > HORIZON * n_max:
        label = f"beyond {HORIZON:g}× the largest budget: unsupported"
        ax.axvspan(HORIZON * n_max, right, color="grey", alpha=0.12, linewidth=0, label=label)
    foot = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for i, (crossing, star) in enumerate(stars):
        colour, height = colours.get(crossing["arm"], "grey"), 0.04 + 0.05 * i
        ax.axvline(star, color=colour, linestyle=":", linewidth=1.0, label=f"_n* {crossing['arm']}")
        if crossing["draws"] and crossing["low"] is not None:
            high = min(right, crossing["high"] if crossing["high"] is not None else right)
            bar = {"linewidth": 3, "alpha": 0.5, "solid_capstyle": "butt", "transform": foot}
            ax.plot([crossing["low"], high], [height] * 2, color=colour, label="_interval", **bar)
        ax.annotate(f"n* {crossing['arm']}", (star, height + 0.015), xycoords=foot, fontsize=7, color=colour)


def plot_learning_curve(
    points: list[dict[str, Any]],
    path: Path,
    metric: str,
    title: str = "",
    fits: Sequence[dict[str, Any]] = (),
    crossings: Sequence[dict[str, Any]] = (),
) -> None:
    """Write `learning_curve_figure` as a PNG, atomically."""
    fig = learning_curve_figure(points, metric, title, fits, crossings)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# The HTML report: every result table and plot under some run directories, on one offline page
# ---------------------------------------------------------------------------------------------------------

# Directories that hold resume points, event files or other runs' internals, never results a person reads.
SKIPPED_DIRS = ("checkpoints", "tensorboard", "checkpoint-*", ".*")
# Markdown headings sit under the page's h1 and each section's h2.
_HEADING_SHIFT = 2
# Link schemes kept on the page; any other (javascript:, data:, file:, vbscript:) becomes plain text.
_LINK_SCHEMES = ("http", "https", "mailto")


@dataclass
class Section:
    """One directory of the report: its markdown files (rendered) and PNGs (embedded unless referenced)."""

    root: Path  # the directory given to the report
    path: Path  # this directory
    heading: str  # path relative to root; root's own name for root itself
    anchor: str  # the section's HTML id
    markdown: list[Path] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _skipped(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SKIPPED_DIRS)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def _unique(anchor: str, taken: set[str]) -> str:
    candidate, i = anchor, 1
    while candidate in taken:
        i += 1
        candidate = f"{anchor}-{i}"
    taken.add(candidate)
    return candidate


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    """Whether `path`, symlinks and `..` resolved, lies in one of `roots` (resolved directories)."""
    target = path.resolve()
    return any(target.is_relative_to(root) for root in roots)


def find_sections(dirs: Sequence[str | Path]) -> list[Section]:
    """A section per directory under `dirs` (recursively, sorted) with at least one *.md or *.png file,
    skipping checkpoints/, tensorboard/, checkpoint-*/ and hidden directories, and PNGs that are links to
    files outside `dirs` (with a warning: the page must not carry what was not asked for)."""
    roots = [Path(d) for d in dirs]
    for root in roots:
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
    resolved = [root.resolve() for root in roots]
    sections: list[Section] = []
    taken: set[str] = set()
    seen: set[Path] = set()  # a directory under two of `dirs` is reported once
    for i, root in enumerate(roots):
        name = root.resolve().name or str(root)
        for current, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not _skipped(d))
            here = Path(current)
            if here.resolve() in seen:
                continue
            seen.add(here.resolve())
            visible = sorted(f for f in files if not f.startswith("."))  # dot files: atomic writes in flight
            markdown = [here / f for f in visible if fnmatch.fnmatchcase(f, "*.md")]
            # The summary is the overview of a run: it reads first.
            markdown.sort(key=lambda p: p.name != "summary.md")
            images = [here / f for f in visible if fnmatch.fnmatchcase(f, "*.png")]
            for image in [i for i in images if not _inside(i, resolved)]:
                logger.warning("report: %s links outside %s; not inlined", image, ", ".join(map(str, dirs)))
                images.remove(image)
            if not markdown and not images:
                continue
            rel = here.relative_to(root).as_posix()
            heading = name if rel == "." else rel
            anchor = _unique(f"s{i}-{_slug(heading)}", taken)
            sections.append(Section(root, here, heading, anchor, markdown, images))
    if not sections:
        raise ValueError(
            f"nothing to report in {', '.join(str(r) for r in roots)}: no markdown (*.md) or PNG (*.png) "
            "files outside checkpoints/, tensorboard/, checkpoint-*/ and hidden directories"
        )
    return sections


def _local(url: str) -> str | None:
    """The path of a relative link, or None for a link elsewhere (a scheme, a host, an absolute path) or
    within the page (a fragment alone)."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    return unquote(parts.path)


def _data_uri(path: Path) -> str | None:
    kind = mimetypes.guess_type(path.name)[0]
    if kind is None or not kind.startswith("image/") or not path.is_file():
        return None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


class _Offline(Treeprocessor):
    """Makes one rendered markdown file stand alone and safe on the page: relative images inside the
    report's directories inlined as data URIs (others, symlinks and `..` resolved, left out with a
    warning), links to markdown files of the report turned into in-page anchors (other relative links,
    which would break once the page moves, and links of any scheme but http, https and mailto into plain
    text), remote images into links, headings moved under the section's."""

    def __init__(
        self,
        md: markdown.Markdown,
        source: Path,
        anchors: dict[Path, str],
        used: set[Path],
        roots: Sequence[Path],
    ) -> None:
        super().__init__(md)
        self.source, self.base, self.anchors, self.used, self.roots = (
            source,
            source.parent,
            anchors,
            used,
            roots,
        )

    def run(self, root: ElementTree.Element) -> None:
        for element in root.iter():
            if element.tag == "img":
                self._image(element)
            elif element.tag == "a":
                self._link(element)
            elif re.fullmatch(r"h[1-6]", element.tag):
                element.tag = f"h{min(6, int(element.tag[1]) + _HEADING_SHIFT)}"

    def _image(self, element: ElementTree.Element) -> None:
        src = element.get("src", "")
        path = _local(src)
        if path is None:
            if urlsplit(src).scheme in ("http", "https"):  # no remote resources: the page is offline
                alt = element.get("alt") or src
                element.attrib.clear()
                element.tag, element.text = "a", alt
                element.set("href", src)
            elif not src.startswith("data:image/"):  # an image a browser could only fail on, or worse
                _as_text(element, element.get("alt") or "")
            return
        target = (self.base / path).resolve()
        if not _inside(target, self.roots):
            logger.warning(
                "report: %s: image %s lies outside the report's directories; left out", self.source, src
            )
            _as_text(element, element.get("alt") or "")
            return
        uri = _data_uri(target)
        if uri is not None:
            element.set("src", uri)
            self.used.add(target)

    def _link(self, element: ElementTree.Element) -> None:
        href = element.get("href", "")
        path = _local(href)
        if path is None:
            if urlsplit(href).scheme not in _LINK_SCHEMES and not href.startswith("#"):
                _as_text(element)  # javascript:, data:, file: ... never reach the page as links
            return
        anchor = self.anchors.get((self.base / path).resolve())
        if anchor is not None:
            element.set("href", f"#{anchor}")
        else:
            _as_text(element)


def _as_text(element: ElementTree.Element, text: str | None = None) -> None:
    """Turn a link or image into a plain span (of `text`, else its own text)."""
    element.tag = "span"
    element.attrib.clear()
    if text is not None:
        element.text = text


def _render_markdown(path: Path, anchors: dict[Path, str], used: set[Path], roots: Sequence[Path]) -> str:
    md = markdown.Markdown(extensions=["tables", "fenced_code"])
    # Raw HTML off: HTML blocks and inline tags in a result file are shown as text, escaped, so a
    # <script>, <iframe> or event handler in a .md never runs in the page.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    # After the inline processor (priority 20), which turns link and image syntax into elements.
    md.treeprocessors.register(_Offline(md, path, anchors, used, roots), "seqstruct-offline", 15)
    return md.convert(path.read_text(encoding="utf-8"))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
code, pre { background: #f4f4f4; font-size: 0.9em; }
pre { padding: 0.6rem; overflow-x: auto; }
img { max-width: 100%; }
section { border-top: 2px solid #ddd; margin-top: 2rem; }
.file { border-left: 3px solid #eee; padding-left: 0.8rem; margin: 1rem 0; }
.path, .meta, figcaption { color: #666; font-size: 0.88rem; }
"""


def render_report(
    sections: list[Section], dirs: Sequence[str | Path], title: str = "seqstruct report"
) -> str:
    """The report's HTML: a table of contents, then each section's markdown files and unreferenced PNGs."""
    taken = {s.anchor for s in sections}
    roots = [Path(d).resolve() for d in dirs]
    anchors = {
        p.resolve(): _unique(f"{s.anchor}--{_slug(p.name)}", taken) for s in sections for p in s.markdown
    }
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">Generated {escape(stamp)} from '
        + ", ".join(f"<code>{escape(str(d))}</code>" for d in dirs)
        + ".</p>",
        "<nav><h2>Contents</h2><ul>",
        *(f'<li><a href="#{s.anchor}">{escape(s.heading)}</a></li>' for s in sections),
        "</ul></nav>",
    ]
    for section in sections:
        out += [
            f'<section id="{section.anchor}">',
            f"<h2>{escape(section.heading)}</h2>",
            f'<p class="path"><code>{escape(str(section.path))}</code></p>',
        ]
        used: set[Path] = set()
        for path in section.markdown:
            out += [
                f'<div class="file" id="{anchors[path.resolve()]}">',
                f'<p class="path">{escape(path.name)}</p>',
                _render_markdown(path, anchors, used, roots),
                "</div>",
            ]
        for path in section.images:
            if path.resolve() in used:
                continue
            uri = _data_uri(path)
            out += [
                "<figure>",
                f'<img src="{uri}" alt="{escape(path.name)}">',
                f"<figcaption>{escape(path.name)}</figcaption>",
                "</figure>",
            ]
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def write_report(dirs: Sequence[str | Path], output: str | Path, title: str = "seqstruct report") -> Path:
    """One self-contained HTML page (`output`) with the markdown tables and PNG plots of every run under
    `dirs`; images are inlined, so the page needs no network and survives being moved. Nothing is written
    into the run directories."""
    sections = find_sections(dirs)
    page = render_report(sections, dirs, title)
    output = Path(output)
    with atomic_open(output, "w") as handle:
        handle.write(page)
    return output
