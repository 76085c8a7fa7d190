"""Atomic file output: a run that is interrupted leaves the old file or the new one, never half of one."""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _file_mode() -> int:
    """0666 less the process umask: the permissions open() gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it is renamed onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file private (0600); an output gets what a plain open() would give it.
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a file for writing atomically; a `.gz` suffix writes gzip (text or binary as `mode` says)."""
    path = Path(path)
    binary = "b" in mode
    with atomic_path(path) as tmp:
        opener = gzip.open if path.suffix == ".gz" else open
        kwargs = {} if binary else {"encoding": encoding}
        # gzip.open needs an explicit text mode to return str handles.
        fmode = mode if binary or opener is open else mode.replace("t", "") + "t"
        with opener(tmp, fmode, **kwargs) as handle:
            yield handle


def open_text(path: str | Path) -> IO[str]:
    """Open a plain or gzipped text file for reading (gzip recognised by its magic bytes, not its name)."""
    path = Path(path)
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


class FileLineError(ValueError):
    """Bad input in a file: `path`, the 1-based `line` (None for the file as a whole) and what is wrong,
    in one message ("graph.tsv, line 4: ..."). Picklable, so a DataLoader worker can hand it back."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[FileLineError], tuple[str, int | None, str]]:
        return (type(self), (self.path, self.line, self.reason))


def tsv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, tab-separated cells) of each line of a TSV (gzip or not) that is neither
    blank nor a `#` comment; line endings stripped, cells as they are."""
    with open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip() and not text.startswith("#"):
                yield line_number, text.split("\t")
