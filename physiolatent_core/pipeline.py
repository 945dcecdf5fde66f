"""The file-to-file job: read -> track -> mask -> edit or remove -> write -> verify -> report.

One request (:class:`JobRequest`) describes a job; :func:`run_job` runs it and returns the
report (also written as JSON beside the output). The command line, the ComfyUI nodes'
file paths, the benchmarks and the dataset runner all come through here.

The clip is streamed in chunks of about ``CHUNK_PIXELS``, so memory stays bounded
whatever its length:

1. track the face (boxes only; only the frames the tracker searches are converted);
2. render the skin mask, ``observe`` every chunk with the editor, keep the input's
   colour traces; the editor plans;
3. ``apply`` every chunk and write it: a video file as segments in ``OUT.partial/``,
   joined into the output when complete (``resume.py``: a run that stopped continues
   with ``resume=True``, redoing no finished segment); the file appears atomically;
4. unless ``verify=False``, decode the saved file beside the input (``readback.py``):
   colour traces and PSNR/SSIM of the file *as saved*, so codec losses count; for H.264
   also the PSNR against the input encoded with the same settings.

The restore job (keys) is ``restore.py``'s; the demo ``demo.py``'s.

A worker thread decodes the next chunk, and encodes the last edited one, while the main
thread works on the current. Clips small enough are decoded once and kept
(``CACHE_BYTES``). A job that fails removes what it wrote.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .pulse import REMOVE, FaceTargets, HRTarget, check_rmssd, parse_face_targets, parse_hr_target, parse_resp_target
from .rppg import DEFAULT_METHODS, MIN_DURATION_S, resolve_methods
from .readback import band_for, read_back, trajectory_check, vitals_check
from .verify import jsonable

# Frames decoded at once: about 8 Mpixel per chunk (26 frames at 640x480, 3 at 1080p, 1 at 4K),
# so a chunk of float32 frames stays near 100 MB whatever the resolution.
CHUNK_PIXELS = 8_000_000
# Clips up to 512 MiB of 8-bit frames are decoded once and kept (640x480: 19 s at 30 fps);
# docs/BENCHMARKS.md has the 1080p peak that set the size.
CACHE_BYTES = 1 << 29
# The skin-mask grids of the analysis pass are kept for the edit and verify passes up to
# this size (~11 kB a frame: 100 s at 30 fps); longer clips render their masks again.
MASK_RECORD_BYTES = 32 << 20
MODES = ("edit", "remove", "estimate")
METHODS = ("training-free", "physiolatent")


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class NetworkFiles:
    """The paper's network: the user's weight files and where to run them."""

    vae: Path  # CogVideoX VAE .safetensors
    adapter: Path  # trained adapter .safetensors
    clip: Path | None = None  # CLIP-L text encoder, for adapters conditioned on CLIP
    device: str = "auto"  # "cuda", "cpu" or "auto"
    crop_size: int = 256  # face crop side, a multiple of 8


@dataclass(frozen=True)
class JobRequest:
    """One job on one file. ``mode``: ``edit`` (needs ``target``), ``remove`` (optional
    ``decoy``) or ``estimate`` (reads only; ``output`` is None).

    Targets take anything ``pulse.parse_hr_target`` does (75, "70:120", "0s=70, 5s=120"): the
    same for every face; or per face, anything ``pulse.parse_face_targets`` does ("1=75,
    2=remove"), kept in ``face_targets`` (``target`` is then the first face's HR target).
    ``report`` / ``figure`` default to files beside the output (estimate: none);
    ``figure=False`` draws none. ``robust_to`` defaults to the output's path (.mp4: h264).
    ``network``: the paper's network instead of the training-free editor.
    """

    input: Path
    mode: str
    output: Path | None = None
    target: HRTarget | float | str | None = None
    decoy: HRTarget | float | str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    report: Path | None = None
    figure: Path | bool | None = None
    fps: float | None = None
    crf: int = 18
    preset: str = "medium"
    bit_depth: int = 8  # of the output video: 8, or 10 (.mp4, .mkv) / 16 (.mkv, PNG) for deeper sources
    robust_to: str | None = None
    amplitude: float | None = None
    min_psnr_db: float | None = None
    seed: int = 0
    overwrite: bool = False
    verify: bool = True
    quiet: bool = False
    network: NetworkFiles | None = None
    true_hr_bpm: float | None = None  # known ground truth (synthetic input), for the report
    hrv_rmssd_ms: float | None = None  # RMSSD of the injected pulse's beats, ms (training-free)
    resp_rate_bpm: HRTarget | float | str | None = None  # its breathing rate, breaths/min, or a trajectory
    key_out: Path | None = None  # restore key (keys.py): what the job changed, encrypted; edit and remove only
    strength: str | None = None  # remove: "standard", "strong" or "max" (default; removal.py)
    face_targets: FaceTargets | None = None  # set from target (edit) or to remove every face (remove)
    resume: bool = False  # continue a run of this job that stopped, from its finished segments (resume.py)

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {MODES}; got {self.mode!r}.")
        if self.mode == "edit" and self.target is None:
            raise InputError("an edit needs a target heart rate (e.g. 75, '70:120' or '0s=70, 10s=110').")
        if self.mode != "estimate" and self.output is None:
            raise InputError(f"{self.mode} needs an output path (.mp4, .mkv or a folder/).")
        parse = lambda spec: spec if spec is None or isinstance(spec, HRTarget) else parse_hr_target(spec)  # noqa: E731
        object.__setattr__(self, "input", Path(self.input).expanduser())
        faces = None
        if self.mode == "edit":
            faces = parse_face_targets(self.target)
            named = [faces.all] if not faces.per_face else [t for _, t in faces.faces]
            object.__setattr__(self, "target", next((t for t in named if isinstance(t, HRTarget)), None))
        else:
            object.__setattr__(self, "target", None)
            if self.mode == "remove":
                faces = FaceTargets(REMOVE)
        object.__setattr__(self, "face_targets", faces)
        object.__setattr__(self, "decoy", parse(self.decoy) if self.mode == "remove" else None)
        object.__setattr__(self, "methods", tuple(resolve_methods(list(self.methods))))
        if self.hrv_rmssd_ms is not None or self.resp_rate_bpm is not None:
            if self.aim is None:
                raise InputError("HRV and breathing targets shape an injected pulse: give them to an edit (or a "
                                 "removal with a decoy HR).")
            if self.network is not None:
                raise InputError("HRV and breathing targets need the training-free editor; the network takes one HR.")
            if self.hrv_rmssd_ms is not None:
                object.__setattr__(self, "hrv_rmssd_ms", check_rmssd(self.hrv_rmssd_ms))
            if self.resp_rate_bpm is not None:
                object.__setattr__(self, "resp_rate_bpm", parse_resp_target(self.resp_rate_bpm))
        if self.strength is not None:
            from .removal import check_strength

            if self.mode != "remove":
                raise InputError("strength sets how much a removal takes out: give it to remove, not to "
                                 f"{self.mode}.")
            check_strength(self.strength)
            if self.network is not None:
                raise InputError("removal strengths are the training-free editor's; the network has none to set.")
        if self.resume and self.mode == "estimate":
            raise InputError("estimate writes no video: there is nothing to resume.")
        if self.key_out is not None:
            if self.mode == "estimate":
                raise InputError("estimate changes nothing: a restore key (key_out) is for edit and remove.")
            object.__setattr__(self, "key_out", Path(self.key_out).expanduser())
        if self.network is not None:
            if self.amplitude is not None or self.min_psnr_db is not None:
                raise InputError("amplitude and min_psnr set the training-free editor's strength; the network has "
                                 "none to set.")
            if self.target is not None and self.target.kind != "constant":
                raise InputError("the PhysioLatent network takes one target HR per clip; give a number, not a ramp, "
                                 "or use the training-free method for trajectories.")

    @property
    def aim(self) -> HRTarget | None:
        """The HR the saved file should read, if any: the target, or a removal's decoy."""
        return self.target if self.target is not None else self.decoy


@dataclass
class _Paths:
    kind: str | None  # output kind ("h264", "ffv1", "png"), None for estimate
    video: Path | None
    report: Path | None
    figure: Path | None
    key: Path | None = None
    written: list[Path] = field(default_factory=list)

    def done(self, path) -> str:
        self.written.append(Path(path))
        return str(path)

    def cleanup(self) -> None:
        import shutil

        for p in self.written:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()


def sidecar(output: Path, suffix: str) -> Path:
    """``out/edited.mp4`` -> ``out/edited.mp4<suffix>``; ``frames/`` -> ``frames<suffix>``.

    The whole name, extension included: ``out.mp4`` and ``out.mkv`` in one folder get
    reports and figures of their own."""
    return output.parent / (output.name + suffix)


def _check_paths(request: JobRequest) -> _Paths:
    """Every output path checked before any work (exists, equals the input, no folder)."""
    from .video import check_output_path, output_kind

    def check(path, what, folder=None):
        return check_output_path(Path(path).expanduser(), overwrite=request.overwrite, input_path=request.input,
                                 what=what, folder=folder)

    if request.mode == "estimate":
        report = check(request.report, "report") if request.report else None
        figure = check(request.figure, "figure") if isinstance(request.figure, (str, Path)) else None
        return _Paths(None, None, report, figure)
    kind = output_kind(str(request.output))
    video = check(request.output, "output")
    report = check(request.report or sidecar(video, ".report.json"), "report")
    figure = None
    if request.figure is not False:
        figure = check(request.figure if isinstance(request.figure, (str, Path)) else sidecar(video, ".png"),
                       "figure")
    key = check(request.key_out, "key", folder=False) if request.key_out is not None else None
    paths = [p.resolve() for p in (video, report, figure, key) if p is not None]
    if len(set(paths)) < len(paths):
        raise InputError("the output, report, figure and key paths must differ.")
    return _Paths(kind, video, report, figure, key)


def run_job(request: JobRequest) -> dict:
    """Run one job; returns its report (JSON-able). On failure, removes what it wrote."""
    paths = _check_paths(request)
    try:
        if request.mode == "estimate":
            return _estimate(request, paths)
        return _edit_or_remove(request, paths)
    except BaseException:
        paths.cleanup()
        raise


# --------------------------------------------------------------------------- the editor


# The batch runner's workers keep the network loaded between clips (keep_networks_loaded),
# so its weights load once per worker; a single job loads them and lets them go.
_KEPT_NETWORKS: dict | None = None


def keep_networks_loaded() -> None:
    """From now on, this process keeps the last network ``make_editor`` loaded, for reuse."""
    global _KEPT_NETWORKS
    if _KEPT_NETWORKS is None:
        _KEPT_NETWORKS = {}


def make_editor(request: JobRequest, fps: float, kind: str, face_target=None):
    """The request's editor (``editors.ChunkEditor``) for an output of ``kind``; with
    ``face_target`` (an HRTarget or ``pulse.REMOVE``) the editor of a face with that target."""
    if face_target is not None:
        if face_target == REMOVE:  # HRV and breathing shape an injected pulse: a removal's decoy, if any
            shaped = {} if request.decoy is not None else {"hrv_rmssd_ms": None, "resp_rate_bpm": None}
            request = dataclasses.replace(request, mode="remove", target=None, face_targets=None, **shaped)
        else:
            request = dataclasses.replace(request, mode="edit", target=face_target, face_targets=None)
    robust_to = request.robust_to or ("h264" if kind == "h264" else "lossless")
    if request.network is not None:
        from .network_editor import NetworkEditor

        net = request.network
        target_hr_bpm = None if request.target is None else request.target.mean_bpm
        if _KEPT_NETWORKS is not None and net in _KEPT_NETWORKS:
            model, device = _KEPT_NETWORKS[net]
            return NetworkEditor(model, fps, request.mode, target_hr_bpm, net.crop_size, device)
        editor = NetworkEditor.from_files(net.vae, net.adapter, fps, request.mode, target_hr_bpm=target_hr_bpm,
                                          clip_path=net.clip, device=net.device, crop_size=net.crop_size)
        if _KEPT_NETWORKS is not None:
            _KEPT_NETWORKS.clear()  # one network per worker
            _KEPT_NETWORKS[net] = editor.model, editor.device
        return editor
    from .editor import PulseEditor

    # Our writer dithers before x264; a .mkv/PNG output forced to h264 strength is
    # measured against crf 23, what most H.264 re-encodes use.
    editor = PulseEditor(fps, request.mode, target=request.target, decoy_hr_bpm=request.decoy, robust_to=robust_to,
                         amplitude=request.amplitude, min_psnr_db=request.min_psnr_db, seed=request.seed,
                         codec_crf=request.crf if kind == "h264" else 23, codec_quantize="dither",
                         codec_preset=request.preset, hrv_rmssd_ms=request.hrv_rmssd_ms,
                         resp_rate=request.resp_rate_bpm)
    if request.mode == "remove":
        from .removal import DEFAULT_STRENGTH, PrivacyRemover

        strength = request.strength or DEFAULT_STRENGTH
        if strength != "standard":
            return PrivacyRemover(fps, editor, strength, min_psnr_db=request.min_psnr_db)
    return editor


# --------------------------------------------------------------------------- passes


def progress(iterable, quiet: bool, **kwargs):
    """A tqdm bar on stderr, none when ``quiet`` or stderr is not a terminal (logs, CI)."""
    from tqdm import tqdm

    return tqdm(iterable, disable=True if quiet else None, leave=False, dynamic_ncols=True, **kwargs)


def _frame_bar(chunks, quiet: bool, desc: str, total_frames: int, done_frames: int = 0):
    """``chunks`` as they are, counted in frames on a progress bar; the first ``done_frames``
    count as done already (a resumed pass), so the rate and time left are this run's."""
    bar = progress(None, quiet, desc=desc, unit="frame", total=max(total_frames, done_frames), initial=done_frames)
    seen = 0
    try:
        for chunk in chunks:
            yield chunk
            bar.update(max(0, seen + len(chunk) - max(seen, done_frames)))
            seen += len(chunk)
    finally:
        bar.close()


def rechunk(chunks, size: int):
    """The same frames in chunks of exactly ``size`` (the last may be shorter)."""
    pending: list[np.ndarray] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        while held >= size:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:size]
            rest = joined[size:]
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        yield np.concatenate(pending) if len(pending) > 1 else pending[0]


