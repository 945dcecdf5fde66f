"""Dataset layouts, in and out: the clips of a dataset root or manifest (:func:`detect_layout`,
:func:`list_clips`), and each clip's output and ground truth placed in the dataset's own
format (UBFC ``ground_truth.txt``, PURE JSON ``/FullPackage``, MMPD ``GT_ppg``, our
``<stem>.json`` sidecar for folders and manifests; :func:`ground_truth`).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, PhysioLatentError
from ..pipeline import JobRequest

if TYPE_CHECKING:
    from .run import BatchRequest

LAYOUTS = ("ubfc", "pure", "mmpd", "folder", "manifest")
_FOLDER_SUFFIX_OUT = {".webm": ".mkv"}  # the writer has no VP8/VP9: WebM inputs come back as lossless .mkv


# --------------------------------------------------------------------------- layouts in


@dataclass(frozen=True)
class DatasetClip:
    """One clip of a dataset: where it is, where it goes, what the dataset says of it."""

    id: str  # unique within the dataset, also its path in the run's records
    layout: str
    source: str  # the file (or PURE: the recording folder) read
    out: str  # where the output goes, relative to the output root
    fps: float
    num_frames: int
    subject_id: str
    files: tuple[str, ...]  # every input file the clip's output depends on (hashed)
    truth_hr_bpm: float | None = None  # the dataset's ground-truth HR, if it has one
    mode: str | None = None  # manifest rows may set their own
    target: str | None = None
    problem: str | None = None  # why the dataset's reader could not read it (the clip then fails)


def detect_layout(root: Path) -> str:
    """The layout of ``root``: a .csv/.jsonl file is a manifest; a folder is PURE
    (``NN-NN/NN-NN.json``), UBFC-rPPG (``*/vid.avi``), MMPD (``subject*/p*_*.mat``) or a
    folder of videos."""
    from ..data.readers import VIDEO_EXTS

    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".csv", ".jsonl"):
            return "manifest"
        raise InputError(f"{root} is a file: give a dataset folder or a .csv/.jsonl manifest of clips.")
    if not root.is_dir():
        raise InputError(f"dataset root {root} does not exist: give the folder that holds the dataset.")
    subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if any(re.fullmatch(r"\d+-\d+", p.name) and (p / f"{p.name}.json").exists() for p in subdirs):
        return "pure"
    if any((p / "vid.avi").exists() for p in subdirs):
        return "ubfc"
    if any(root.glob("subject*/p*_*.mat")):
        return "mmpd"
    if any(p.suffix.lower() in VIDEO_EXTS for p in root.iterdir() if p.is_file()):
        return "folder"
    raise InputError(f"cannot tell the layout of {root}: expected UBFC-rPPG (subject*/vid.avi), PURE "
                     "(NN-NN/NN-NN.json), MMPD (subject*/p*_*.mat) or a folder of videos; pass --layout.")


def list_clips(root: Path, layout: str) -> list[DatasetClip]:
    """Every clip of the dataset at ``root`` (read with ``data.readers``), in its order.

    A reader reads a whole dataset or raises; when one clip is unreadable, each clip is
    read on its own (through a folder of links to it), so that one clip fails, not the run.
    """
    if layout == "manifest":
        clips = _manifest_clips(Path(root))
    else:
        try:
            clips = _read_layout(Path(root), layout)
        except PhysioLatentError:
            clips = _read_one_by_one(Path(root), layout)
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise InputError(f"{root}: two clips would be written to the same place ({_first_repeat(ids)}); rename one.")
    return clips


def _candidates(root: Path, layout: str) -> list[tuple[str, list[Path]]]:
    """(clip id, the paths a reader needs to see) for each clip the layout's reader would look at."""
    from ..data.readers import VIDEO_EXTS

    if layout == "ubfc":
        return [(p.name, [p]) for p in sorted(root.iterdir()) if p.is_dir() and (p / "vid.avi").exists()]
    if layout == "pure":
        return [(p.name, [p]) for p in sorted(root.iterdir()) if p.is_dir() and re.fullmatch(r"\d+-\d+", p.name)]
    if layout == "mmpd":
        return [(f"{m.parent.name}/{m.name}", [m]) for m in sorted(root.glob("subject*/p*_*.mat"))]
    videos = sorted(p for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTS)
    extra = [root / "labels.csv"] if (root / "labels.csv").exists() else []
    return [(v.name, [v, *[s for s in [v.with_suffix(".json")] if s.exists()], *extra]) for v in videos]


