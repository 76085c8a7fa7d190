"""`seqstruct evaluate --list`: the static table names every built-in task (with its registered dataset
and kind) and every method `build_method` resolves, and listing loads no model library."""

from __future__ import annotations

import subprocess
import sys

from seqstruct.cli import main
from seqstruct.evaluation.catalogue import METHOD_LINES, TASK_LINES
from seqstruct.evaluation.methods import BASELINES
from seqstruct.evaluation.tasks import TASKS


def test_every_builtin_task_is_listed_as_registered() -> None:
    builtin = {name for name, spec in TASKS.items() if spec.target.__module__.startswith("seqstruct.")}
    assert set(TASK_LINES) == builtin
    for name, (dataset, kind, _) in TASK_LINES.items():
        assert (TASKS[name].dataset, TASKS[name].kind) == (dataset, kind), name


def test_every_baseline_is_listed() -> None:
    listed = {name.removeprefix("baseline:") for name in METHOD_LINES if name.startswith("baseline:")}
    assert listed == set(BASELINES)


def test_cli_lists_tasks_and_methods(capsys) -> None:
    assert main(["evaluate", "--list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in [*TASK_LINES, *METHOD_LINES]:
        assert sum(line.split()[:1] == [name] for line in lines) == 1, name  # one line each
    assert main(["evaluate"]) == 2
    assert "give MODEL" in capsys.readouterr().err


def test_listing_imports_no_task_or_method_module() -> None:
    """The list comes from a static table: the registry's modules (datasets; the methods, with their
    model libraries) stay unimported."""
    script = (
        "import sys; from seqstruct.evaluation.catalogue import listing; listing(); "
        "print([m for m in ('seqstruct.evaluation.tasks', 'seqstruct.evaluation.methods', 'datasets') "
        "if m in sys.modules])"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
