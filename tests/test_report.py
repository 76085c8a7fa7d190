"""Learning-curve plots and the HTML report, on tiny trees of run outputs made here."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from seqstruct.cli import main
from seqstruct.report import (
    find_sections,
    learning_curve_figure,
    plot_learning_curve,
    pretrain_summary,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# ---------------------------------------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------------------------------------


def _grid() -> list[dict]:
    """Three arms x two splits x three fractions; one arm ran one seed (std nan)."""
    points = []
    for split in ("test_close", "test_remote"):
        for arm, seeds in (("lstm", 3), ("finetune", 3), ("probe", 1)):
            for examples in (12.0, 40.0, 400.0):
                points.append(
                    {
                        "arm": arm,
                        "split": split,
                        "examples": examples,
                        "mean": 0.3 + 0.1 * math.log10(examples),
                        "std": 0.02 if seeds > 1 else math.nan,
                        "n": seeds,
                    }
                )
    return points


def test_learning_curve_has_a_log_panel_per_split_and_a_line_per_arm() -> None:
    fig = learning_curve_figure(_grid(), "fmax", title="go-mf")
    try:
        axes = fig.get_axes()
        assert [ax.get_title() for ax in axes] == ["test_close", "test_remote"]
        for ax in axes:
            assert ax.get_xscale() == "log"
            assert [line.get_label() for line in ax.get_lines()] == ["lstm", "finetune", "probe"]
        # One colour per arm in every panel; bands only for the arms with several seeds.
        colours = [[line.get_color() for line in ax.get_lines()] for ax in axes]
        assert colours[0] == colours[1] and len(set(colours[0])) == 3
        assert all(len(ax.collections) == 2 for ax in axes)
        assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
        assert axes[0].get_ylabel() == "fmax" and fig.get_suptitle() == "go-mf"
        assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["lstm", "finetune", "probe"]
    finally:
        plt.close(fig)


def test_plot_learning_curve_writes_a_png(tmp_path) -> None:
    path = tmp_path / "curve" / "learning_curve.png"
    plot_learning_curve(_grid(), path, "fmax")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == ["learning_curve.png"]  # no temporary left behind


def test_learning_curve_draws_fits_dashed_beyond_the_data_and_marks_n_star() -> None:
    fits = [
        {"arm": arm, "split": split, "a": 0.8, "b": b, "c": 0.3, "n_min": 12.0, "n_max": 400.0}
        for split in ("test_close", "test_remote")
        for arm, b in (("lstm", 2.0), ("finetune", 0.6))
    ] + [{"arm": "probe", "split": "test_close", "a": None, "b": None, "c": None}]  # no fit: not drawn
    crossing = {"arm": "finetune", "split": "test_close", "fitted": True, "draws": 200, "n_star": 7000.0}
    crossings = [crossing | {"median": 8000.0, "low": 3000.0, "high": None}]
    fig = learning_curve_figure(_grid(), "fmax", fits=fits, crossings=crossings)
    try:
        close, remote = fig.get_axes()
        lines = {line.get_label(): line for line in close.get_lines()}
        dashed = lines["_finetune extrapolated"]
        assert dashed.get_linestyle() == "--" and dashed.get_xdata()[0] == 400.0
        # out to 100× the largest budget, past the n* (× 1.5 would be 12,000)
        assert dashed.get_xdata()[-1] == pytest.approx(40000.0)
        assert lines["_lstm fit"].get_linestyle() == "-" and lines["_lstm fit"].get_xdata()[-1] == 400.0
        assert lines["_n* finetune"].get_xdata()[0] == 8000.0  # the bootstrap median
        assert lines["_interval"].get_xdata()[-1] == pytest.approx(40000.0)  # an open upper end: to the edge
        assert "_probe fit" not in lines and "_n* finetune" not in {x.get_label() for x in remote.get_lines()}
        # the legend keeps the arms and names the shaded region beyond 10× the data
        legend = [t.get_text() for t in remote.get_legend().get_texts()]
        assert legend == ["lstm", "finetune", "probe", "beyond 10× the largest budget: unsupported"]
        assert close.get_xlim()[1] >= 40000.0
    finally:
        plt.close(fig)


def test_learning_curve_refuses_what_a_log_axis_would_drop() -> None:
    points = _grid()
    points[0]["examples"] = 0.0
    with pytest.raises(ValueError, match="examples > 0"):
        learning_curve_figure(points, "fmax")
    with pytest.raises(ValueError, match="no learning-curve points"):
        learning_curve_figure([], "fmax")


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


# ---------------------------------------------------------------------------------------------------------
# Pretraining summary: the structure loss against its chance value (issue 21)
# ---------------------------------------------------------------------------------------------------------


def _pretraining_run(root: Path, structure: dict | None) -> Path:
    """A run directory with the metrics.json and log.csv `pretrain_summary` reads."""
    root.mkdir()
    metrics = {
        "parameters": 1000,
        "steps": 8,
        "train_proteins": 36,
        "heldout_proteins": 4,
        "train_tokens": 8640,
        "train_runtime_s": 6.0,
        "heldout": {
            "masked_accuracy": 0.1,
            "perplexity": 18.0,
            "masked_tokens": 39,
            "accuracy_gain": 0.05,
            "accuracy_gain_se": 0.01,
            "nll_gain": 0.1,
            "nll_gain_se": 0.02,
        },
        "unigram_baseline": {"masked_accuracy": 0.05, "perplexity": 20.0, "most_frequent": "L"},
        "structure": structure,
    }
    (root / "metrics.json").write_text(json.dumps(metrics))
    (root / "log.csv").write_text("step,loss,eval_loss\n4,3.0,\n8,,2.9\n")
    return root


def _structure(final: float, chance: float, best: float, link_mrr: float | None = 0.25) -> dict:
    return {
        "weight": 0.5,
        "loss": "info_nce",
        "final_loss": final,
        "chance": chance,
        "loss_to_chance": final / chance,
        "left_chance": final / chance < 0.9,
        "best_loss_to_chance": best,
        "best_step": 4,
        "left_chance_threshold": 0.9,
        "link_mrr": link_mrr,
        "link_queries": 4,
    }


@pytest.mark.parametrize(
    ("structure", "says", "never_says"),
    [
        (_structure(3.1, 3.135, 0.98), "never left chance", "left its chance value"),
        (_structure(3.1, 3.135, 0.5), "fell back to chance", "never left"),
        (_structure(1.2, 3.135, 0.38), "left its chance value", "cannot show"),
        (None, None, "Structure-inducing loss"),  # no graph: no section
        (_structure(3.1, 3.135, 0.98) | {"weight": 0.0}, None, "chance"),  # masked-LM alone on the graph
    ],
)
def test_pretrain_summary_flags_a_structure_loss_that_never_left_chance(
    tmp_path, structure, says, never_says
) -> None:
    text = pretrain_summary(_pretraining_run(tmp_path / "run", structure)).read_text(encoding="utf-8")
    if says is not None:
        assert says in text
        assert "MRR 0.250" in text
    assert never_says not in text
    if says == "never left chance":
        assert "cannot show whether structure-inducing pretraining helps or hurts" in text
