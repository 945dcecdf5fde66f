"""Readers for the rPPG datasets the paper uses, a generic folder, and synthetic subjects.

Every reader returns ``list[Clip]`` with lazy frame loaders (nothing is decoded
until a training window asks for it) and the ground-truth PPG resampled to the
frame times. Layouts (as distributed, and as rPPG-Toolbox expects them):

UBFC-rPPG (DATASET_2)::

    root/subject1/vid.avi
    root/subject1/ground_truth.txt   # 3 lines: PPG values, HR (bpm), time (s)

PURE::

    root/01-01/01-01/Image<ns timestamp>.png ...   # lossless frames, ~30 fps
    root/01-01/01-01.json   # {"/FullPackage": [{"Timestamp": ns, "Value": {"waveform", "pulseRate", ...}}],
                            #  "/Image": [{"Timestamp": ns}, ...]}
    # subject = the part before the dash (01-01 .. 01-07 are subject 01)

MMPD::

    root/subject1/p1_0.mat   # MATLAB v5: "video" [T,H,W,3] float 0..1, "GT_ppg" [1,T]; 30 fps

Generic folder::

    root/*.mp4|avi|mov|mkv|webm  with optional labels: root/labels.csv
    (columns file, hr_bpm[, subject_id]) or a sidecar <stem>.json
    ({"hr_bpm": .., "subject_id": .., "ppg": [..], "fps": ..}); subject = file stem by default.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np

from ..errors import InputError, VideoError
from .records import Clip

__all__ = ["read_dataset", "read_folder", "read_mmpd", "read_pure", "read_synthetic", "read_ubfc"]

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


# --------------------------------------------------------------------------- video helpers


def _probe(path: Path) -> tuple[float, int]:
    """(fps, num_frames) of a video file; counts packets when the header has no frame count."""
    import av  # noqa: PLC0415

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            n = int(stream.frames or 0)
            if n <= 0:
                n = sum(1 for p in container.demux(stream) if p.size > 0)
    except (av.error.FFmpegError, IndexError) as exc:
        raise VideoError(f"could not read video {path}: {exc}. Check the file plays and is not truncated.") from exc
    if fps <= 0 or n <= 0:
        raise VideoError(f"video {path} reports fps={fps}, frames={n}; re-encode it with a constant frame rate.")
    return fps, n


def _video_loader(path: Path):
    """A ``(start, stop) -> [t,H,W,3] float32`` loader for a video file.

    Uses ``video.iter_frames`` (the project's PyAV reader) when present; decodes
    directly with PyAV otherwise.
    """

    def load(start: int, stop: int) -> np.ndarray:
        try:
            from ..video import iter_frames  # noqa: PLC0415
        except ImportError:
            iter_frames = None
        if iter_frames is not None:
            return np.concatenate(list(iter_frames(str(path), start=start, stop=stop)), axis=0)
        import av  # noqa: PLC0415

        out = []
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= stop:
                    break
                if i >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
        return np.stack(out).astype(np.float32) / 255.0

    return load


def _png_loader(files: list[Path]):
    import cv2  # noqa: PLC0415

    def load(start: int, stop: int) -> np.ndarray:
        frames = []
        for f in files[start:stop]:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise VideoError(f"could not read frame {f}; the file is missing or corrupt.")
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(frames).astype(np.float32) / 255.0

    return load


def _resample(values: np.ndarray, times: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of a sensor trace onto the frame times (float32)."""
    order = np.argsort(times)
    return np.interp(frame_times, times[order], values[order]).astype(np.float32)


def _require_dir(root, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{what} folder {root} does not exist; pass the folder that holds the dataset.")
    return root


# --------------------------------------------------------------------------- datasets


def read_ubfc(root) -> list[Clip]:
    """UBFC-rPPG DATASET_2: ``subject*/vid.avi`` + ``ground_truth.txt``. Subject = folder name."""
    root = _require_dir(root, "UBFC-rPPG")
    clips = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and (p / "vid.avi").exists()):
        gt_file = sub / "ground_truth.txt"
        if not gt_file.exists():
            raise InputError(f"{sub} has vid.avi but no ground_truth.txt; UBFC DATASET_2 layout expected.")
        lines = [ln.split() for ln in gt_file.read_text().strip().splitlines() if ln.strip()]
        if len(lines) < 3:
            raise InputError(f"{gt_file} must have 3 lines (PPG, HR, time); found {len(lines)}.")
        ppg, hr, t_s = (np.asarray(ln, dtype=np.float64) for ln in lines[:3])
        if not len(ppg) == len(hr) == len(t_s):
            raise InputError(f"{gt_file}: PPG, HR and time lines differ in length ({len(ppg)}, {len(hr)}, {len(t_s)}).")
        fps, n = _probe(sub / "vid.avi")
        frame_t = t_s[0] + np.arange(n) / fps
        clips.append(
            Clip(
                subject_id=sub.name,
                fps=fps,
                num_frames=n,
                source=str(sub / "vid.avi"),
                ppg=_resample(ppg, t_s, frame_t),
                hr_bpm=float(np.median(hr)),
                _loader=_video_loader(sub / "vid.avi"),
            )
        )
    if not clips:
        raise InputError(f"no UBFC-rPPG subjects (subject*/vid.avi) under {root}.")
    return clips


def read_pure(root) -> list[Clip]:
    """PURE: ``NN-NN/NN-NN/Image<ns>.png`` + ``NN-NN/NN-NN.json``. Subject = part before the dash."""
    root = _require_dir(root, "PURE")
    clips = []
    for rec in sorted(p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"\d+-\d+", p.name)):
        frame_dir, label_file = rec / rec.name, rec / f"{rec.name}.json"
        if not label_file.exists():
            raise InputError(f"PURE recording {rec} lacks {label_file.name}.")
        pngs = sorted(frame_dir.glob("Image*.png"), key=lambda f: int(re.sub(r"\D", "", f.stem)))
        if len(pngs) < 2:
            raise InputError(f"PURE recording {rec} has {len(pngs)} Image*.png frames in {frame_dir}.")
        frame_ns = np.asarray([int(re.sub(r"\D", "", f.stem)) for f in pngs], dtype=np.float64)
        labels = json.loads(label_file.read_text())
        try:
            pkgs = labels["/FullPackage"]
            ppg_ns = np.asarray([p["Timestamp"] for p in pkgs], dtype=np.float64)
            wave = np.asarray([p["Value"]["waveform"] for p in pkgs], dtype=np.float64)
            hr = np.asarray([p["Value"]["pulseRate"] for p in pkgs], dtype=np.float64)
        except (KeyError, TypeError) as exc:
            raise InputError(f"{label_file}: expected /FullPackage entries with Timestamp and Value.waveform/pulseRate ({exc}).") from exc
        fps = 1e9 / float(np.median(np.diff(frame_ns)))
        clips.append(
            Clip(
                subject_id=rec.name.split("-")[0],
                fps=fps,
                num_frames=len(pngs),
                source=str(rec),
                ppg=_resample(wave, ppg_ns, frame_ns),
                hr_bpm=float(np.median(hr)),
                _loader=_png_loader(pngs),
            )
        )
    if not clips:
        raise InputError(f"no PURE recordings (NN-NN folders) under {root}.")
    return clips