def _read_one_by_one(root: Path, layout: str) -> list[DatasetClip]:
    import tempfile

    clips = []
    for clip_id, paths in _candidates(root, layout):
        with tempfile.TemporaryDirectory(prefix="physiolatent-clip-") as view:
            view = Path(view)
            for path in paths:  # the same relative place in a folder of its own
                link = view / path.relative_to(root)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve(), target_is_directory=path.is_dir())
            try:
                found = _read_layout(view, layout)
            except PhysioLatentError as exc:
                files = tuple(str(f) for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))
                              if f.is_file())
                clips.append(DatasetClip(clip_id, layout, str(paths[0]), _out_name(clip_id) if layout == "folder"
                                         else clip_id, 0.0, 0, clip_id, files, problem=str(exc)))
                continue
        for c in found:  # paths back from the view to the dataset
            clips.append(replace(c, source=_unview(c.source, view, root),
                                 files=tuple(_unview(f, view, root) for f in c.files)))
    return clips


def _unview(path: str, view: Path, root: Path) -> str:
    return str(root / Path(path).relative_to(view)) if Path(path).is_relative_to(view) else path


def _read_layout(root: Path, layout: str) -> list[DatasetClip]:
    from ..data import readers

    clips = []
    if layout == "ubfc":
        for c in readers.read_ubfc(root):
            sub = Path(c.source).parent
            clips.append(DatasetClip(sub.name, layout, c.source, sub.name, c.fps, c.num_frames, c.subject_id,
                                     (c.source, str(sub / "ground_truth.txt")), c.hr_bpm))
    elif layout == "pure":
        for c in readers.read_pure(root):
            rec = Path(c.source)
            clips.append(DatasetClip(rec.name, layout, c.source, rec.name, c.fps, c.num_frames, c.subject_id,
                                     (str(rec / f"{rec.name}.json"), *map(str, _pure_frames(rec))), c.hr_bpm))
    elif layout == "mmpd":
        for c in readers.read_mmpd(root):
            mat = Path(c.source)
            rel = f"{mat.parent.name}/{mat.name}"
            clips.append(DatasetClip(rel, layout, c.source, rel, c.fps, c.num_frames, c.subject_id, (c.source,),
                                     _ppg_hr(c.ppg, c.fps)))
    elif layout == "folder":
        for c in readers.read_folder(root):
            video = Path(c.source)
            sidecar_file = video.with_suffix(".json")
            files = (c.source, *((str(sidecar_file),) if sidecar_file.exists() else ()))
            hr = c.hr_bpm if c.hr_bpm is not None else _ppg_hr(c.ppg, c.fps)
            clips.append(DatasetClip(video.name, layout, c.source, _out_name(video.name), c.fps, c.num_frames,
                                     c.subject_id, files, hr))
    else:
        raise InputError(f"unknown layout {layout!r}; choose one of {LAYOUTS}.")
    return clips


def _first_repeat(items):
    seen = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _out_name(name: str) -> str:
    path = Path(name)
    return str(path.with_suffix(_FOLDER_SUFFIX_OUT.get(path.suffix.lower(), path.suffix)))


def _ppg_hr(ppg, fps: float) -> float | None:
    """HR of a ground-truth PPG trace (spectral peak), None when there is none."""
    if ppg is None or len(ppg) < 8 or not np.isfinite(ppg).all() or np.ptp(ppg) == 0:
        return None
    from ..rppg import estimate_hr

    hr = estimate_hr(np.asarray(ppg, np.float64) - np.mean(ppg), fps)
    return float(hr) if np.isfinite(hr) else None


def _pure_frames(rec: Path) -> list[Path]:
    return sorted((rec / rec.name).glob("Image*.png"), key=lambda f: int(re.sub(r"\D", "", f.stem)))


