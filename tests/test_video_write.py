"""Tests for the writer's checks (physiolatent_core.video.write): output kind, crf, output path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from physiolatent_core.errors import InputError
from physiolatent_core.video import VideoWriter, check_crf, check_output_path, output_kind


@pytest.mark.parametrize("path,kind", [("a.mp4", "h264"), ("a.MOV", "h264"), ("a.m4v", "h264"), ("a.mkv", "ffv1"),
                                       ("frames/", "png"), ("frames", "png"), (Path("out") / "frames", "png")])
def test_output_kind(path, kind):
    assert output_kind(path) == kind


def test_output_kind_refuses_other_suffixes_and_the_writer_says_the_same(tmp_path):
    with pytest.raises(InputError, match=r"cannot write \.avi files: use \.mp4/\.mov \(H\.264\), \.mkv") as kind_error:
        output_kind("clip.avi")
    with pytest.raises(InputError) as writer_error:
        VideoWriter(tmp_path / "clip.avi", 30.0)
    assert str(writer_error.value) == str(kind_error.value)


def test_check_crf(tmp_path):
    assert [check_crf(c) for c in (0, 18, 51, 23.0, np.int64(20))] == [0, 18, 51, 23, 20]
    assert all(type(check_crf(c)) is int for c in (23.0, np.int64(20)))
    for bad in (-1, 52, float("nan"), "18", None):
        with pytest.raises(InputError, match=r"^crf must be 0\.\.51 \(0 lossless"):
            check_crf(bad)
    with pytest.raises(InputError, match=r"^--crf must be 0\.\.51"):
        check_crf(60, what="--crf")
    with pytest.raises(InputError) as writer_error:
        VideoWriter(tmp_path / "a.mp4", 30.0, crf=60)
    assert str(writer_error.value) == "crf must be 0..51 (0 lossless, 18 visually lossless, 23 x264 default), got 60."


def test_check_output_path_accepts_and_expands(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output_path("~/out.mp4", overwrite=False) == tmp_path / "out.mp4"
    (tmp_path / "out.mp4").write_bytes(b"old")
    assert check_output_path(tmp_path / "out.mp4", overwrite=True) == tmp_path / "out.mp4"
    (tmp_path / "frames").mkdir()  # a folder output (no suffix, or a trailing /) over a folder
    assert check_output_path(str(tmp_path / "frames") + "/", overwrite=True) == tmp_path / "frames"
    assert check_output_path(tmp_path / "frames", overwrite=True) == tmp_path / "frames"


def test_check_output_path_refusals(tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(b"input")
    with pytest.raises(InputError, match="output path equals input") as same:
        check_output_path(tmp_path / "." / "in.mp4", overwrite=True, input_path=src)
    assert "equals the input" in str(same.value)  # the CLI's wording, kept
    with pytest.raises(InputError, match=r"already exists: pass --overwrite .* another report path"):
        check_output_path(src, overwrite=False, what="report")
    (tmp_path / "dir.mp4").mkdir()
    with pytest.raises(InputError, match="exists as a folder"):
        check_output_path(tmp_path / "dir.mp4", overwrite=True)
    with pytest.raises(InputError, match="exists as a file"):
        check_output_path(src, overwrite=True, folder=True)
    with pytest.raises(InputError, match=r"the folder .*missing for the figure does not exist"):
        check_output_path(tmp_path / "missing" / "f.png", overwrite=False, what="figure")
    assert src.read_bytes() == b"input" and sorted(p.name for p in tmp_path.iterdir()) == ["dir.mp4", "in.mp4"]
