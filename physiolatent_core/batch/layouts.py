"""Whole datasets: every clip of a dataset edited (or its pulse removed) into the same layout.

    run_batch(BatchRequest(root="UBFC", out_root="UBFC_100", target="100"))

* **Layouts in and out.** The input is a dataset root in a layout ``data.readers`` reads
  (UBFC-rPPG, PURE, MMPD, a folder of videos) or a CSV/JSONL manifest of clips (columns
  ``path`` and optional ``mode``, ``target``). The output is the same layout under a new
  root, so the dataset's own loaders read it unchanged, with the ground truth rewritten in
  the dataset's own format (UBFC ``ground_truth.txt``, PURE JSON ``/FullPackage``, MMPD
  ``GT_ppg``, our ``<stem>.json`` sidecar for folders and manifests): the pulse injected
  and its heart rate, not the subject's.
* **Target policies** (:func:`parse_policy`): one target for every clip (``100``,
  ``70:120``, ``0s=70, 8s=110``), a list dealt out in clip order (``60,80,100``), a
  seeded uniform draw per clip (``uniform:40-180``), an HR-balanced set
  (``balanced:50-150``: targets evenly spaced over the band, given by rank of each clip's
  measured HR, so the output histogram is flat and every clip moves the least it can), or
  removal (``BatchRequest(remove=True)``).
* **Resumable.** ``OUT_ROOT/.physiolatent/`` holds the run: ``manifest.jsonl`` (one line
  appended per finished clip, keyed by the content hash of its input files and the
  settings), ``reports/`` (each clip's ``pipeline.run_job`` report), ``summary.json`` and
  ``summary.png``. A rerun skips clips done with the same key and retries failed ones; a
  kill loses only the clips in flight (their work is in ``staging/``, cleared on start).
  Inputs are only read; every output file is written atomically.
* **Engines.** ``local``: a process pool sized to the cores, with a progress bar and ETA.
  ``ray``: Ray Core tasks (one per clip, ``max_retries``, CPU/GPU hints) on a cluster
  (``ray_address``) or a local Ray; the network path runs in actors, so each worker loads
  the weights once. A clip that fails is recorded with its reason and the run goes on.

The per-clip work (:func:`process_clip`) runs in the workers; the manifest, the policies
and the summary stay in the calling process, which alone writes the run's records.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .errors import InputError, PhysioLatentError
from .pipeline import JobRequest, NetworkFiles
from .rppg import DEFAULT_METHODS

LAYOUTS = ("ubfc", "pure", "mmpd", "folder", "manifest")
ENGINES = ("local", "ray")
RUN_DIR = ".physiolatent"  # hidden: the datasets' loaders (ours, rPPG-Toolbox's) glob past it
HIT_TOLERANCE_BPM = 3.0  # a reader "hits" a target within this (verify.TARGET_TOLERANCE_BPM)
_FOLDER_SUFFIX_OUT = {".webm": ".mkv"}  # the writer has no VP8/VP9: WebM inputs come back as lossless .mkv
_HASH_BLOCK = 1 << 22


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class BatchRequest:
    """One batch run. ``target``: a policy (:func:`parse_policy`); ``remove``: remove the
    pulse instead (``decoy``: show this HR instead of noise). ``layout`` None: detected
    from the folder (:func:`detect_layout`). ``workers`` None: one per core."""

    root: Path
    out_root: Path
    target: str | None = None
    remove: bool = False
    decoy: str | float | None = None
    layout: str | None = None
    engine: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    gpus_per_clip: float = 0.0
    retries: int = 2
    methods: tuple[str, ...] = DEFAULT_METHODS
    crf: int = 18
    preset: str = "medium"
    robust_to: str | None = None
    amplitude: float | None = None
    min_psnr_db: float | None = None
    seed: int = 0
    verify: bool = True
    figures: bool = False
    network: NetworkFiles | None = None
    quiet: bool = False

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser())
        object.__setattr__(self, "out_root", Path(self.out_root).expanduser())
        if self.engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}; got {self.engine!r}.")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS} (or None to detect it); got {self.layout!r}.")
        if self.remove and self.target is not None:
            raise InputError("give either a target heart rate (--target-hr) or --remove, not both.")
        if self.decoy is not None and not self.remove:
            raise InputError("a decoy HR goes with --remove (it replaces the removed pulse).")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1; got {self.workers}.")
        if self.retries < 0:
            raise InputError(f"retries must be >= 0; got {self.retries}.")
        if self.target is not None:
            parse_policy(self.target)  # fail before any work


# --------------------------------------------------------------------------- target policies


@dataclass(frozen=True)
class Policy:
    """How clips get their targets: ``kind`` fixed | list | uniform | balanced."""

    kind: str
    values: tuple = ()  # fixed: (HRTarget,); list: bpm values; uniform/balanced: (low, high)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(self.values[0])
        if self.kind == "list":
            return ",".join(f"{v:g}" for v in self.values)
        return f"{self.kind}:{self.values[0]:g}-{self.values[1]:g}"


def parse_policy(spec) -> Policy:
    """``100`` / ``70:120`` / ``0s=70, 8s=110`` (every clip), ``60,80,100`` (a list dealt
    out in clip order), ``uniform:LO-HI`` (a seeded draw per clip), ``balanced:LO-HI``
    (a flat histogram over the band, by rank of each clip's measured HR)."""
    from .pulse import _check_bpm, parse_hr_target

    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if kind.lower() in ("uniform", "balanced"):
        match = re.fullmatch(r"\s*([\d.]+)\s*-\s*([\d.]+)\s*", rest)
        if not match:
            raise InputError(f"{kind} targets need a band like {kind}:50-150 (bpm); got {text!r}.")
        low, high = (_check_bpm(float(v), f"{kind} band edge") for v in match.groups())
        if not low < high:
            raise InputError(f"the {kind} band must go from low to high, like {kind}:50-150; got {text!r}.")
        return Policy(kind.lower(), (low, high))
    if "," in text and "=" not in text:
        values = tuple(parse_hr_target(v.strip()).bpm[0] for v in text.split(",") if v.strip())
        if not values:
            raise InputError(f"a target list needs numbers like 60,80,100; got {text!r}.")
        return Policy("list", values)
    return Policy("fixed", (parse_hr_target(spec if not isinstance(spec, str) else text),))


def assign_targets(policy: Policy, clip_ids: list[str], measured_bpm: dict[str, float | None],
                   seed: int = 0) -> dict[str, str]:
    """Target (as text ``parse_hr_target`` reads) of every clip in ``clip_ids`` (in the
    dataset's order). Every policy is deterministic: a rerun assigns the same targets."""
    if policy.kind == "fixed":
        target = policy.values[0]
        text = f"{target.bpm[0]:g}" if target.kind == "constant" else _target_text(target)
        return {c: text for c in clip_ids}
    if policy.kind == "list":
        return {c: f"{policy.values[i % len(policy.values)]:g}" for i, c in enumerate(clip_ids)}
    low, high = policy.values
    if policy.kind == "uniform":
        # A clip's draw depends on its name and the seed only, not on the other clips.
        return {c: f"{np.random.default_rng([seed, zlib.crc32(c.encode())]).uniform(low, high):.1f}"
                for c in clip_ids}
    # balanced: n evenly spaced targets (bin centres), matched by rank to the measured HRs.
    unknown = [c for c in clip_ids if measured_bpm.get(c) is None]
    if unknown:
        raise InputError(f"balanced targets need each clip's HR; none measured for {', '.join(unknown[:5])}.")
    n = len(clip_ids)
    levels = low + (np.arange(n) + 0.5) * (high - low) / n
    order = sorted(clip_ids, key=lambda c: (measured_bpm[c], c))
    return {c: f"{levels[i]:.1f}" for i, c in enumerate(order)}


def _target_text(target) -> str:
    if target.kind == "ramp":
        return ":".join(f"{b:g}" for b in target.bpm)
    return ", ".join(f"{t:g}s={b:g}" for t, b in zip(target.times_s, target.bpm))


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
    from .data.readers import VIDEO_EXTS

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
    from .data.readers import VIDEO_EXTS

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
    from .data import readers

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
    from .rppg import estimate_hr

    hr = estimate_hr(np.asarray(ppg, np.float64) - np.mean(ppg), fps)
    return float(hr) if np.isfinite(hr) else None


def _pure_frames(rec: Path) -> list[Path]:
    return sorted((rec / rec.name).glob("Image*.png"), key=lambda f: int(re.sub(r"\D", "", f.stem)))


def _manifest_clips(path: Path) -> list[DatasetClip]:
    """Rows of a CSV (header ``path[,mode][,target]``) or JSONL manifest; relative paths
    are relative to the manifest's folder, and keep that place under the output root."""
    from .data.readers import _probe

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


# --------------------------------------------------------------------------- one clip (in a worker)


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
    from .pipeline import run_job

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

    from .video import write_video

    video = np.asarray(sio.loadmat(str(mat), variable_names=["video"])["video"])
    frames = video.astype(np.float32) / (255.0 if video.max() > 1.5 else 1.0)
    return Path(write_video(out, frames, fps, dither=False))


@dataclass
class GroundTruth:
    """The new ground truth of a clip, per frame: ``ppg`` [T] (blood volume, unit std;
    zeros after a removal), ``hr_bpm`` [T] (0 after a removal), at ``fps``."""

    ppg: np.ndarray
    hr_bpm: np.ndarray
    fps: float


def ground_truth(request: JobRequest, report: dict) -> GroundTruth:
    """The pulse the job injected and its HR (a removal without decoy: none)."""
    from .pulse import hr_curve, synth_pulse

    n, fps = int(report["input"]["num_frames"]), float(report["settings"]["fps"])
    aim = request.aim
    if aim is None:
        return GroundTruth(np.zeros(n), np.zeros(n), fps)
    if request.network is None:
        from .editor import injected_wave

        wave = injected_wave(n, fps, aim, seed=request.seed)
    else:  # the network injects no waveform we know: a nominal pulse at the target
        wave = synth_pulse(n, fps, aim, hrv_ms=0.0, seed=request.seed).wave
    return GroundTruth(np.asarray(wave, np.float64), hr_curve(aim, n, fps), fps)


# --------------------------------------------------------------------------- layouts out


def _place(clip: DatasetClip, staged: Path, out_root: Path, truth: GroundTruth) -> list[str]:
    """Move the staged output into the output layout and write its ground truth there."""
    from .atomic import atomic_path, write_json

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

    from .atomic import atomic_path

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
    from .atomic import AtomicPath, write_json

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

    from .atomic import atomic_path
    from .video import read_video

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


# --------------------------------------------------------------------------- the run directory


class RunDir:
    """``OUT_ROOT/.physiolatent/``: the manifest of finished clips and the reports.

    ``manifest.jsonl`` gets one line per finished clip, appended and flushed to disk as
    each clip finishes, so a killed run keeps every clip it finished; the last line of a
    clip wins."""

    def __init__(self, out_root: Path):
        self.path = out_root / RUN_DIR
        self.manifest = self.path / "manifest.jsonl"
        self.reports = self.path / "reports"
        self.staging = self.path / "staging"

    def open(self) -> dict[str, dict]:
        """Create (or reopen) the run, locked to this process; returns the last record of each clip."""
        self.reports.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / "lock", "w")
        try:
            import fcntl

            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the OS however the run ends
        except ImportError:  # Windows: unlocked
            pass
        except OSError:
            self._lock.close()
            raise InputError(f"another batch run is writing {self.path.parent}: wait for it, or choose another "
                             "output root.") from None
        shutil.rmtree(self.staging, ignore_errors=True)  # work of clips in flight when a run was killed
        records: dict[str, dict] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill: that clip is redone
                    continue
                records[f"{record.get('kind')}:{record['clip']}"] = record
        return records

    def close(self) -> None:
        """Release the run (its lock)."""
        if getattr(self, "_lock", None) is not None:
            self._lock.close()
            self._lock = None

    def append(self, record: dict) -> None:
        from .verify import jsonable

        with open(self.manifest, "a", encoding="utf-8") as f:
            f.write(json.dumps(jsonable(record), allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _file_hash(path: Path, cache: dict) -> str:
    """sha256 of a file, cached by (size, mtime) so a rerun does not read the dataset again."""
    stat = path.stat()
    stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
    hit = cache.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    cache[str(path)] = (stamp, digest.hexdigest())
    return cache[str(path)][1]


def clip_key(clip: DatasetClip, settings: dict, cache: dict) -> str:
    """Content hash of the clip's input files and the settings its output depends on."""
    digest = hashlib.sha256()
    for name in clip.files:
        digest.update(_file_hash(Path(name), cache).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


# --------------------------------------------------------------------------- the run


def run_batch(request: BatchRequest, log=None) -> dict:
    """Run (or resume) a batch; returns the run summary (also ``summary.json``)."""
    log = log or (lambda message: None)
    layout = request.layout or detect_layout(request.root)
    _check_roots(request.root, request.out_root)
    clips = list_clips(request.root, layout)
    if request.remove is False and request.target is None and any(c.target is None for c in clips):
        raise InputError("say what to do: --target-hr (e.g. 100, balanced:50-150) or --remove, or give every "
                         "manifest row a target.")
    request.out_root.mkdir(parents=True, exist_ok=True)
    run = RunDir(request.out_root)
    records = run.open()
    engine = None
    try:
        hash_file = run.path / "hashes.json"
        hashes = {k: tuple(v) for k, v in json.loads(hash_file.read_text()).items()} if hash_file.exists() else {}
        started = time.perf_counter()
        job = _job_settings(request)
        engine = make_engine(request)
        log(f"{layout} layout, {len(clips)} clips: {request.root} -> {request.out_root} ({engine.description})")
        measured = _measure(request, clips, job, run, records, hashes, engine, log)
        tasks, skipped = _tasks(request, clips, job, run, records, hashes, measured)
        _save_hashes(hash_file, hashes)
        if skipped:
            log(f"{skipped} clips already done with these settings: skipped")
        for record in engine.run(tasks, "clips"):
            run.append(record)
            records[f"{record['kind']}:{record['clip']}"] = record
            if record["status"] == "failed":
                log(f"failed: {record['clip']}: {record['reason']}")
        if layout in ("folder", "manifest"):
            _write_labels(request, layout, clips, records)
        return summarise_run(request, layout, clips, records, run, measured, skipped,
                             time.perf_counter() - started, engine.description, len(tasks))
    finally:
        if engine is not None:
            engine.close()
        run.close()


def _check_roots(root: Path, out_root: Path) -> None:
    root_r, out_r = root.resolve(), out_root.resolve()
    data_dir = root_r.parent if root_r.is_file() else root_r
    if out_r == data_dir or data_dir in out_r.parents or out_r in data_dir.parents:
        raise InputError(f"the output root {out_root} must lie outside the dataset ({root}) and not hold it: "
                         "choose a new folder beside it.")
    if out_r.exists() and not out_r.is_dir():
        raise InputError(f"the output root {out_root} is a file: give a folder.")
    if out_r.is_dir() and any(out_r.iterdir()) and not (out_r / RUN_DIR).is_dir():
        raise InputError(f"{out_root} holds files that no batch run wrote: choose an empty or new folder "
                         "(a rerun into a batch's own output root resumes it).")


def _job_settings(request: BatchRequest) -> dict:
    """JobRequest fields every clip shares (and the network's files), JSON-able for the key."""
    job = dict(methods=tuple(request.methods), crf=request.crf, preset=request.preset, robust_to=request.robust_to,
               amplitude=request.amplitude, min_psnr_db=request.min_psnr_db, seed=request.seed,
               verify=request.verify, figures=request.figures)
    if request.network is not None:
        job["network"] = {k: (None if v is None else str(v) if isinstance(v, Path) else v)
                          for k, v in asdict(request.network).items()}
    return job


def _measure(request, clips, job, run, records, hashes, engine, log) -> dict[str, float | None]:
    """Each clip's HR before the edit: the dataset's ground truth, else (only for balanced
    targets, which need it up front) an estimate run on the engine, kept in the manifest."""
    measured = {c.id: c.truth_hr_bpm for c in clips}
    policy = parse_policy(request.target) if request.target is not None else None
    if policy is None or policy.kind != "balanced":
        return measured
    tasks = []
    settings = {"kind": "measure", "methods": list(job["methods"])}
    for clip in clips:
        if measured[clip.id] is not None:
            continue
        key = clip_key(clip, settings, hashes)
        old = records.get(f"measure:{clip.id}")
        if old and old["key"] == key and old["status"] == "measured":
            measured[clip.id] = old["measured_hr_bpm"]
            continue
        tasks.append(ClipTask(clip, "measure", None, None, key, str(request.out_root), str(run.path), job))
    if tasks:
        log(f"measuring the HR of {len(tasks)} clips without ground truth (balanced targets need it)")
    for record in engine.run(tasks, "measuring"):
        run.append(record)
        records[f"measure:{record['clip']}"] = record
        if record["status"] == "measured":
            measured[record["clip"]] = record["measured_hr_bpm"]
    failed = [c.id for c in clips if measured[c.id] is None]
    if failed:
        raise InputError(f"could not measure the HR of {', '.join(failed[:5])} (see {run.manifest}); balanced "
                         "targets need every clip's HR: remove those clips or use uniform:LO-HI.")
    return measured


def _tasks(request, clips, job, run, records, hashes, measured) -> tuple[list[ClipTask], int]:
    """The clips still to do (not done with the same key), with their targets."""
    policy = parse_policy(request.target) if request.target is not None else None
    assigned = assign_targets(policy, [c.id for c in clips], measured, request.seed) if policy else {}
    decoy = None if request.decoy is None else str(request.decoy)
    tasks, skipped = [], 0
    for clip in clips:
        mode = clip.mode or ("remove" if request.remove else "edit")
        target = clip.target if clip.target is not None else assigned.get(clip.id)
        if mode == "edit" and target is None:
            raise InputError(f"clip {clip.id} has no target: give --target-hr or a target in its manifest row.")
        settings = {k: v for k, v in job.items() if k != "figures"}
        settings.update(kind=mode, target=target if mode == "edit" else None, decoy=decoy if mode == "remove" else None,
                        layout=clip.layout, out=clip.out)
        key = clip_key(clip, settings, hashes)
        old = records.get(f"{mode}:{clip.id}")
        if old and old["key"] == key and old["status"] == "done" and all(Path(p).exists() for p in old["outputs"]):
            skipped += 1
            continue
        tasks.append(ClipTask(clip, mode, target if mode == "edit" else None, decoy if mode == "remove" else None,
                              key, str(request.out_root), str(run.path), job))
    return tasks, skipped


def _save_hashes(path: Path, hashes: dict) -> None:
    from .atomic import write_json

    write_json(path, {k: list(v) for k, v in hashes.items()})


def _write_labels(request: BatchRequest, layout: str, clips: list[DatasetClip], records: dict) -> None:
    """Folder: a ``labels.csv`` beside the outputs when the input had one; manifest: the
    manifest of the outputs (path, mode, target, hr_bpm), in the input's format."""
    from .atomic import atomic_path

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


# --------------------------------------------------------------------------- the summary


def summarise_run(request, layout, clips, records, run, measured, skipped, seconds, engine, submitted) -> dict:
    """``summary.json`` (counts, failures, HR before/after, per-reader hit rates, PSNR)
    and ``summary.png`` (HR histograms before/after, PSNR distribution)."""
    from .atomic import write_json
    from .verify import jsonable

    latest = []
    for clip in clips:
        mode = clip.mode or ("remove" if request.remove else "edit")
        latest.append(records.get(f"{mode}:{clip.id}") or {"clip": clip.id, "status": "pending"})
    done = [r for r in latest if r["status"] == "done"]
    failed = [{"clip": r["clip"], "reason": r.get("reason")} for r in latest if r["status"] == "failed"]
    before = [r["hr_before_bpm"] for r in done if r.get("hr_before_bpm") is not None]
    after = [r["hr_after_bpm"] for r in done if r.get("hr_after_bpm") is not None]
    targets = [r["target_hr_bpm"] for r in done if r.get("target_hr_bpm")]
    psnr = [r["psnr_db"] for r in done if r.get("psnr_db") is not None]
    readers: dict[str, list[bool]] = {}
    for r in done:
        for name, hit in (r.get("hits") or {}).items():
            readers.setdefault(name, []).append(hit)
    summary = jsonable({
        "root": str(request.root), "out_root": str(request.out_root), "layout": layout, "engine": engine,
        "policy": "remove" if request.remove else request.target,
        "counts": {"clips": len(clips), "done": len(done), "failed": len(failed),
                   "pending": sum(r["status"] == "pending" for r in latest), "skipped_as_done": skipped,
                   "processed_this_run": submitted},
        "failures": failed,
        "hr_before_bpm": _stats(before), "hr_after_bpm": _stats(after), "target_hr_bpm": _stats(targets),
        "hit_rate_by_reader": {name: {"hits": int(sum(v)), "clips": len(v), "rate": float(np.mean(v))}
                               for name, v in readers.items()},
        "hit_rule": f"edit: reader within {HIT_TOLERANCE_BPM:g} bpm of a constant target; remove: reader more than "
                    f"{HIT_TOLERANCE_BPM:g} bpm from its own reading before",
        "psnr_db": _stats(psnr),
        "seconds": round(seconds, 2),
        "clips_per_minute": round(60.0 * submitted / seconds, 2) if seconds > 0 and submitted else None,
        "figure": str(run.path / "summary.png"),
    })
    write_json(run.path / "summary.json", summary)
    _plot_summary(run.path / "summary.png", before, after, targets, psnr, summary)
    return summary


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"n": 0}
    return {"n": len(v), "min": float(v.min()), "p10": float(np.percentile(v, 10)), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "max": float(v.max()), "values": v.round(2).tolist()}


def _plot_summary(path: Path, before, after, targets, psnr, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .verify import save_figure

    fig, (ax_hr, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.6))
    values = [v for v in (*before, *after, *targets) if v is not None]
    # 5-bpm bins centred on multiples of 5, so a target of 100 and its readings share one
    centre_lo, centre_hi = (round(v / 5) * 5 for v in (min(values, default=40), max(values, default=180)))
    bins = np.arange(centre_lo - 2.5, centre_hi + 5, 5)
    ax_hr.hist(before, bins=bins, color="0.6", alpha=0.7, label=f"before ({len(before)})")
    ax_hr.hist(after, bins=bins, histtype="step", color="C0", lw=2, label=f"after, read from the files ({len(after)})")
    ax_hr.set(xlabel="heart rate (bpm)", ylabel="clips", title="HR before / after")
    ax_hr.legend(fontsize=8)
    if psnr:
        ax_psnr.hist(psnr, bins=min(20, max(5, len(psnr))), color="C2")
    ax_psnr.set(xlabel="PSNR of the saved file against the input (dB)", ylabel="clips", title="fidelity")
    c = summary["counts"]
    fig.suptitle(f"{c['done']} done, {c['failed']} failed of {c['clips']} clips", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True)
    plt.close(fig)


# --------------------------------------------------------------------------- engines


def make_engine(request: BatchRequest):
    workers = request.workers or _cores()
    if request.engine == "ray":
        return RayEngine(workers, request.ray_address, request.gpus_per_clip, request.retries,
                         request.network is not None, request.quiet)
    return LocalEngine(workers, request.quiet)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker(network: bool) -> None:
    """A pool worker: one OpenCV thread (the pool has a process per core), and the
    network kept loaded between its clips."""
    import cv2

    cv2.setNumThreads(1)
    if network:
        _init_network_worker()


def _init_network_worker() -> None:
    from . import pipeline

    pipeline.keep_networks_loaded()


def _failed(task: ClipTask, reason: str) -> dict:
    return {"clip": task.clip.id, "key": task.key, "kind": task.kind, "status": "failed", "reason": reason}


class LocalEngine:
    """A process pool of ``workers`` processes; results arrive as clips finish, with a
    tqdm bar (clips, ETA) on a terminal. One worker is the calling process itself."""

    def __init__(self, workers: int, quiet: bool = False):
        self.workers, self.quiet = workers, quiet
        self.description = f"local pool, {workers} worker{'s' * (workers != 1)}"

    def run(self, tasks: list[ClipTask], desc: str):
        if not tasks:
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        from .pipeline import progress

        network = any(t.job.get("network") for t in tasks)
        if min(self.workers, len(tasks)) == 1:  # no pool to start, nothing to pickle
            if network:
                _init_network_worker()
            with progress(tasks, self.quiet, desc=desc, unit="clip") as bar:
                yield from map(process_clip, bar)
            return
        # spawn: workers start clean (no copied threads or locks of the caller), as on macOS and Windows.
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(network,))
        try:
            pending = {pool.submit(process_clip, t): t for t in tasks}
            with progress(range(len(tasks)), self.quiet, desc=desc, unit="clip") as bar:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = pending.pop(future)
                        try:
                            record = future.result()
                        except BrokenProcessPool:  # a worker died (killed, out of memory): not this clip's fault alone
                            record = _failed(task, "the worker process died (out of memory or killed); rerun to retry")
                        bar.update(1)
                        yield record
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


class RayEngine:
    """Ray Core: one task per clip (``max_retries`` when a worker dies, ``num_cpus`` /
    ``num_gpus`` hints), or for the network path one actor per worker that loads the
    weights once. ``address`` None: a local Ray with ``workers`` CPUs."""

    def __init__(self, workers: int, address: str | None, gpus_per_clip: float, retries: int, network: bool,
                 quiet: bool = False):
        self.ray = import_ray()
        self.workers, self.address, self.gpus, self.retries = workers, address, gpus_per_clip, retries
        self.network, self.quiet = network, quiet
        self._started = False
        self.description = f"ray ({address or f'local, {workers} CPUs'})"

    def _start(self):
        ray = self.ray
        if not ray.is_initialized():
            # The workers import this package: ship the folder that holds it when it is not installed.
            package = str(Path(__file__).resolve().parents[1])
            runtime_env = {"env_vars": {"PYTHONPATH": package}} if self.address is None else {}
            kwargs = dict(address=self.address) if self.address else dict(num_cpus=self.workers)
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env, **kwargs)
            self._started = True

    def run(self, tasks: list[ClipTask], desc: str):
        if not tasks:
            return
        self._start()
        ray = self.ray
        from .pipeline import progress

        hints = dict(num_cpus=1, num_gpus=self.gpus)
        if self.network and tasks[0].kind != "measure":
            actor_cls = ray.remote(max_restarts=self.retries, max_task_retries=self.retries, **hints)(ClipActor)
            n = max(1, min(self.workers, len(tasks)))
            actors = [actor_cls.remote() for _ in range(n)]
            refs = {actors[i % n].process.remote(t): t for i, t in enumerate(tasks)}
        else:
            remote = ray.remote(max_retries=self.retries, **hints)(_ray_process_clip)
            refs = {remote.remote(t): t for t in tasks}
        with progress(range(len(tasks)), self.quiet, desc=desc, unit="clip") as bar:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                task = refs.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except Exception as exc:  # retries spent (a worker or node died): recorded, the run goes on
                    record = _failed(task, f"ray: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                bar.update(1)
                yield record

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def _ray_process_clip(task: ClipTask) -> dict:
    """A Ray task: one clip, on one OpenCV thread (Ray reserves one CPU per task)."""
    _init_worker(network=False)
    return process_clip(task)


class ClipActor:
    """A Ray actor for the network path: the weights load with its first clip and stay
    (``pipeline.keep_networks_loaded``)."""

    def __init__(self):
        _init_worker(network=True)

    def process(self, task: ClipTask) -> dict:
        return process_clip(task)


def import_ray():
    """``ray``, imported only when asked for; a clear message when it is missing."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'physiolatent[ray]' (or pip install 'ray>=2.9'), "
                         "or use the local engine.") from None
    return ray


__all__ = ["BatchRequest", "DatasetClip", "GroundTruth", "LocalEngine", "Policy", "RayEngine", "RunDir",
           "assign_targets", "clip_key", "detect_layout", "ground_truth", "import_ray", "list_clips",
           "parse_policy", "process_clip", "run_batch"]