def _manifest_clips(path: Path) -> list[DatasetClip]:
    """Rows of a CSV (header ``path[,mode][,target]``) or JSONL manifest; relative paths
    are relative to the manifest's folder, and keep that place under the output root."""
    from ..data.readers import _probe

    rows = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    else:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{n} is not a JSON object ({exc}).") from None
    if not rows:
        raise InputError(f"the manifest {path} lists no clips.")
    base = path.parent.resolve()
    clips = []
    for n, row in enumerate(rows, 1):
        if not row.get("path"):
            raise InputError(f"{path}: row {n} has no 'path' (columns: path, optional mode and target).")
        mode = (row.get("mode") or "").strip() or None
        if mode not in (None, "edit", "remove"):
            raise InputError(f"{path}: row {n} has mode {mode!r}; use edit or remove.")
        video = Path(row["path"]).expanduser()
        video = (base / video) if not video.is_absolute() else video
        if not video.is_file():
            raise InputError(f"{path}: row {n}: {video} does not exist.")
        try:
            rel = video.resolve().relative_to(base)
        except ValueError:  # outside the manifest's folder: its name alone
            rel = Path(video.name)
        try:
            fps, frames, problem = *_probe(video), None
        except PhysioLatentError as exc:  # this clip fails, the others run
            fps, frames, problem = 0.0, 0, str(exc)
        target = row.get("target")
        target = None if target in (None, "") else str(target)
        clips.append(DatasetClip(str(rel), "manifest", str(video), _out_name(str(rel)), fps, frames, video.stem,
                                 (str(video),), None, mode, target, problem))
    return clips


# --------------------------------------------------------------------------- layouts out


@dataclass
class GroundTruth:
    """The new ground truth of a clip, per frame: ``ppg`` [T] (blood volume, unit std;
    zeros after a removal), ``hr_bpm`` [T] (0 after a removal), at ``fps``."""

    ppg: np.ndarray
    hr_bpm: np.ndarray
    fps: float


def ground_truth(request: JobRequest, report: dict) -> GroundTruth:
    """The pulse the job injected and its HR (a removal without decoy: none)."""
    from ..pulse import hr_curve, synth_pulse

    n, fps = int(report["input"]["num_frames"]), float(report["settings"]["fps"])
    aim = request.aim
    if aim is None:
        return GroundTruth(np.zeros(n), np.zeros(n), fps)
    if request.network is None:
        from ..editor import injected_wave

        wave = injected_wave(n, fps, aim, seed=request.seed, rmssd_ms=request.hrv_rmssd_ms,
                             resp_rate=request.resp_rate_bpm)
    else:  # the network injects no waveform we know: a nominal pulse at the target
        wave = synth_pulse(n, fps, aim, hrv_ms=0.0, seed=request.seed).wave
    return GroundTruth(np.asarray(wave, np.float64), hr_curve(aim, n, fps), fps)



def _place(clip: DatasetClip, staged: Path, out_root: Path, truth: GroundTruth) -> list[str]:
    """Move the staged output into the output layout and write its ground truth there."""
    from ..atomic import atomic_path, write_json

    target = out_root / clip.out
    target.parent.mkdir(parents=True, exist_ok=True)
    if clip.layout == "ubfc":
        video = target / "vid.avi"
        target.mkdir(exist_ok=True)
        _mkv_to_avi(staged, video)
        t = np.arange(len(truth.ppg)) / truth.fps
        with atomic_path(target / "ground_truth.txt") as tmp:
            tmp.write_text("\n".join(" ".join(f"{v:.7e}" for v in row) for row in (truth.ppg, truth.hr_bpm, t)) + "\n")
        return [str(video), str(target / "ground_truth.txt")]
    if clip.layout == "pure":
        return _place_pure(clip, staged, target, truth)
    if clip.layout == "mmpd":
        _write_mat(Path(clip.source), staged, target, truth)
        return [str(target)]
    # folder / manifest: the video under its own name, the labels in our <stem>.json sidecar
    if target.suffix.lower() == ".avi":
        _mkv_to_avi(staged, target)
    else:
        os.replace(staged, target)  # staged beside the output root: same file system
    label = {"hr_bpm": float(np.mean(truth.hr_bpm)), "subject_id": clip.subject_id, "fps": truth.fps,
             "ppg": [round(float(v), 5) for v in truth.ppg], "hr_curve_bpm": [round(float(v), 3) for v in truth.hr_bpm]}
    sidecar_path = target.with_suffix(".json")
    write_json(sidecar_path, label)
    return [str(target), str(sidecar_path)]


def _mkv_to_avi(mkv: Path, avi: Path) -> None:
    """Re-wrap a lossless FFV1 .mkv as .avi (FFV1 again, the same 8-bit frames): an AVI
    keeps a frame rate, not the .mkv's millisecond timestamps, so packets are not copied."""
    from fractions import Fraction

    import av

    from ..atomic import atomic_path

    with av.open(str(mkv)) as inp, atomic_path(avi) as tmp:
        src = inp.streams.video[0]
        rate = Fraction(src.average_rate or src.guessed_rate).limit_denominator(1001)
        with av.open(str(tmp), "w") as out:
            dst = out.add_stream("ffv1", rate=rate)
            dst.width, dst.height, dst.pix_fmt = src.codec_context.width, src.codec_context.height, "bgr0"
            dst.options = {"level": "3", "slices": "4"}
            for i, frame in enumerate(inp.decode(src)):
                frame.pts, frame.time_base = i, 1 / rate  # frame i at i / fps: the AVI's own clock
                out.mux(dst.encode(frame))
            out.mux(dst.encode())


