"""Reports, from the files runs wrote: a pretraining run's one-page summary (`summary`), plots
(`figures`: loss curves, learning curves, the comparison figure) and one offline HTML page gathering the
tables and plots of any runs (`page`)."""

from seqstruct.report.figures import (
    comparison_figure,
    learning_curve_figure,
    plot_comparison,
    plot_learning_curve,
    plot_loss_curve,
    read_log,
)
from seqstruct.report.page import Section, find_sections, render_report, write_report
from seqstruct.report.summary import pretrain_summary

__all__ = [
    "comparison_figure",
    "plot_comparison",
    "Section",
    "find_sections",
    "learning_curve_figure",
    "plot_learning_curve",
    "plot_loss_curve",
    "pretrain_summary",
    "read_log",
    "render_report",
    "write_report",
]