def read_mmpd(root, fps: float = 30.0) -> list[Clip]:
    """MMPD: ``subject*/p*_*.mat`` (MATLAB v5; ``video`` [T,H,W,3] 0..1, ``GT_ppg``). Subject = folder."""
    from scipy import io as sio  # noqa: PLC0415

    root = _require_dir(root, "MMPD")
    clips = []
    for mat in sorted(root.glob("subject*/p*_*.mat")):
        try:
            shapes = {name: shape for name, shape, _ in sio.whosmat(str(mat))}
            gt = sio.loadmat(str(mat), variable_names=["GT_ppg"])["GT_ppg"]
        except (NotImplementedError, ValueError, OSError) as exc:
            raise InputError(
                f"could not read {mat} as a MATLAB v5 file ({exc}). MMPD ships v5 .mat files; "
                "re-save v7.3 files with save(..., '-v7')."
            ) from exc
        if "video" not in shapes:
            raise InputError(f"{mat} has no 'video' variable (found {sorted(shapes)}).")
        n = int(shapes["video"][0])
        ppg = np.asarray(gt, dtype=np.float64).T.reshape(-1)
        # GT_ppg is one sample per frame in MMPD; stretch it onto the frames if not.
        ppg = _resample(ppg, np.linspace(0, 1, len(ppg)), np.linspace(0, 1, n))

        def load(start, stop, mat=mat):
            video = sio.loadmat(str(mat), variable_names=["video"])["video"]
            video = np.asarray(video[start:stop], dtype=np.float32)
            return video / 255.0 if video.max() > 1.5 else video

        clips.append(Clip(subject_id=mat.parent.name, fps=fps, num_frames=n, source=str(mat), ppg=ppg, _loader=load))
    if not clips:
        raise InputError(f"no MMPD recordings (subject*/p*_*.mat) under {root}.")
    return clips


