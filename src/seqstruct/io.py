"""Atomic file output: a run that is interrupted leaves the old file or the new one, never half of one;
directories replaced whole by a swap (`swap_in`), and what interrupted writers left tidied up.
Text input read strictly: a file that is no text at all is refused by name (`open_text`). Directory locks."""

from __future__ import annotations

import codecs
import gzip
import io
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)


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


class FileLineError(ValueError):
    """Bad input in a file: `path`, the 1-based `line` (None for the file as a whole) and what is wrong,
    in one message ("graph.tsv, line 4: ..."). Picklable, so a DataLoader worker can hand it back."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[FileLineError], tuple[str, int | None, str]]:
        return (type(self), (self.path, self.line, self.reason))


class InputFileError(FileLineError):
    """A file that cannot be read as the text it should hold: a directory, binary data, text in another
    encoding, a truncated gzip. The message names the file and what it was expected to be."""


_GZIP_MAGIC = b"\x1f\x8b"
# What reading a damaged gzip raises: EOFError (truncated), BadGzipFile (bad header), zlib.error (bad data).
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class _CheckedReader(io.BufferedIOBase):
    """The bytes of a plain or gzipped file, checked chunk by chunk as a text handle reads them: a gzip
    that ends early, NUL bytes, a UTF-16 byte-order mark or bytes that are not UTF-8 raise InputFileError
    naming the file, the line and what was expected, instead of an EOFError or UnicodeDecodeError.

    The checks run once per chunk (8 KiB, in C), so iterating the text handle line by line stays as fast as
    a plain open()."""

    def __init__(self, raw: IO[bytes], path: Path, expected: str) -> None:
        super().__init__()
        self._raw, self._path, self._expected = raw, path, expected
        self._utf8 = codecs.getincrementaldecoder("utf-8")()  # keeps a character split across chunks
        self._line = 1  # line of the next byte handed out
        self._started = False

    @property
    def name(self) -> str:
        return str(self._path)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        return self._checked(self._raw.read, size)

    def read1(self, size: int = -1) -> bytes:
        return self._checked(self._raw.read1, size)

    def close(self) -> None:
        self._raw.close()
        super().close()

    def _fail(self, line: int | None, reason: str) -> InputFileError:
        return InputFileError(self._path, line, f"{reason}; expected {self._expected}")

    def _checked(self, read: Callable[[int], bytes], size: int | None) -> bytes:
        try:
            data = read(-1 if size is None else size)
        except _GZIP_ERRORS as err:
            raise self._fail(None, f"truncated or corrupt gzip ({err})") from err
        if not self._started and data:
            self._started = True
            if data.startswith(_UTF16_BOMS):
                raise self._fail(1, "UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8")
        nul = data.find(b"\x00")
        if nul >= 0:
            raise self._fail(self._line + data.count(b"\n", 0, nul), "binary data (a NUL byte), not text")
        try:
            self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as err:
            at = max(0, err.start - (len(err.object) - len(data)))  # the object starts with held-back bytes
            byte = err.object[err.start : err.start + 1].hex()
            reason = f"not UTF-8 text (byte 0x{byte} cannot be decoded; a binary file?)"
            raise self._fail(self._line + data.count(b"\n", 0, at), reason) from err
        self._line += data.count(b"\n")
        return data


def open_text(path: str | Path, expected: str = "UTF-8 text") -> IO[str]:
    """Open a plain or gzipped text file for reading (gzip recognised by its magic bytes, not its name).

    UTF-8, with or without a byte-order mark (read past). A directory, binary data, another encoding and
    a damaged gzip raise InputFileError naming the file and `expected` (what it should hold, e.g. "a FASTA
    file"), the directory at once and the rest as reading reaches them; a missing file raises
    FileNotFoundError as open() does.
    """
    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, None, f"is a directory; expected {expected}")
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == _GZIP_MAGIC
    raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115 (closed with the handle)
    return io.TextIOWrapper(_CheckedReader(raw, path, expected), encoding="utf-8-sig")


def tsv_rows(path: str | Path, expected: str = "a TSV file") -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, tab-separated cells) of each line of a TSV (gzip or not) that is neither
    blank nor a `#` comment; line endings stripped, cells as they are. `expected` says what the file
    should hold, for the message when it is no text at all (see open_text)."""
    with open_text(path, expected) as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip() and not text.startswith("#"):
                yield line_number, text.split("\t")


LOCK_NAME = ".seqstruct.lock"  # DirectoryLock's file inside the directory it guards


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

    def __init__(
        self, directory: str | Path, name: str = LOCK_NAME, target: str | Path | None = None
    ) -> None:
        self.path = Path(directory) / name
        self.target = Path(target) if target is not None else Path(directory)  # what the lock guards
        self._handle: IO[str] | None = None

    @classmethod
    def beside(cls, directory: str | Path) -> DirectoryLock:
        """The lock of a directory that is replaced whole (a prepared dataset): kept in its parent as
        `.NAME.lock`, since a lock file inside would leave with the old directory."""
        directory = Path(directory)
        return cls(directory.parent, f".{directory.name}.lock", target=directory)

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
                f"{self.target} is being written by {holder} (lock {self.path}); wait for it to finish "
                "or choose another output directory"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------------
# Replacing a directory whole, and what an interrupted writer leaves behind
# ---------------------------------------------------------------------------------------------------------


def staging_directory(output: str | Path) -> Path:
    """A new empty directory beside `output` to build its replacement in (`.NAME.partial-XXXX`)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.partial-"))


def swap_in(staging: str | Path, output: str | Path) -> None:
    """Put the complete directory `staging` at `output`, then remove what was there before.

    The old directory is first renamed aside (`.NAME.old-XXXX`), the new one renamed into place, and only
    then is the old one removed: a reader finds the old directory or the new one, never one half deleted,
    and a process killed between the two renames leaves the old one for `recover_replaced` to put back.
    Call it holding the output's lock (`DirectoryLock.beside`).
    """
    staging, output = Path(staging), Path(output)
    old = None
    if output.exists():
        # mkdtemp reserves a unique name; renaming a directory onto an empty one replaces it (POSIX).
        old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
        os.replace(output, old)
    os.rename(staging, output)
    if old is not None:
        shutil.rmtree(old)


def recover_replaced(output: str | Path) -> None:
    """Tidy what interrupted writers of `output` left beside it, holding the output's lock: a directory
    renamed aside by `swap_in` is put back when nothing took its place (or removed when something did),
    and staging directories are removed (they may be half written, so none is ever put in place)."""
    output = Path(output)
    if not output.parent.is_dir():
        return
    aside = sorted(output.parent.glob(f".{output.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if aside and not output.exists():
        restored = aside.pop()  # the last one set aside is what `output` held last
        logger.warning("%s: put back from %s, where an interrupted replacement had left it", output, restored)
        os.rename(restored, output)
    for leftover in aside + sorted(output.parent.glob(f".{output.name}.partial-*")):
        logger.info("removing %s, left by an interrupted writer of %s", leftover, output)
        shutil.rmtree(leftover, ignore_errors=True)


def remove_temporary_files(directory: str | Path) -> list[Path]:
    """Remove the temporary files that interrupted atomic writes left in `directory` (not recursive):
    `atomic_path`'s `.NAME.XXXX.tmp` files and `.save-XXXX` model-saving directories. Call it holding the
    directory's lock, so no live writer's file is taken. Returns what was removed."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = sorted([*directory.glob(".*.tmp"), *directory.glob(".save-*")])
    for leftover in found:
        logger.info("removing %s, left by an interrupted write", leftover)
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return found
