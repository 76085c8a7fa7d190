"""Atomic outputs: all or nothing, with the permissions a plain open() would give. Text input: read
strictly, a file that is no text named as such."""

from __future__ import annotations

import gzip
import os
import stat

import pytest

from seqstruct.io import InputFileError, atomic_open, open_text, tsv_rows


def test_atomic_open_writes_whole_files_with_default_permissions(tmp_path) -> None:
    path = tmp_path / "out" / "a.txt"
    with atomic_open(path) as handle:
        handle.write("x\n")
    assert path.read_text() == "x\n"
    plain = tmp_path / "plain.txt"
    plain.write_text("y")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # readable by others, not mkstemp's 0600


def test_interrupted_write_leaves_the_old_file(tmp_path) -> None:
    path = tmp_path / "a.txt.gz"
    with atomic_open(path) as handle:
        handle.write("old\n")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("new\n")
        raise RuntimeError("interrupted")
    with open_text(path) as handle:
        assert handle.read() == "old\n"
    assert os.listdir(tmp_path) == ["a.txt.gz"]  # no temporary left behind


def test_a_directory_lock_excludes_a_second_writer_and_dies_with_its_holder(tmp_path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest

    from seqstruct.io import DirectoryBusy, DirectoryLock

    holder = subprocess.Popen(
        [sys.executable, "-c", f"from seqstruct.io import DirectoryLock; import time\n"
         f"lock = DirectoryLock({str(tmp_path)!r})\nassert lock.acquire() is None\n"
         "print('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(DirectoryBusy, match=f"being written by .* {holder.pid} "),
            DirectoryLock(tmp_path),
        ):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the kernel drops the lock
        holder.wait(timeout=30)
        for _ in range(50):
            lock = DirectoryLock(tmp_path)
            if lock.acquire() is None:
                break
            time.sleep(0.1)
        assert (tmp_path / ".seqstruct.lock").read_text().split()[1] == str(os.getpid())
        lock.release()
        with DirectoryLock(tmp_path):  # released, and taken again
            assert DirectoryLock(tmp_path).acquire() is not None  # a second handle in this process waits too
    finally:
        holder.kill()


# ---------------------------------------------------------------------------------------------------------
# open_text: a file that is no text at all is named as such
# ---------------------------------------------------------------------------------------------------------


def _read(path) -> list[str]:
    with open_text(path, "a test file") as handle:
        return list(handle)


def test_open_text_reads_plain_gzip_crlf_and_past_a_utf8_bom(tmp_path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_bytes("\ufeffα\tb\r\nc\n".encode())
    zipped = tmp_path / "a.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    assert _read(plain) == _read(zipped) == ["α\tb\n", "c\n"]
    with open_text(plain) as handle:
        assert handle.read() == "α\tb\nc\n"
    assert list(tsv_rows(zipped)) == [(1, ["α", "b"]), (2, ["c"])]


def test_open_text_names_a_directory(tmp_path) -> None:
    with pytest.raises(InputFileError) as err:
        open_text(tmp_path, "a graph")
    assert str(err.value) == f"{tmp_path}: is a directory; expected a graph"
    assert isinstance(err.value, ValueError) and err.value.line is None


def test_open_text_leaves_a_missing_file_to_file_not_found(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        open_text(tmp_path / "nowhere.txt")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"ab\ncd\x00ef\n", "line 2: binary data (a NUL byte), not text; expected a test file"),
        (
            b"\x89PNG\r\n\x1a\n",
            "line 1: not UTF-8 text (byte 0x89 cannot be decoded; a binary file?); expected a test file",
        ),
        (
            "a\nb\n".encode("utf-16"),
            "line 1: UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; expected a test file",
        ),
        (
            b"ok\n" * 5000 + b"caf\xe9\n",
            "line 5001: not UTF-8 text (byte 0xe9 cannot be decoded; a binary file?); expected a test file",
        ),
        (
            b"ok\ncaf\xc3",
            "line 2: not UTF-8 text (byte 0xc3 cannot be decoded; a binary file?); expected a test file",
        ),
    ],
    ids=["nul", "png", "utf16", "latin1-past-the-first-chunk", "cut-multibyte-at-end"],
)
def test_open_text_names_binary_and_non_utf8_content_with_its_line(
    tmp_path, content: bytes, message: str
) -> None:
    for path in (tmp_path / "x.txt", tmp_path / "x.txt.gz"):
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        with pytest.raises(InputFileError) as err:
            _read(path)
        assert str(err.value) == f"{path}, {message}"


def test_open_text_names_a_truncated_or_corrupt_gzip(tmp_path) -> None:
    whole = gzip.compress(b"line\n" * 20000)
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputFileError) as err:
        _read(truncated)
    assert str(err.value) == (
        f"{truncated}: truncated or corrupt gzip (Compressed file ended before the end-of-stream marker was "
        "reached); expected a test file"
    )
    corrupt = tmp_path / "bad.gz"
    corrupt.write_bytes(whole[:10] + b"\xff" * 40 + whole[50:])
    with pytest.raises(
        InputFileError, match=rf"^{corrupt}: truncated or corrupt gzip \(.+\); expected a test file$"
    ):
        _read(corrupt)


def test_input_file_error_survives_pickling(tmp_path) -> None:
    import pickle

    err = pickle.loads(pickle.dumps(InputFileError(tmp_path / "x", 3, "binary data")))
    assert isinstance(err, InputFileError) and str(err) == f"{tmp_path / 'x'}, line 3: binary data"


# ---------------------------------------------------------------------------------------------------------
# Replacing a directory whole; what interrupted writers leave
# ---------------------------------------------------------------------------------------------------------


def test_swap_in_replaces_a_directory_and_removes_the_old_one(tmp_path) -> None:
    from seqstruct.io import staging_directory, swap_in

    out = tmp_path / "data"
    for generation in ("old", "new"):
        staging = staging_directory(out)
        assert staging.name.startswith(".data.partial-") and staging.parent == tmp_path
        (staging / "file.txt").write_text(generation)
        swap_in(staging, out)
        assert (out / "file.txt").read_text() == generation
        assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no staging, no old copy left


def test_recover_replaced_puts_back_only_what_nothing_replaced(tmp_path) -> None:
    from seqstruct.io import recover_replaced

    out = tmp_path / "data"
    (tmp_path / ".data.old-1").mkdir()
    (tmp_path / ".data.old-1" / "file.txt").write_text("old")
    (tmp_path / ".data.partial-2").mkdir()  # maybe half written: never put in place
    (tmp_path / ".data.more.partial-3").mkdir()  # another directory's (data.more): left alone
    recover_replaced(out)
    assert (out / "file.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.more.partial-3", "data"]
    (tmp_path / ".data.old-4").mkdir()  # the swap got as far as putting the new one in place
    recover_replaced(out)
    assert (out / "file.txt").read_text() == "old" and not (tmp_path / ".data.old-4").exists()


def test_remove_temporary_files_takes_only_interrupted_writes(tmp_path) -> None:
    from seqstruct.io import remove_temporary_files

    (tmp_path / ".metrics.json.x1y2.tmp").write_text("half")
    (tmp_path / ".save-abc").mkdir()
    (tmp_path / ".save-abc" / "model.safetensors").write_text("half")
    for kept in ("metrics.json", ".seqstruct.lock", "notes.tmp"):
        (tmp_path / kept).write_text("")
    removed = remove_temporary_files(tmp_path)
    assert sorted(p.name for p in removed) == [".metrics.json.x1y2.tmp", ".save-abc"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".seqstruct.lock", "metrics.json", "notes.tmp"]
