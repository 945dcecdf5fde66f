"""One clip in a worker: :class:`ClipTask` (what a worker needs) and :func:`process_clip`
(its input prepared, ``pipeline.run_job``, its output and ground truth placed in the layout)."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, PhysioLatentError
from ..pipeline import JobRequest, NetworkFiles
from .layouts import DatasetClip, GroundTruth, _place, ground_truth

HIT_TOLERANCE_BPM = 3.0  # a reader "hits" a target within this (verify.TARGET_TOLERANCE_BPM)


@dataclass(frozen=True)
class ClipTask:
    """What a worker needs to process one clip: the clip, its job settings and its key."""

    clip: DatasetClip
    kind: str  # "edit" | "remove" | "measure" (estimate the HR only)
    target: str | None
    decoy: str | None
    key: str
    out_root: str
    run_dir: str
    job: dict  # JobRequest fields shared by every clip (methods, crf, ...)


def process_clip(task: ClipTask) -> dict:
    """Run one clip: prepare its input, ``pipeline.run_job``, write its output and ground
    truth into the output layout. Never raises for a bad clip: returns a record with
    ``status`` ``done``/``measured`` or ``failed`` and the ``reason``."""
    started = time.perf_counter()
    staging = Path(task.run_dir) / "staging" / f"{_safe(task.clip.id)}-{task.key[:8]}"
    record = {"clip": task.clip.id, "key": task.key, "kind": task.kind}
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        record.update(_process(task, staging))
        record["status"] = "measured" if task.kind == "measure" else "done"
    except PhysioLatentError as exc:
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a clip the library did not foresee: recorded, the run goes on
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["worker_pid"] = os.getpid()
    return record


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _process(task: ClipTask, staging: Path) -> dict:
    from ..pipeline import run_job

    clip = task.clip
    if clip.problem:
        raise InputError(clip.problem)
    source, fps = _job_input(clip, staging)
    network = task.job.get("network")
    common = {k: v for k, v in task.job.items() if k not in ("network", "figures")}
    reports = Path(task.run_dir) / "reports"
    report_path = reports / f"{_safe(clip.id)}.report.json"
    if task.kind == "measure":
        report = run_job(JobRequest(input=source, mode="estimate", fps=fps, methods=common["methods"], quiet=True))
        hr = report["verify"]["hr_bpm_median"]
        if hr is None:
            raise InputError(f"no reader found a heart rate in {clip.source}.")
        return {"measured_hr_bpm": hr}
    staged = staging / _staged_name(clip)
    figure = reports / f"{_safe(clip.id)}.png" if task.job.get("figures") else False
    request = JobRequest(input=source, mode=task.kind, output=staged, target=task.target, decoy=task.decoy, fps=fps,
                         report=report_path, figure=figure, overwrite=True, quiet=True,
                         network=NetworkFiles(**network) if network else None, **common)
    report = run_job(request)
    truth = ground_truth(request, report)
    outputs = _place(clip, staged, Path(task.out_root), truth)
    return _summarise(clip, request, report, truth, outputs, report_path)


def _job_input(clip: DatasetClip, staging: Path) -> tuple[Path, float | None]:
    """The path ``run_job`` reads (a video or a folder of frames) and the fps to force."""
    if clip.layout == "pure":
        return Path(clip.source) / Path(clip.source).name, clip.fps  # PNG frames; fps from their timestamps
    if clip.layout == "mmpd":
        return _mat_to_video(Path(clip.source), staging / "input.mkv", clip.fps), None
    return Path(clip.source), None


def _staged_name(clip: DatasetClip) -> str:
    if clip.layout == "pure":
        return "frames/"
    if clip.layout in ("ubfc", "mmpd"):
        return "out.mkv"
    suffix = Path(clip.out).suffix.lower()
    return "out" + (".mkv" if suffix == ".avi" else suffix)  # an .avi is re-wrapped from lossless .mkv


def _mat_to_video(mat: Path, out: Path, fps: float) -> Path:
    """MMPD's ``video`` variable as a lossless .mkv (8-bit, as MMPD's frames were recorded)."""
    from scipy import io as sio

    from ..video import write_video

    video = np.asarray(sio.loadmat(str(mat), variable_names=["video"])["video"])
    frames = video.astype(np.float32) / (255.0 if video.max() > 1.5 else 1.0)
    return Path(write_video(out, frames, fps, dither=False))


def _summarise(clip: DatasetClip, request: JobRequest, report: dict, truth: GroundTruth, outputs: list[str],
               report_path: Path) -> dict:
    """What the run summary needs of one clip's report."""
    checked = report.get("verify") or {}
    aim = request.aim
    before = checked.get("hr_bpm_before") or {}
    after = checked.get("hr_bpm") or {}
    hits = {}
    if aim is not None and aim.kind == "constant":
        hits = {m: bool(v is not None and abs(v - aim.bpm[0]) <= HIT_TOLERANCE_BPM) for m, v in after.items()}
    elif aim is None and before:  # a removal hits where the reader no longer finds the subject's HR
        hits = {m: bool(v is None or before.get(m) is None or abs(v - before[m]) > HIT_TOLERANCE_BPM)
                for m, v in after.items()}
    return {
        "mode": request.mode, "target": None if aim is None else str(aim),
        "target_hr_bpm": None if aim is None else float(np.mean(truth.hr_bpm)),
        "hr_before_bpm": clip.truth_hr_bpm if clip.truth_hr_bpm is not None else checked.get("hr_bpm_median_before"),
        "hr_after_bpm": checked.get("hr_bpm_median"), "hr_after_by_reader": after, "hits": hits,
        "psnr_db": checked.get("psnr_db"), "outputs": outputs, "report": str(report_path),
    }
