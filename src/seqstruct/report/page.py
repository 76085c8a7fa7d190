"""The HTML report: every result table (*.md) and plot (*.png) under some run directories on one offline
page, images inlined, raw HTML and unsafe links neutralised."""

from __future__ import annotations

import base64
import fnmatch
import logging
import mimetypes
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

import markdown
from markdown.treeprocessors import Treeprocessor

from seqstruct.io import atomic_open

logger = logging.getLogger(__name__)


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
