"""How long the `seqstruct` command takes to answer, and how much memory it takes, for commands that should
load no model library: the startup promise of seqstruct.cli measured. Never run by the fast tests.

    seqstruct bench cli-startup [--commands "--help" "data list" ...] [--repeats 5] [--source DIR] [-o FILE]

Each command runs as `python -m seqstruct.cli ARGS` in a fresh process, `repeats` times after one warm-up
(bytecode compiled, files in the page cache), the commands taking turns so that a change in the machine's
load touches all of them alike. A run's wall time is from spawn to exit, interpreter start included. Its
peak resident set is the child's VmHWM (/proc/self/status), read as it exits: `wait4`'s ru_maxrss would
not do, since Linux carries the parent's resident set at fork into it (a parent holding torch would put
400 MiB under every child). A bare interpreter (the same exit hook, no seqstruct) is measured beside them:
the floor no command can go under. `--source` puts another seqstruct source tree first on the
children's PYTHONPATH (a git worktree of an older commit), so before and after are measured on one
machine under one load. Linux only.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from seqstruct.bench.common import machine_info, write_json

BARE = "(python, no seqstruct)"  # the reference row's name
# Run as `python -c CHILD MODULE ARGS...`: writes the process's peak resident set (KiB) to the file named by
# $SEQSTRUCT_PEAK_FILE at exit, after running MODULE as `python -m MODULE ARGS` would ("" runs nothing).
CHILD = """
import atexit, os, runpy, sys
def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(os.environ["SEQSTRUCT_PEAK_FILE"], "w") as out:
        out.write(kib)
atexit.register(peak)
module = sys.argv.pop(1)
if module:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


@dataclass
class StartupConfig:
    """`seqstruct bench cli-startup`: the commands to time and how often."""

    commands: tuple[str, ...] = ("--help", "data list", "evaluate --list", "pretrain --help", "embed --help")
    repeats: int = 5  # timed runs per command, after one warm-up each
    source: str | None = (
        None  # a seqstruct source tree (its src/ or the dir holding seqstruct/) to time instead
    )


@dataclass
class StartupResult:
    command: str
    seconds: list[float]  # wall time of each timed run
    peak_rss_mib: list[float]  # the child's peak resident set of each run

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)


def _environment(source: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if source is not None:
        root = Path(source).resolve()
        root = root / "src" if (root / "src" / "seqstruct").is_dir() else root
        if not (root / "seqstruct" / "__init__.py").is_file():
            raise ValueError(f"--source {source}: no seqstruct package in it or in its src/")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def timed_run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `python -m seqstruct.cli ARGS` ([] for the bare interpreter)."""
    module = "seqstruct.cli" if args else ""
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as scratch:
        peak_file = Path(scratch) / "peak"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, module, *args],
            env=env | {"SEQSTRUCT_PEAK_FILE": str(peak_file)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"seqstruct {shlex.join(args)} exited with {done.returncode}:\n{done.stderr}")
        return seconds, int(peak_file.read_text()) / 1024


def startup_runs(config: StartupConfig) -> list[StartupResult]:
    """Every command of `config` (and the bare interpreter first), warmed up once, then timed in turns."""
    if config.repeats < 1:
        raise ValueError(f"--repeats {config.repeats}: must be at least 1")
    env = _environment(config.source)
    argvs = {BARE: []} | {command: shlex.split(command) for command in config.commands}
    if any(not args for args in list(argvs.values())[1:]):
        raise ValueError("--commands: an empty command (give seqstruct's arguments, e.g. 'data list')")
    results = {name: StartupResult(name, [], []) for name in argvs}
    for repeat in range(config.repeats + 1):
        for name, args in argvs.items():
            seconds, peak = timed_run(args, env)
            if repeat > 0:  # the first round is the warm-up
                results[name].seconds.append(seconds)
                results[name].peak_rss_mib.append(peak)
    return list(results.values())


def startup_report(config: StartupConfig, output: str | Path | None = None) -> str:
    """Run the commands; return a markdown table (and write the runs, machine and load as JSON to `output`)."""
    load_before = os.getloadavg()
    results = startup_runs(config)
    load_after = os.getloadavg()
    lines = [
        "| command | median s | min s | max s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        name = r.command if r.command == BARE else f"`seqstruct {r.command.strip()}`"
        lines.append(
            f"| {name} | {r.median_seconds:.2f} | {min(r.seconds):.2f} | {max(r.seconds):.2f} | "
            f"{max(r.peak_rss_mib):.0f} |"
        )
    lines.append(
        f"\n{config.repeats} timed runs each; load average (1 min) {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after"
    )
    if output:
        write_json(
            output,
            {
                "config": asdict(config),
                "runs": [asdict(r) | {"median_seconds": r.median_seconds} for r in results],
                "load_average": {"before": load_before, "after": load_after},
                "machine": machine_info("cpu") | {"python": platform.python_version()},
            },
        )
    return "\n".join(lines)
