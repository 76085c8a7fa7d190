"""report.html as a person sees it: opened in headless Chromium, every image rendered, no script error, and
a screenshot that shows something. Slow (it needs Debian's `chromium`: apt-get install -y chromium); run
with `pytest -m slow tests/report/test_browser.py`. Without Chromium the tests fail, they do not skip."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image
import pytest

from seqstruct.report import plot_comparison, plot_learning_curve, plot_loss_curve, write_report

from .browser import view

pytestmark = pytest.mark.slow


@pytest.fixture
def run(tmp_path) -> Path:
    """A run directory with each kind of plot the reports draw, referenced from markdown and on its own."""
    root = tmp_path / "run"
    (root / "seed0" / "mlm").mkdir(parents=True)
    rows = [{"step": s, "loss": 3.2 - 0.01 * s} for s in range(10, 170, 10)] + [
        {"step": 160, "eval_loss": 2.9}
    ]
    plot_loss_curve(rows, root / "seed0" / "mlm" / "loss_curve.png", baseline_nll=2.95)
    (root / "seed0" / "mlm" / "summary.md").write_text("# mlm\n\n![loss](loss_curve.png)\n")
    cell = {"mean": 0.4, "std": math.nan, "n": 1}
    summary = {
        "go-mf test_remote fmax": {"mlm": cell, "structure": cell, "structure - mlm": cell | {"mean": 0.01}}
    }
    plot_comparison(
        summary, root / "comparison.png", ["mlm", "structure"], [("structure", "mlm")], list(summary)
    )
    points = [
        {"arm": "probe", "split": "test", "examples": n, "mean": 0.1 * i, "std": math.nan, "n": 1}
        for i, n in enumerate((10.0, 100.0, 1000.0))
    ]
    plot_learning_curve(points, root / "curve.png", "fmax")  # on no markdown: a figure of its own
    (root / "summary.md").write_text("# demo\n\n**The answer.**\n\n![comparison](comparison.png)\n")
    return root


def _drawn(screenshot: Path) -> float:
    """The share of the screenshot's pixels that are not white."""
    pixels = matplotlib.image.imread(screenshot)[..., :3]  # [H, W, 3] in 0..1
    return float((pixels.min(axis=-1) < 0.95).mean())


def test_every_image_of_the_report_renders_without_a_script_error(run, tmp_path) -> None:
    page = write_report([run], tmp_path / "report.html", title="demo")
    seen = view(page, tmp_path / "report.png")
    assert len(seen.images) == 3, seen.images  # comparison, loss curve, learning curve
    assert seen.broken == [] and all(image["width"] > 500 for image in seen.images), seen.images
    assert seen.errors == []
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _drawn(tmp_path / "report.png") > 0.02  # text, tables and plots, not a blank page


def test_a_broken_image_is_caught(run, tmp_path) -> None:
    (run / "comparison.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a picture" * 10)  # a PNG cut short
    seen = view(write_report([run], tmp_path / "report.html"), tmp_path / "report.png")
    assert [image["alt"] for image in seen.broken] == ["comparison"]
    assert len(seen.images) == 3


def test_a_script_error_is_caught(tmp_path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    seen = view(page, tmp_path / "page.png")
    assert len(seen.errors) == 1 and "undefinedFunction" in seen.errors[0]
