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


class DirectoryBusy(FileExistsError):
    """Another live process holds the lock on a directory this one would write."""


class DirectoryLock:
    """An exclusive lock on an output directory, held while a command writes it: two processes never
    write one run, dataset or cell at once.

    The lock is `fcntl.flock` on DIR/`name`, so the kernel releases it when its process ends however it
    ends (kill -9 included): a lock left by a dead process is simply taken over. The file says who holds
    it ("host pid") for the message another process gets. Local filesystems only (flock over NFS is not
    reliable).
    """

    def __init__(self, directory: str | Path, name: str = ".seqstruct.lock") -> None:
        self.path = Path(directory) / name
        self._handle: IO[str] | None = None

    def acquire(self) -> str | None:
        """Take the lock: None once held by this process, else who holds it (nothing is waited for)."""
        import fcntl
        import socket

        if self._handle is not None:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while locked)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            return holder
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return None

    def release(self) -> None:
        if self._handle is None:
            return
        import fcntl

        # The file stays: removing it would let a third process lock a new file while a second waits on
        # this one's inode.
        self._handle.seek(0)
        self._handle.truncate()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> DirectoryLock:
        holder = self.acquire()
        if holder is not None:
            raise DirectoryBusy(
                f"{self.path.parent} is being written by {holder} (lock {self.path.name}); wait for it to "
                "finish or choose another output directory"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
