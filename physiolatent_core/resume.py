"""Pass 3 of an edit, resumable: its output written as segments in a work folder beside it.

A job that writes a video file (.mp4/.mov, .mkv) encodes its frames as segments of
``SEGMENT_S`` seconds (``video.segments``) in ``<output>.partial/`` and, once every frame
is in, joins them into the output without re-encoding (the file appears atomically,
with the input's other streams), then removes the folder. A run that stopped (Ctrl-C,
SIGKILL, power) leaves the finished segments there; the same command with ``--resume``
(``JobRequest.resume``) writes only the segments that are missing.

The folder's ``job.json`` names what the segments were made from: the input (size and a
hash of its first and last MiB; ``input_fingerprint``) and every setting that changes
the frames (``job_key``). A resume of another input or with other settings is refused,
as is a run without ``--resume`` that finds finished segments (they are the user's work:
pass ``--resume`` or delete the folder). A ``--resume`` that finds no folder just starts.

Passes 1 and 2 (face track, analysis, plan) run again on a resume: they are
deterministic for a given input and settings, so the plan is the one the segments were
made with; the plan's fingerprint (the editor's ``info``) is saved and checked too.
docs/ARCHITECTURE.md ("Resuming a long job") says why they are not saved instead.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from .atomic import write_json
from .errors import InputError
from .verify import jsonable
from .video.keep import source_layout
from .video.segments import JoinWriter, SegmentWriter, read_segment

#: Seconds of video per segment: what a resumed run may redo at most, and the unit the
#: encoder restarts at (one keyframe and a fresh rate control per segment).
SEGMENT_S = 10.0
_FORMAT = 1  # of job.json; another number: the folder was made by another version


def work_dir(output: Path) -> Path:
    """``out/edited.mp4`` -> ``out/edited.mp4.partial``: where its segments are kept."""
    return output.parent / (output.name + ".partial")


def input_fingerprint(path: Path, span: int = 1 << 20) -> dict:
    """The input's size and a SHA-256 of its first and last ``span`` bytes: cheap on a
    10 GB file, and a re-export or another file changes them."""
    digest = hashlib.sha256()
    if path.is_dir():  # a folder of frames: its files' names and sizes
        files = sorted((f.name, f.stat().st_size) for f in path.iterdir() if f.is_file())
        digest.update(json.dumps(files).encode())
        return {"name": path.name, "size": sum(size for _, size in files), "sha256_head_tail": digest.hexdigest()}
    size = path.stat().st_size
    with open(path, "rb") as f:
        digest.update(f.read(span))
        if size > span:
            f.seek(max(span, size - span))
            digest.update(f.read(span))
    return {"name": path.name, "size": size, "sha256_head_tail": digest.hexdigest()}


class ResumableOutput:
    """Pass 3's writer: ``write(frames, start)`` in clip order, then ``finish()``.

    ``writer_kwargs`` are ``VideoWriter``'s (fps, crf, seed, input_path, preset, ...).
    ``key``: what the frames depend on (``job_key``); ``resume``: the user's ``--resume``.
    ``done_frames`` frames (whole segments, from the start) are already on disk: frames
    before it are dropped, so the caller may skip editing them.
    """

    def __init__(self, output: Path, segment_frames: int, key: dict, resume: bool, **writer_kwargs):
        self.output, self.segment_frames, self.key = Path(output), int(segment_frames), key
        self.folder = work_dir(self.output)
        self.writer_kwargs = writer_kwargs
        self.reused = 0  # segments found finished
        self._writer: SegmentWriter | None = None
        self._wrote_job = False
        self._layout = None
        self._saved_plan = self.plan = None
        self.done_frames = self._check_folder(resume)

    def _check_folder(self, resume: bool) -> int:
        if not self.folder.exists():
            return 0
        if not self.folder.is_dir():
            raise InputError(f"{self.folder} is in the way of this job's work folder: move or delete it.")
        saved = None
        try:
            saved = json.loads((self.folder / "job.json").read_text())
        except (OSError, ValueError):
            pass
        finished = self._finished()
        if not finished:  # nothing worth keeping (a run that stopped before its first segment)
            shutil.rmtree(self.folder)
            return 0
        if not resume:
            raise InputError(f"{self.folder} holds {len(finished)} finished segments of an earlier run of this job "
                             "that stopped: pass --resume to continue it, or delete that folder to start over.")
        if saved is None or saved.get("format") != _FORMAT:
            raise InputError(f"{self.folder} was not written by this version of PhysioLatent: delete it and run "
                             "the job again.")
        for part, what in (("input", "another input file (or the input changed)"),
                           ("settings", "other settings")):
            if saved.get(part) != self.key[part]:
                differ = sorted(k for k in set(saved.get(part, {})) | set(self.key[part])
                                if saved.get(part, {}).get(k) != self.key[part].get(k))
                raise InputError(f"{self.folder} holds segments made from {what} (differs in: {', '.join(differ)}): "
                                 "resume with the original input and settings, or delete that folder to start over.")
        self.reused = len(finished)
        self._saved_plan = saved.get("plan")
        return sum(segment.frames for segment in finished)

    def _finished(self) -> list:
        """The finished segments from the first on (a gap ends them: later ones are redone)."""
        found, index = [], 0
        while (segment := read_segment(self.folder, index)) is not None:
            if segment.first_frame != index * self.segment_frames:
                break
            found.append(segment)
            index += 1
        return found

    def check_plan(self, plan: dict) -> None:
        """Refuse to resume if the editor planned differently than the run that wrote the
        segments (``plan``: the editor's ``info``); record it for a later resume."""
        plan = jsonable(plan)
        if self.reused and self._saved_plan is not None and self._saved_plan != plan:
            raise InputError(f"the editor planned another edit than the run that wrote the segments in {self.folder} "
                             "(a different version of PhysioLatent?): delete that folder to start over.")
        self.plan = plan

    def write(self, item: tuple[np.ndarray, int]) -> None:
        """Frames [t, H, W, 3] starting at clip frame ``start``, given as ``(frames, start)``."""
        frames, start = item
        while len(frames):
            if start < self.done_frames:  # in a finished segment
                skip = min(len(frames), self.done_frames - start)
                frames, start = frames[skip:], start + skip
                continue
            index = start // self.segment_frames
            if self._writer is None or self._writer.index != index:
                self._next_segment(index)
            take = min(len(frames), (index + 1) * self.segment_frames - start)
            self._writer.write(frames[:take])
            frames, start = frames[take:], start + take

    def _next_segment(self, index: int) -> None:
        if self._writer is not None:
            self._writer.close()
        if not self.folder.exists():
            self.folder.mkdir()
        if not self._wrote_job:  # before the first segment this run writes: what the segments are made of
            write_json(self.folder / "job.json", {"format": _FORMAT, **self.key, "plan": self.plan})
            self._wrote_job = True
        if self._layout is None and self.writer_kwargs.get("input_path") is not None:
            self._layout = source_layout(self.writer_kwargs["input_path"])  # one pass over the input, not one a segment
        self._writer = SegmentWriter(self.folder, index, index * self.segment_frames, self.output,
                                     layout=self._layout, **self.writer_kwargs)

    def finish(self, overwrite: bool) -> JoinWriter:
        """Save the last segment, join them all into the output, remove the work folder;
        returns the closed join writer (its ``path``, ``kept``, ``frames_written``)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        with JoinWriter(self.output, overwrite=overwrite, **self.writer_kwargs) as joined:
            for segment in self._finished():
                joined.append(segment)
        shutil.rmtree(self.folder, ignore_errors=True)
        return joined

    def abort(self) -> None:
        """Drop the segment being written; the finished ones stay for a resume."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def job_key(request, fps: float, kind: str, segment_frames: int) -> dict:
    """What a job's segments depend on: its input, and every setting that changes its frames."""
    from . import __version__

    network = request.network
    settings = {
        "mode": request.mode, "target": str(request.face_targets or request.target), "decoy": str(request.decoy),
        "output_kind": kind, "fps": fps, "crf": request.crf, "preset": request.preset, "bit_depth": request.bit_depth,
        "robust_to": request.robust_to, "amplitude": request.amplitude, "min_psnr_db": request.min_psnr_db,
        "seed": request.seed, "hrv_rmssd_ms": request.hrv_rmssd_ms, "resp_rate": str(request.resp_rate_bpm),
        "network": None if network is None else {k: str(v) for k, v in vars(network).items()},
        "strength": request.strength,
        "segment_frames": segment_frames, "version": __version__,
    }
    return jsonable({"input": input_fingerprint(request.input), "settings": settings})