class Source:
    """The input clip, decoded in chunks once per pass, or kept after the analysis pass when small.

    A clip whose 8-bit frames fit in ``CACHE_BYTES`` is kept decoded (uint8, a quarter of
    float32) by the first pass that converts every frame (not the lazy tracking pass),
    which saves a decode per later pass; longer or larger clips are decoded again each
    pass, so memory stays bounded whatever their length.
    """

    def __init__(self, path: Path, info, quiet: bool = True):
        self.path, self.info, self.quiet = path, info, quiet
        # One frame at least: a 4K float32 frame alone is 100 MB, and three copies of a chunk are alive at once.
        self.chunk_frames = int(np.clip(CHUNK_PIXELS // max(info.width * info.height, 1), 1, 64))
        self._cache: list[np.ndarray] | None = None
        self._cacheable = 0 < info.num_frames * info.width * info.height * 3 <= CACHE_BYTES

    def chunks(self, desc: str, lazy: bool = False, done_frames: int = 0):
        """float32 [t,H,W,3] chunks of ``chunk_frames`` frames, with a progress bar (frames,
        rate and time left; ``done_frames`` from the start shown as done before this run).

        ``lazy``: for a pass that looks at few frames, 8-bit frames as decoded: kept
        chunks as they are, and a decode's as ``video.LazyFrames``, converted to RGB
        frame by frame where used (such a pass leaves the clip to the next one to keep).
        """
        from .video import iter_frames, prefetch, to_float

        if self._cache is not None:
            raw = iter(self._cache)
        else:
            # Upright: a phone video stored on its side is tracked and edited as it is shown.
            raw = iter_frames(self.path, chunk_frames=self.chunk_frames, raw=True, lazy=lazy, upright=True)
            if self._cacheable and not lazy:
                raw = self._filling(raw)

        def convert(chunk):  # LazyFrames are uint8 too
            return chunk if lazy and chunk.dtype == np.uint8 else to_float(chunk)

        floats = prefetch(convert(c) for c in raw)  # the next chunk decodes while the caller works
        return _frame_bar(floats, self.quiet, desc, self.info.num_frames, done_frames)

    def _filling(self, raw):
        kept, size = [], 0
        for chunk in raw:
            size += chunk.nbytes
            if kept is not None and size <= CACHE_BYTES:
                kept.append(chunk)
            else:
                kept = None  # the header undercounted the frames: stream every pass
            yield chunk
        self._cache = kept  # only once the whole clip went through


def track_pass(source: Source):
    """Pass 1: the face track (boxes only; nothing else is kept)."""
    from .face import FaceTracker

    tracker = FaceTracker(source.info.fps)
    for chunk in source.chunks("face tracking", lazy=True):  # it converts the frames it searches
        tracker.update(chunk)
    return tracker.finish()


def faces_pass(source: Source):
    """Pass 1 of an edit: every face's track (``face.MultiFaceTracker``), by face id."""
    from .face import MultiFaceTracker

    tracker = MultiFaceTracker(source.info.fps)
    for chunk in source.chunks("face tracking", lazy=True):  # it converts the frames it searches
        tracker.update(chunk)
    return tracker.finish()


def _edit_or_remove(request: JobRequest, paths: _Paths) -> dict:
    from .faces import FacesEditor, FacesMasker
    from .pulse import hr_curve
    from .rppg import ColourTraces, read_traces
    from .rppg.hr import check_duration
    from .verify import plot_pulse, save_figure
    from .video import Behind, VideoWriter, check_crf, probe_video

    timings = Stopwatch()
    lap = timings.lap
    check_crf(request.crf)
    info = probe_video(request.input, fps=request.fps)
    fps = info.fps
    check_duration(info.num_frames, fps, min_duration_s=MIN_DURATION_S)
    if request.key_out is not None and info.bit_depth > 8:  # refused before any work, not after the write
        raise InputError(f"{request.input} has {info.bit_depth}-bit frames; a restore key holds 8-bit originals "
                         "only: drop --key-out, or convert the input to 8 bit.")
    output = _resumable_output(request, paths, fps)  # refuses a stale or mismatched work folder before any work
    lap("probe")

    # ---- pass 1: every face's track; pass 2: masks, observe, input traces (per face)
    source = Source(request.input, info, request.quiet)
    tracks = faces_pass(source)
    lap("face_track")
    editor = FacesEditor(tracks, request.face_targets, lambda target: make_editor(request, fps, paths.kind, target),
                         single=request.network is not None)
    masker, traces_before, n_frames = FacesMasker(tracks, record_bytes=MASK_RECORD_BYTES), [], 0
    for chunk in source.chunks("analysing"):
        masks = masker(chunk)
        editor.observe(chunk, masks)
        if request.verify:  # the input's readings are only compared with the saved file's; each face's over its span
            traces_before.append([read_traces(chunk[part], mask[part], request.methods) if part.stop > part.start
                                  else None for part, mask in zip(editor.parts(n_frames, len(chunk)), masks)])
        n_frames += len(chunk)
    if request.verify:
        traces_before = [ColourTraces.join([t for t in face if t is not None]) for face in zip(*traces_before)]
    check_duration(n_frames, fps, min_duration_s=MIN_DURATION_S)
    lap("analyse")
    editor.plan(tracks)
    lap("plan")

    # ---- pass 3: edit and write (atomic: the file appears only when complete)
    target_path = str(paths.video) + ("/" if paths.kind == "png" else "")
    masks_again, start = masker.again(), 0
    chunks = source.chunks("editing", done_frames=0 if output is None else output.done_frames)
    if editor.chunk_frames:  # the editor edits fixed windows: cut the clip its way
        chunks = rechunk(chunks, editor.chunk_frames)
    if output is None:  # a folder of PNG frames
        with VideoWriter(target_path, fps, crf=request.crf, overwrite=request.overwrite, seed=request.seed,
                         input_path=request.input, preset=request.preset, bit_depth=request.bit_depth,
                         upright=True) as writer, Behind(writer.write) as write:
            for chunk in chunks:
                write(editor.apply(chunk, masks_again(chunk), start, inplace=True))  # encoded while the next is edited
                start += len(chunk)
    else:  # a video file: in segments, resumable, joined at the end
        output.check_plan(editor.info)
        try:
            with Behind(output.write) as write:
                for chunk in chunks:
                    masks = masks_again(chunk)  # also for finished frames: the masker's state runs through the clip
                    # An editor of fixed windows (the network) carries context from window to
                    # window, so it applies finished windows too; their frames are dropped.
                    if start + len(chunk) > output.done_frames or editor.chunk_frames:
                        write((editor.apply(chunk, masks, start, inplace=True), start))
                    start += len(chunk)
        except BaseException:
            output.abort()  # the finished segments stay for --resume
            raise
        writer = output.finish(request.overwrite)
    written_video = paths.done(writer.path)
    lap("edit_write")
    key = None
    if paths.key is not None:  # ---- the restore key: the input against the file as saved
        key = _write_key(request, paths, source, info, written_video)
        lap("key")

    # The report's top-level readings are those of the first edited face ("faces" has them all).
    primary = next(i for i, face in enumerate(editor.faces) if face.editor is not None)
    aims = [_face_aim(request, face) for face in editor.faces]
    aim = aims[primary]
    aim_curve = hr_curve(aim, n_frames, fps) if aim is not None else None
    aim_constant = float(aim_curve[0]) if aim is not None and aim.kind == "constant" else None
    curves = [hr_curve(a, n_frames, fps) for a in aims if a is not None]
    band = band_for(*[v for c in curves for v in (c.min(), c.max())], request.true_hr_bpm)
    checked = trajectory = codec_reference = traces_after = vitals = None
    faces_checked = [None] * len(editor.faces)
    if request.verify:
        # ---- pass 4: the file as saved, beside the input
        constants = [None if a is None or a.kind != "constant" else a.bpm[0] for a in aims]
        traces_after, faces_checked, codec_reference = read_back(written_video, source, masker.again(), paths.kind,
                                                                 request, n_frames, traces_before, constants, band,
                                                                 parts=editor.parts)
        checked = faces_checked[primary]
        traces_after, traces_before = traces_after[primary], traces_before[primary]
        if aim is not None and aim.kind != "constant":
            first, last = editor.faces[primary].frames  # its traces cover its span
            trajectory = trajectory_check(traces_after.rgb, fps, aim_curve[first:last + 1], band)
        vitals = vitals_check(request, traces_after, traces_before, n_frames, fps, band)
        lap("verify")

    figure_path = paths.figure if traces_after is not None else None  # nothing read back: nothing to draw
    if figure_path is not None:
        title = (f"{request.mode}: target {aim}" if aim is not None else "remove") + " (file as saved)"
        fig = plot_pulse(traces_after.rgb, fps, before=traces_before.rgb, target_hr_bpm=aim_constant, band_bpm=band,
                         title=title)
        paths.done(save_figure(fig, figure_path, overwrite=request.overwrite))
        lap("figure")
    info = dataclasses.replace(info, num_frames=n_frames)
    robust_to = request.robust_to or ("h264" if paths.kind == "h264" else "lossless")

    report = jsonable({
        "command": request.mode,
        "input": asdict(info),
        "outputs": {"video": written_video, "report": str(paths.report),
                    "figure": None if figure_path is None else str(figure_path),
                    **({} if key is None else {"key": key["path"]})},
        **({} if key is None else {"key": key}),
        "settings": {
            "target_hr": None if request.target is None else str(request.target),
            "face_targets": str(request.face_targets),
            "decoy_hr": None if request.decoy is None else str(request.decoy),
            "hrv_rmssd_ms": request.hrv_rmssd_ms,
            "resp_rate": None if request.resp_rate_bpm is None else str(request.resp_rate_bpm),
            "robust_to": robust_to, "output_codec": paths.kind, "crf": request.crf if paths.kind == "h264" else None,
            "seed": request.seed, "methods": list(request.methods), "band_bpm": list(band), "fps": fps,
            "bit_depth": request.bit_depth,
        },
        "kept": writer.kept,  # the input's streams, timestamps, rotation, colour tags, metadata
        "resume": None if output is None else {"segment_frames": output.segment_frames,
                                               "segments_reused": output.reused, "frames_reused": output.done_frames},
        "true_hr_bpm": request.true_hr_bpm,
        "face": {"frames": n_frames, "frames_detected": int(np.sum(editor.faces[primary].track.found)),
                 "id": editor.faces[primary].face_id},
        "faces": [_face_report(face, checked) for face, checked in zip(editor.faces, faces_checked)],
        "editor": editor.info,
        "verify": checked,
        "trajectory": trajectory,
        "vitals": vitals,
        "codec_reference": codec_reference,
        "timings_s": timings.as_dict(),
        "peak_memory_mb": timings.peak_mb,
    })
    _write_report(paths, report)
    return report


def _face_aim(request: JobRequest, face) -> HRTarget | None:
    """The HR a face of the saved file should read: its target, a removal's decoy, or None."""
    if face.editor is None:
        return None
    return request.decoy if face.target == REMOVE else face.target


def _face_report(face, checked: dict | None) -> dict:
    """One face in the report: where it is, what was asked, and its readings before and after."""
    track = face.track
    first, last = face.frames
    entry = {
        "id": face.face_id,
        "box": [round(float(v), 1) for v in np.median(track.boxes[first : last + 1], axis=0)],  # x0 y0 x1 y1
        "frames": [first, last],
        "frames_detected": int(np.sum(track.found)),
        "target": None if face.target is None else str(face.target),
        "edited": face.editor is not None,
    }
    if face.note:
        entry["note"] = face.note
    if face.editor is not None:
        info = face.editor.info
        entry["editor"] = {k: info[k] for k in ("own_hr_bpm", "injected_rms", "predicted_psnr_db") if k in info}
    if checked is not None:
        entry["hr_before"] = checked.get("hr_bpm_before")
        entry["hr_after"] = checked.get("hr_bpm")
        for key in ("target_within_3bpm", "snr_db_before", "snr_db_after"):  # snr: at the face's own HR
            if key in checked:
                entry[key] = checked[key]
    return entry


def _resumable_output(request: JobRequest, paths: _Paths, fps: float):
    """Pass 3's segmented writer for a video file output (``resume.py``); None for PNG frames."""
    from .resume import SEGMENT_S, ResumableOutput, job_key

    if paths.kind == "png":
        if request.resume:
            raise InputError("--resume needs a video file output (.mp4, .mkv): a folder of PNG frames is written "
                             "frame by frame, not in resumable segments.")
        return None
    segment_frames = max(1, round(SEGMENT_S * fps))
    return ResumableOutput(paths.video, segment_frames, job_key(request, fps, paths.kind, segment_frames),
                           request.resume, fps=fps, crf=request.crf, seed=request.seed, input_path=request.input,
                           preset=request.preset, bit_depth=request.bit_depth, upright=True)


def _write_key(request: JobRequest, paths: _Paths, source: Source, info, written_video: str) -> dict:
    """The restore key of a written output (``keys.write_key``): the input's kept 8-bit
    chunks when the clip was small enough to keep, else decoded again."""
    from .keys import write_key

    meta = {"mode": request.mode, "input": request.input.name, "output": Path(written_video).name,
            "output_codec": paths.kind,
            "target_hr": None if request.target is None else str(request.target),
            "decoy_hr": None if request.decoy is None else str(request.decoy)}
    key = write_key(paths.key, request.input, written_video, fps=info.fps, meta=meta, overwrite=request.overwrite,
                    chunks=source._cache)
    paths.done(paths.key)
    return key


def _write_report(paths: _Paths, report: dict) -> None:
    from .atomic import write_json

    write_json(paths.report, report)
    paths.done(paths.report)


def _estimate(request: JobRequest, paths: _Paths) -> dict:
    """Two streamed passes (face track, then mask + colour traces): bounded memory."""
    from .face import SkinMasker
    from .rppg import ColourTraces, read_traces
    from .rppg.hr import DEFAULT_BAND_BPM, check_duration
    from .verify import plot_pulse, save_figure, verify_traces
    from .video import probe_video

    t0 = time.perf_counter()
    info = probe_video(request.input, fps=request.fps)
    check_duration(info.num_frames, info.fps, min_duration_s=MIN_DURATION_S)
    source = Source(request.input, info, request.quiet)
    track = track_pass(source)
    masker, traces = SkinMasker(track), []
    for chunk in source.chunks("reading colour"):
        traces.append(read_traces(chunk, masker(chunk), request.methods))
    traces = ColourTraces.join(traces)
    info = dataclasses.replace(info, num_frames=len(traces))
    checked = verify_traces(traces, info.fps, methods=list(request.methods))
    vitals = vitals_check(request, traces, None, len(traces), info.fps, DEFAULT_BAND_BPM)
    if paths.figure is not None:
        fig = plot_pulse(traces.rgb, info.fps, title=f"{request.input.name}: POS pulse")
        paths.done(save_figure(fig, paths.figure, overwrite=request.overwrite))
    report = jsonable({
        "command": "estimate", "input": asdict(info),
        "settings": {"methods": list(request.methods), "fps": info.fps},
        "face": {"frames": len(traces), "frames_detected": int(np.sum(track.found))},
        "verify": checked, "vitals": vitals, "timings_s": {"total": round(time.perf_counter() - t0, 3)},
        "outputs": {"report": None if paths.report is None else str(paths.report),
                    "figure": None if paths.figure is None else str(paths.figure)},
    })
    if paths.report is not None:
        _write_report(paths, report)
    return report


# --------------------------------------------------------------------------- timings


class Stopwatch:
    """Seconds per pipeline stage: ``lap(name)`` closes the stage that ran since the last lap.

    Also the process's peak memory so far at the end of each stage (where the OS reports
    it), which shows the stage that set the peak."""

    def __init__(self):
        self._last = time.perf_counter()
        self._laps: dict[str, float] = {}
        self.peak_mb: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self._laps[name] = round(now - self._last, 3)
        self._last = now
        peak = peak_rss_mb()
        if peak is not None:
            self.peak_mb[name] = peak

    def as_dict(self) -> dict[str, float]:
        return {**self._laps, "total": round(sum(self._laps.values()), 3)}


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MB (None where unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)  # bytes on macOS, KB on Linux