def read_folder(root) -> list[Clip]:
    """Every video in ``root`` (not recursive), with labels from labels.csv or <stem>.json if present."""
    root = _require_dir(root, "video")
    table: dict[str, dict] = {}
    if (root / "labels.csv").exists():
        with open(root / "labels.csv", newline="") as f:
            for row in csv.DictReader(f):
                if "file" not in row:
                    raise InputError(f"{root / 'labels.csv'} needs a 'file' column (and hr_bpm, optional subject_id).")
                table[Path(row["file"]).name] = row
    clips = []
    for video in sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTS):
        label = dict(table.get(video.name, {}))
        sidecar = video.with_suffix(".json")
        if sidecar.exists():
            label.update(json.loads(sidecar.read_text()))
        fps, n = _probe(video)
        fps = float(label.get("fps") or fps)
        ppg = label.get("ppg")
        if ppg is not None:
            ppg = np.asarray(ppg, dtype=np.float64)
            ppg = _resample(ppg, np.linspace(0, 1, len(ppg)), np.linspace(0, 1, n))
        hr = label.get("hr_bpm")
        clips.append(
            Clip(
                subject_id=str(label.get("subject_id") or video.stem),
                fps=fps,
                num_frames=n,
                source=str(video),
                ppg=ppg,
                hr_bpm=float(hr) if hr not in (None, "") else None,
                _loader=_video_loader(video),
            )
        )
    if not clips:
        raise InputError(f"no videos ({', '.join(VIDEO_EXTS)}) in {root}.")
    return clips


def read_synthetic(
    n_subjects: int = 4,
    duration_s: float = 6.0,
    fps: float = 15.0,
    size: tuple[int, int] = (96, 96),
    hr_range_bpm: tuple[float, float] = (55.0, 110.0),
    seed: int = 0,
    **synth_kwargs,
) -> list[Clip]:
    """Synthetic subjects from ``synth.synth_subject`` (one clip each, subject ``syn<i>``),
    with uniformly drawn HRs; their skin masks travel in ``Clip.mask``."""
    from ..synth import synth_subject  # noqa: PLC0415 - helper "synth-cli"

    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_subjects):
        hr = float(rng.uniform(*hr_range_bpm))
        s = synth_subject(duration_s=duration_s, fps=fps, hr_bpm=hr, size=size, seed=seed * 1000 + i, **synth_kwargs)
        frames = np.asarray(s.frames, dtype=np.float32)
        clips.append(
            Clip(
                subject_id=f"syn{i}",
                fps=float(s.fps),
                num_frames=frames.shape[0],
                source=f"synthetic:{seed * 1000 + i}",
                ppg=np.asarray(s.ppg, dtype=np.float32),
                hr_bpm=float(s.hr_bpm),
                mask=np.asarray(s.skin_mask, dtype=np.float32),
                _frames=frames,
            )
        )
    return clips


READERS = {"ubfc": read_ubfc, "pure": read_pure, "mmpd": read_mmpd, "folder": read_folder}


def read_dataset(kind: str, root=None, **kwargs) -> list[Clip]:
    """Dispatch: ``kind`` in ubfc / pure / mmpd / folder (with ``root``) or synthetic (kwargs)."""
    if kind == "synthetic":
        return read_synthetic(**kwargs)
    if kind not in READERS:
        raise InputError(f"unknown dataset kind {kind!r}; choose one of {sorted(READERS) + ['synthetic']}.")
    if root is None:
        raise InputError(f"dataset kind {kind!r} needs a root folder.")
    return READERS[kind](root, **kwargs)
