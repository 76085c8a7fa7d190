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
