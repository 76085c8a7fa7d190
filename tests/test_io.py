"""Atomic outputs: all or nothing, with the permissions a plain open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from seqstruct.io import atomic_open, open_text


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