def _place_pure(clip: DatasetClip, staged: Path, target: Path, truth: GroundTruth) -> list[str]:
    """PURE: the frames under their original names (``Image<ns>.png``), the JSON with a
    ``/FullPackage`` entry per frame (at the frame's timestamp) holding the new pulse."""
    from ..atomic import AtomicPath, write_json

    rec = Path(clip.source)
    names = [f.name for f in _pure_frames(rec)]
    frames = sorted(staged.iterdir())
    if len(frames) != len(names):
        raise InputError(f"{rec}: wrote {len(frames)} frames for {len(names)} inputs.")
    target.mkdir(exist_ok=True)
    folder = AtomicPath(target / rec.name)
    folder.tmp.mkdir()
    try:
        for frame, name in zip(frames, names):
            os.replace(frame, folder.tmp / name)
        folder.commit()
    except BaseException:
        folder.discard()
        raise
    labels = json.loads((rec / f"{rec.name}.json").read_text())
    old = labels.get("/FullPackage") or [{}]
    extra = {k: v for k, v in (old[0].get("Value") or {}).items() if k not in ("waveform", "pulseRate")}
    stamps = [int(re.sub(r"\D", "", Path(n).stem)) for n in names]
    labels["/FullPackage"] = [{"Timestamp": ts, "Value": {"waveform": round(float(w), 5), "pulseRate": round(float(h), 3),
                                                          **extra}}
                              for ts, w, h in zip(stamps, truth.ppg, truth.hr_bpm)]
    json_path = target / f"{rec.name}.json"
    write_json(json_path, labels)
    return [str(target / rec.name), str(json_path)]


def _write_mat(source: Path, staged: Path, target: Path, truth: GroundTruth) -> None:
    """MMPD: the original .mat's variables, with ``video`` (in the input's value range and
    type) and ``GT_ppg`` [1,T] replaced."""
    from scipy import io as sio

    from ..atomic import atomic_path
    from ..video import read_video

    data = {k: v for k, v in sio.loadmat(str(source)).items() if not k.startswith("__")}
    original = np.asarray(data["video"])
    frames, _ = read_video(staged)
    if np.issubdtype(original.dtype, np.integer) or original.max() > 1.5:
        video = np.round(frames * 255.0).astype(original.dtype)
    else:
        video = frames.astype(original.dtype)
    data["video"] = video
    data["GT_ppg"] = truth.ppg[None, :]
    with atomic_path(target) as tmp:
        sio.savemat(str(tmp), data)


def _write_labels(request: BatchRequest, layout: str, clips: list[DatasetClip], records: dict) -> None:
    """Folder: a ``labels.csv`` beside the outputs when the input had one; manifest: the
    manifest of the outputs (path, mode, target, hr_bpm), in the input's format."""
    from ..atomic import atomic_path

    done = {}
    for clip in clips:
        for mode in ("edit", "remove"):
            record = records.get(f"{mode}:{clip.id}")
            if record and record["status"] == "done":
                done[clip.id] = (clip, record)
    if layout == "folder":
        src = request.root / "labels.csv"
        if not src.exists():
            return
        with open(src, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields, rows = list(reader.fieldnames or []), list(reader)
        fields += [] if "hr_bpm" in fields else ["hr_bpm"]
        by_name = {Path(c.source).name: (c, r) for c, r in done.values()}
        out_rows = []
        for row in rows:
            hit = by_name.get(Path(row["file"]).name)
            if hit:
                out_rows.append({**row, "file": Path(hit[0].out).name, "hr_bpm": _fmt(hit[1].get("target_hr_bpm"))})
        with atomic_path(request.out_root / "labels.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(out_rows)
        return
    rows = [{"path": c.out, "mode": r["mode"], "target": r.get("target") or "", "hr_bpm": _fmt(r.get("target_hr_bpm"))}
            for c, r in done.values()]
    name = request.out_root / request.root.name
    with atomic_path(name) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        if name.suffix.lower() == ".csv":
            writer = csv.DictWriter(f, fieldnames=["path", "mode", "target", "hr_bpm"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.writelines(json.dumps(row) + "\n" for row in rows)


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}"
