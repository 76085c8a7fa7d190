"""The HTML report, on tiny trees of run outputs made here."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from seqstruct.cli import main
from seqstruct.report import find_sections, write_report

# ---------------------------------------------------------------------------------------------------------
# The HTML report
# ---------------------------------------------------------------------------------------------------------


def _png(path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(path, format="png", dpi=30)
    plt.close(fig)
    return path


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    """Two run directories as the commands leave them, with things the report must leave out."""
    one, two = tmp_path / "runs" / "pretrain-mlm", tmp_path / "runs" / "compare"
    (one / "eval").mkdir(parents=True)
    _png(one / "loss_curve.png")
    (one / "summary.md").write_text(
        "# Pretraining summary\n\n| | masked-token accuracy |\n|---|---|\n| this encoder | 0.412 |\n\n"
        "![training and held-out loss](loss_curve.png)\n\n"
        "Evaluations: [go-mf](eval/go-mf.md), [gone](eval/nowhere.md), [site](https://example.org/).\n"
    )
    (one / "eval" / "go-mf.md").write_text("| split | fmax |\n|---|---|\n| test_remote | 0.377 |\n")
    (one / "eval" / "protein-link.md").write_text("```\nrecall@10 0.251\n```\n")
    (one / "model.safetensors").write_bytes(b"weights")
    for hidden in ("checkpoints", "checkpoints/checkpoint-4", "checkpoint-2", ".cache", "tensorboard"):
        (one / hidden).mkdir(exist_ok=True)
        (one / hidden / "secret.md").write_text("| secret | 1 |\n|---|---|\n| leak | 99.999 |\n")
    _png(one / "tensorboard" / "leak.png")
    (two / "seed0" / "mlm").mkdir(parents=True)
    (two / "results.md").write_text(
        "| figure | mlm | structure |\n|---|---|---|\n| go-mf fmax | 0.301 | 0.333 |\n"
    )
    (two / "seed0" / "mlm" / "notes.md").write_text("Back to the [results](../../results.md).\n")
    _png(two / "seed0" / "mlm" / "scaling.png")  # referenced by no markdown: embedded on its own
    return [one, two]


def test_report_gathers_tables_and_inlines_plots(runs, tmp_path) -> None:
    out = write_report(runs, tmp_path / "out" / "report.html", title="tiny <runs>")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<title>tiny &lt;runs&gt;</title>" in page
    for cell in ("0.412", "test_remote", "0.377", "recall@10 0.251", "go-mf fmax", "0.333"):
        assert cell in page, cell
    assert "<table>" in page and "<td>0.377</td>" in page
    # Both images inline, as data URIs; neither file is referenced by name as a source.
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 2
    assert not re.search(r'src="[^"]*\.png"', page)
    assert "<figcaption>scaling.png</figcaption>" in page and "loss_curve.png</figcaption>" not in page
    # Nothing from checkpoints, tensorboard, checkpoint-* or hidden directories, nor weights.
    assert "secret" not in page and "99.999" not in page and "leak" not in page and "safetensors" not in page
    assert "checkpoint" not in page and "tensorboard" not in page
    assert "http://" not in page.replace("https://example.org/", "") and "<link" not in page

    # Sections: each directory with markdown or PNGs, headed relative to its DIR; the TOC links to them.
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings == ["Contents", "pretrain-mlm", "eval", "compare", "seed0/mlm"]
    section_ids = re.findall(r'<section id="([^"]+)">', page)
    toc = re.search(r"<nav>(.*?)</nav>", page, re.S).group(1)
    assert re.findall(r'href="#([^"]+)"', toc) == section_ids and len(set(section_ids)) == 4
    assert [s.anchor for s in find_sections(runs)] == section_ids

    # Links between markdown files of the report become in-page anchors; others become plain text.
    ids = set(re.findall(r'id="([^"]+)"', page))
    local = re.findall(r'href="#([^"]+)"', page.split("</nav>", 1)[1])
    assert len(local) == 2 and set(local) <= ids
    assert "<span>gone</span>" in page and "nowhere.md" not in page
    assert '<a href="https://example.org/">site</a>' in page
    # Markdown headings sit below the section headings.
    assert "<h3>Pretraining summary</h3>" in page and "<h1>Pretraining summary" not in page


def test_report_errors_name_what_is_missing(runs, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: no such directory"):
        write_report([runs[0], tmp_path / "nowhere"], tmp_path / "r.html")
    empty = tmp_path / "empty"
    (empty / "checkpoints").mkdir(parents=True)
    (empty / "checkpoints" / "x.md").write_text("hidden\n")
    (empty / "log.csv").write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match=r"nothing to report in .*empty: no markdown \(\*\.md\) or PNG"):
        write_report([empty], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_report_cli_end_to_end(runs, tmp_path, capsys) -> None:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, runs), "-o", str(out), "--title", "two runs"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}: 4 sections from 2 directories"
    assert "<h1>two runs</h1>" in out.read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert (
        "seqstruct report: error:" in (err := capsys.readouterr().err) and "nowhere: no such directory" in err
    )


# ---------------------------------------------------------------------------------------------------------
# Untrusted content: raw HTML escaped, unsafe links dropped, images only from inside the given directories
# ---------------------------------------------------------------------------------------------------------

HOSTILE = (
    "# Results\n\n"
    "<script>alert('md')</script>\n\n"
    '<iframe src="https://example.org/x"></iframe>\n\n'
    "inline <img src=x onerror=alert(1)> and <b>bold</b>\n\n"
    "[js](javascript:alert(1)) [JS](JaVaScRiPt:alert(2)) [file](file:///etc/passwd) "
    "[site](https://example.org/) [mail](mailto:a@example.org) [top](#results)\n\n"
    "| cell |\n|---|\n| <script>alert('cell')</script> |\n"
)


def test_raw_html_in_a_result_file_is_shown_as_text_and_unsafe_links_as_plain_text(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.md").write_text(HOSTILE, encoding="utf-8")
    page = write_report([run], tmp_path / "report.html").read_text(encoding="utf-8")
    body = page.split("</nav>", 1)[1]
    for tag in ("<script", "<iframe", "<img", "<b>", "javascript:", "JaVaScRiPt:", "file:"):
        assert tag not in body, tag
    assert "<p>inline &lt;img src=x onerror=alert(1)&gt; and &lt;b&gt;bold&lt;/b&gt;</p>" in body
    assert "<p>&lt;script&gt;alert('md')&lt;/script&gt;</p>" in body
    assert '<p>&lt;iframe src="https://example.org/x"&gt;&lt;/iframe&gt;</p>' in body
    assert "<td>&lt;script&gt;alert('cell')&lt;/script&gt;</td>" in body
    assert "<span>js</span> <span>JS</span> <span>file</span>" in body
    assert '<a href="https://example.org/">site</a> <a href="mailto:a@example.org">mail</a>' in body
    assert '<a href="#results">top</a>' in body


def test_only_images_inside_the_given_directories_are_inlined(tmp_path, caplog) -> None:
    run, outside = tmp_path / "run", tmp_path / "outside"
    (run / "sub").mkdir(parents=True)
    outside.mkdir()
    _png(outside / "secret.png")
    _png(run / "sub" / "plot.png")
    (run / "linked.png").symlink_to(outside / "secret.png")
    (run / "results.md").write_text(
        "![up](../outside/secret.png) ![via link](linked.png) ![dotted](sub/../../outside/secret.png) "
        f"![absolute]({outside / 'secret.png'}) ![inside](sub/../sub/plot.png)\n",
        encoding="utf-8",
    )
    with caplog.at_level("WARNING", logger="seqstruct.report"):
        page = write_report([run], tmp_path / "report.html").read_text(encoding="utf-8")
    body = page.split("</nav>", 1)[1]
    # sub/plot.png only: where results.md shows it, and in its own section `sub`
    assert body.count('src="data:image/png;base64,') == 2 and "<figcaption>plot.png</figcaption>" in body
    assert '<img alt="inside" src="data:image/png;base64,' in body
    assert "<span>up</span> <span>via link</span> <span>dotted</span> <span>absolute</span>" in body
    assert "secret" not in body and "linked.png</figcaption>" not in body
    assert sorted(r.getMessage() for r in caplog.records) == sorted(
        [
            f"report: {run / 'linked.png'} links outside {run}; not inlined",
            *(
                f"report: {run / 'results.md'}: image {src} lies outside the report's directories; left out"
                for src in ("../outside/secret.png", "linked.png", "sub/../../outside/secret.png")
            ),
        ]
    )
