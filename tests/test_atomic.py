"""Tests for physiolatent_core.atomic: temp path beside the target, rename on success."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from physiolatent_core.atomic import AtomicPath, atomic_path, write_json
from physiolatent_core.errors import InputError


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_renames_the_temp_file_onto_the_target(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".clip.mp4.") and tmp.suffix == ".mp4"
        assert not tmp.exists() and not target.exists()  # nothing is created for the caller
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["clip.mp4"]
    with atomic_path(target) as tmp:  # overwrite=True (the default) replaces it
        tmp.write_bytes(b"newer")
    assert target.read_bytes() == b"newer" and _names(tmp_path) == ["clip.mp4"]


@pytest.mark.parametrize("existing", [False, True])
def test_an_exception_leaves_neither_temp_nor_a_changed_target(tmp_path, existing):
    target = tmp_path / "report.json"
    if existing:
        target.write_text("old")
    with pytest.raises(RuntimeError, match="failed mid-way"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("failed mid-way")
    assert _names(tmp_path) == (["report.json"] if existing else [])
    if existing:
        assert target.read_text() == "old"


def test_existing_target_is_refused_without_overwrite(tmp_path):
    target = tmp_path / "figure.png"
    target.write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"never written")
    assert target.read_bytes() == b"keep me" and _names(tmp_path) == ["figure.png"]
    # A target that appears while the temp file is written is refused too, and kept.
    other = tmp_path / "other.png"
    with pytest.raises(InputError, match="appeared while writing"):
        with atomic_path(other, overwrite=False) as tmp:
            tmp.write_bytes(b"mine")
            other.write_bytes(b"theirs")
    assert other.read_bytes() == b"theirs" and _names(tmp_path) == ["figure.png", "other.png"]


def test_a_folder_replaces_a_folder(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_bytes(b"old")
    pending = AtomicPath(target, overwrite=True)  # the form a writer that opens and closes in two calls uses
    pending.tmp.mkdir()
    (pending.tmp / "new.png").write_bytes(b"new")
    assert pending.commit() == target
    assert _names(target) == ["new.png"] and _names(tmp_path) == ["frames"]
    pending = AtomicPath(target)
    pending.tmp.mkdir()
    pending.discard()
    assert _names(tmp_path) == ["frames"]


def test_the_result_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.json") as tmp:
            fd, made = tempfile.mkstemp(dir=tmp_path)  # mkstemp makes files private (0600)
            os.close(fd)
            os.replace(made, tmp)
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_write_json(tmp_path):
    data = {"hr_bpm": 72.5, "methods": ["pos", "chrom"], "ok": True}
    path = tmp_path / "report.json"
    assert write_json(path, data) == str(path)
    assert path.read_text() == json.dumps(data, indent=2) + "\n"
    with pytest.raises(ValueError):  # allow_nan=False: JSON has no NaN
        write_json(path, {"hr_bpm": float("nan")})
    assert json.loads(path.read_text()) == data and _names(tmp_path) == ["report.json"]
    with pytest.raises(InputError, match="already exists"):
        write_json(path, {}, overwrite=False)
    assert json.loads(path.read_text()) == data
