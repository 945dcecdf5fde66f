"""Command line: ``python -m physiolatent_core {edit,remove,estimate,demo}``.

A thin shell over the library::

    probe/read (video.py) -> face mask (face.py) -> edit (editor.py) -> write (video.py)
      -> read the file back -> verify + plot (verify.py) -> report JSON + figure PNG

The report describes the file *as saved*: the written video is decoded again and
verified, so codec losses count. For lossy outputs (H.264) the report also gives the
PSNR/SSIM against the original encoded with the same settings (``video.encode_decode``),
which separates the edit's cost from the codec's.

Errors the user can act on (``PhysioLatentError``) print as ``error: <message>`` on
stderr with exit code 2 and no traceback; outputs already written by the failing run
are removed, so a failure leaves nothing behind. The clip is streamed in chunks of about
``CHUNK_PIXELS`` (see ``_edit_or_remove`` for the passes); a worker thread decodes the
next chunk, and encodes the last edited one, while the main thread works on the current.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .errors import InputError, PhysioLatentError, VideoError
from .verify import jsonable
from .video import X264_PRESETS

MIN_DURATION_S = 4.0
# Frames decoded at once: about 8 Mpixel per chunk (26 frames at 640x480, 4 at 1080p),
# so a chunk of float32 frames stays near 100 MB whatever the resolution.
CHUNK_PIXELS = 8_000_000
# Clips up to 512 MiB of 8-bit frames are decoded once and kept (640x480: 19 s at 30 fps;
# 1080p at 24 fps or more: never, as clips under 4 s are refused). At 1 GiB, a cached 5 s
# 1080p clip peaked at 3.13 GB (benchmarks/speed.py --only-long --long-1080p 5).
CACHE_BYTES = 1 << 29
# The skin-mask grids of the analysis pass are kept for the edit and verify passes up to
# this size (~11 kB a frame: 100 s at 30 fps); longer clips render their masks again.
MASK_RECORD_BYTES = 32 << 20
CODEC_REFERENCE_S = 2.0  # seconds of input re-encoded to separate the codec's loss from the edit's
CODEC_REFERENCE_PIXELS = 32_000_000  # ... at most (0.5 s of 1080p): the copies are kept during the verify pass
LOSSY_SUFFIXES = (".mp4", ".mov", ".m4v")
DEFAULT_METHODS = ("green", "chrom", "pos", "lgi", "omit")


def _chunk_frames(info) -> int:
    return int(np.clip(CHUNK_PIXELS // max(info.width * info.height, 1), 4, 64))


# --------------------------------------------------------------------------- arguments


def _add_common(p: argparse.ArgumentParser, output: bool = True, files: bool = True) -> None:
    """Options shared by the subcommands. ``output``: the command writes a video (edit,
    remove); ``files``: it reads a user's file and may name its report/figure (not demo)."""
    if files:
        p.add_argument("--fps", type=float, help="frame rate (required for a folder of frames; overrides the file's)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated rPPG readers for verification, of green chrom pos pca ica lgi pbv omit "
                        "(mean skin colour) and ssr (skin pixels' colour distribution), or all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    if files:
        default = " (default: OUT stem + %s)" if output else " (default: none)"
        p.add_argument("--report", help="report JSON path" + (default % ".report.json" if output else default))
        p.add_argument("--figure", help="pulse/spectrum figure PNG path" + (default % ".png" if output else default))
        p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    if output or not files:
        p.add_argument("--crf", type=int, default=18, help="H.264 quality for .mp4 outputs, 0-51 (default 18)")
        p.add_argument("--preset", default="medium", choices=X264_PRESETS,
                       help="x264 speed preset for .mp4 outputs (default medium, as ComfyUI's SaveVideo)")
    if output:
        p.add_argument("--no-verify", action="store_true",
                       help="skip reading the saved file back (faster; the report then holds no after-edit "
                            "readings and no figure is drawn)")
        p.add_argument("--robust-to", choices=("lossless", "h264"),
                       help="edit strength for where the video goes: default matches the output "
                            "(.mp4 -> h264; .mkv or a PNG folder -> lossless)")
        p.add_argument("--amplitude", type=float,
                       help="training-free: fixed RMS of the injected pulse as a fraction of the skin's green "
                            "value (e.g. 0.0035 = 0.35 %%); default: chosen for --robust-to and raised where "
                            "estimators would still misread the target (the report's injected_rms)")
        p.add_argument("--min-psnr", type=float,
                       help="training-free: fidelity floor in dB (PSNR of the output against the input over "
                            "whole frames, predicted before writing); to keep it, strength raises stop and the "
                            "change is spread evenly over the face (an edit also removes less of the own "
                            "pulse). Default 52 for --robust-to lossless, none for h264; 0 switches it off "
                            "(the report's editor.predicted_psnr_db)")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("training-free", "physiolatent"), default="training-free",
                   help="training-free editor (default, CPU, no weights) or the paper's network")
    p.add_argument("--vae", help="physiolatent: CogVideoX VAE .safetensors (e.g. ComfyUI/models/vae/cogvideox_vae.safetensors)")
    p.add_argument("--adapter", help="physiolatent: trained adapter .safetensors (python -m physiolatent_core train)")
    p.add_argument("--clip", help="physiolatent: CLIP-L text encoder .safetensors, for adapters conditioned on CLIP")
    p.add_argument("--device", default="auto", help="physiolatent: cuda, cpu or auto (default)")
    p.add_argument("--crop-size", type=int, default=256, help="physiolatent: face crop side, multiple of 8 (default 256)")


class _NetworkEdit:
    """The paper's network behind the editor's streaming interface (observe / plan /
    apply). The network edits the whole clip at once (its VAE windows bound device
    memory), so the clip is held on the host once; ``apply`` hands out slices."""

    def __init__(self, args, input_path: Path, fps: float, target, mode: str):
        if not args.vae or not args.adapter:
            raise InputError("--method physiolatent needs --vae (CogVideoX VAE file) and --adapter (trained adapter).")
        if target is not None and target.kind != "constant":
            raise InputError("the PhysioLatent network takes one target HR per clip; give a number, not a ramp, "
                             "or use the training-free method for trajectories.")
        self.args, self.input_path, self.fps, self.mode = args, input_path, fps, mode
        self.target_bpm = None if target is None else float(target.bpm[0])
        self.frames: np.ndarray | None = None
        self.info: dict = {"method": "physiolatent"}

    def observe(self, frames, face_mask) -> None:
        pass

    def plan(self, track=None) -> None:
        import torch

        from .model import PhysioLatent, edit_with_model, load_adapter, load_vae
        from .video import read_video

        device = self.args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        vae = load_vae(self.args.vae, dtype=dtype, device=device)
        adapter = load_adapter(self.args.adapter, vae, clip_path=self.args.clip, device=device)
        frames, _ = read_video(self.input_path, fps=self.args.fps)
        result = edit_with_model(frames, self.fps, self.target_bpm, PhysioLatent(vae, adapter), mode=self.mode,
                                 crop_size=self.args.crop_size, device=device, dtype=dtype, track=track)
        self.frames = result.frames
        self.info.update(result.info)

    def apply(self, frames, face_mask, start: int, inplace: bool = False) -> np.ndarray:
        return self.frames[start : start + len(frames)]


def build_parser(network: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m physiolatent_core",
        description="Edit, remove or verify the heart-rate (rPPG) signal in a face video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{edit,remove,estimate,demo,train,evaluate}")

    p = sub.add_parser("edit", help="set the pulse to a target heart rate")
    p.add_argument("input", help="video file (.mp4 .mov .mkv .avi .webm) or folder of PNG/JPG frames")
    p.add_argument("-o", "--output", required=True, help=".mp4 (H.264), .mkv (lossless) or folder/ (PNG)")
    p.add_argument("--target-hr", required=True,
                   help="target heart rate in bpm: 75, or a linear ramp over the clip like 70:120")
    _add_network_options(p)
    _add_common(p)

    p = sub.add_parser("remove", help="remove the pulse (or replace it by a decoy heart rate)")
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help=".mp4 (H.264), .mkv (lossless) or folder/ (PNG)")
    p.add_argument("--decoy-hr", help="inject this heart rate (bpm) instead of pulse-band noise")
    _add_network_options(p)
    _add_common(p)

    p = sub.add_parser("estimate", help="read the heart rate of a face video")
    p.add_argument("input", help="video file or folder of frames")
    _add_common(p, output=False)

    p = sub.add_parser("demo", help="synthetic subject (true HR 68) edited to 100 bpm, verified")
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--duration", type=float, default=12.0, help="clip length in seconds (default 12)")
    p.add_argument("--size", default="360x480", help="frame size HEIGHTxWIDTH (default %(default)s)")
    p.add_argument("--skin-tone", type=int, metavar="5..10",
                   help="darken the subject's skin to this Monk Skin Tone scale tone (default: as photographed, ~5)")
    _add_common(p, output=False, files=False)

    # The paper's network (torch, diffusers) is imported only when its commands are asked
    # for, so the training-free commands start fast.
    p_train = sub.add_parser("train", help="train the PhysioLatent adapter (needs a CogVideoX VAE file)")
    p_eval = sub.add_parser("evaluate", help="the paper's tables for a trained adapter")
    if network:
        from .evaluate import add_evaluate_arguments
        from .train import add_train_arguments

        add_train_arguments(p_train)
        add_evaluate_arguments(p_eval)
    return parser


# --------------------------------------------------------------------------- helpers


class _Outputs:
    """Paths this run writes. ``check`` refuses existing ones early (before any work);
    ``cleanup`` deletes what was written when the run fails, so failures leave nothing."""

    def __init__(self, overwrite: bool):
        self.overwrite = overwrite
        self.written: list[Path] = []

    def check(self, path: Path, what: str, input_path: Path | None = None) -> Path:
        if input_path is not None and path.resolve() == input_path.resolve():
            raise InputError(f"the {what} path equals the input ({path}): choose another output path.")
        if path.exists() and not self.overwrite:
            raise InputError(f"{path} already exists: pass --overwrite or choose another {what} path.")
        if not path.parent.is_dir():
            raise InputError(f"the folder {path.parent} for the {what} does not exist: create it first.")
        return path

    def done(self, path) -> None:
        self.written.append(Path(path))

    def cleanup(self) -> None:
        for p in self.written:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()


def _stem_path(output: Path, suffix: str) -> Path:
    """``out/edited.mp4`` -> ``out/edited<suffix>``; ``frames/`` -> ``frames<suffix>``."""
    return output.parent / (output.stem + suffix) if output.suffix else output.parent / (output.name + suffix)


def _out_kind(raw: str) -> str:
    suffix = Path(raw).suffix.lower()
    if raw.endswith(("/", os.sep)) or not suffix:
        return "png"
    if suffix in LOSSY_SUFFIXES:
        return "h264"
    if suffix == ".mkv":
        return "ffv1"
    raise InputError(
        f"cannot write {suffix} files: use .mp4/.mov (H.264), .mkv (lossless FFV1) or a folder name "
        "ending in / (PNG frames)."
    )


def _methods(spec: str) -> list[str]:
    from .rppg import resolve_methods

    return resolve_methods([m.strip() for m in spec.split(",") if m.strip()])


def _band_for(*hr_values) -> tuple[float, float]:
    """HR band for verification: the default (40-180) widened to cover the HRs involved."""
    from .rppg.hr import DEFAULT_BAND_BPM

    values = [float(v) for v in hr_values if v is not None]
    low = min([DEFAULT_BAND_BPM[0]] + [v - 15 for v in values])
    high = max([DEFAULT_BAND_BPM[1]] + [v + 20 for v in values])
    return max(low, 25.0), high


def _ordinary_permissions(path) -> str:
    """Give a file the permissions the umask allows (mkstemp-based writers make it private)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return str(path)


def _write_json(path: Path, data: dict) -> None:
    """Atomic JSON write (temp file beside the target, then rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".json", dir=path.parent)
    try:
        _ordinary_permissions(tmp)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _progress(iterable, quiet: bool, **kwargs):
    from tqdm import tqdm

    # disable=None: no bars when stderr is not a terminal (logs, CI), bars otherwise.
    return tqdm(iterable, disable=True if quiet else None, leave=False, dynamic_ncols=True, **kwargs)


def _read(path: Path, fps: float | None, quiet: bool, what: str = "reading"):
    """Probe and decode a whole clip with a progress bar: (frames [T,H,W,3], VideoInfo)."""
    from .video import iter_frames, probe_video

    info = probe_video(path, fps=fps)
    chunk = 32
    chunks = list(_progress(iter_frames(path, chunk_frames=chunk), quiet, desc=what, unit="chunk",
                            total=math.ceil(info.num_frames / chunk)))
    frames = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    return frames, info


def _write(path: str, frames: np.ndarray, fps: float, crf: int, overwrite: bool, input_path, seed: int,
           quiet: bool) -> str:
    from .video import VideoWriter

    chunk = 32
    with VideoWriter(path, fps, crf=crf, overwrite=overwrite, seed=seed, input_path=input_path) as writer:
        for start in _progress(range(0, len(frames), chunk), quiet, desc="writing", unit="chunk"):
            writer.write(frames[start : start + chunk])
    return str(writer.path)


def _log(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _fmt_hr(value) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


# --------------------------------------------------------------------------- commands


class _Source:
    """The input clip, decoded in chunks once per pass, or kept after the analysis pass when it is small.

    Every pass of the pipeline reads the whole clip. A clip whose 8-bit frames fit in
    ``CACHE_BYTES`` is kept decoded (uint8, a quarter of float32) by the first pass that
    converts every frame (not the lazy tracking pass), which saves a decode per later
    pass; longer or larger clips are decoded again each pass, so memory stays bounded
    whatever their length.
    """

    def __init__(self, path: Path, info, args):
        self.path, self.info, self.args = path, info, args
        self.chunk_frames = _chunk_frames(info)
        self._cache: list[np.ndarray] | None = None
        self._cacheable = 0 < info.num_frames * info.width * info.height * 3 <= CACHE_BYTES

    def chunks(self, desc: str, lazy: bool = False):
        """float32 [t,H,W,3] chunks of ``chunk_frames`` frames, with a progress bar.

        ``lazy``: for a pass that looks at few frames, 8-bit frames as decoded: kept
        chunks as they are, and a decode's as ``video.LazyFrames``, converted to RGB
        frame by frame where used (such a pass leaves the clip to the next one to keep).
        """
        from .video import iter_frames, prefetch, to_float

        total = math.ceil(max(self.info.num_frames, 1) / self.chunk_frames)
        if self._cache is not None:
            raw = iter(self._cache)
        else:
            raw = iter_frames(self.path, chunk_frames=self.chunk_frames, raw=True, lazy=lazy)
            if self._cacheable and not lazy:
                raw = self._filling(raw)
        # The next chunk is decoded while the caller works on this one.
        def convert(chunk):  # LazyFrames are uint8 too
            return chunk if lazy and chunk.dtype == np.uint8 else to_float(chunk)

        floats = prefetch(convert(c) for c in raw)
        return _progress(floats, self.args.quiet, desc=desc, unit="chunk", total=total)

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


def _track(source: _Source):
    """Pass 1 over a clip: the face track (boxes only; nothing else is kept)."""
    from .face import FaceTracker

    tracker = FaceTracker(source.info.fps)
    for chunk in source.chunks("face tracking", lazy=True):  # it converts the frames it searches
        tracker.update(chunk)
    return tracker.finish()


def _masks_again(masker):
    """The same masks for a later pass over the input: replayed if recorded, else rendered again."""
    from .face import SkinMasker

    return masker.replay() if masker.recording else SkinMasker(masker.track)


def _edit_or_remove(args, outputs: _Outputs, *, true_hr_bpm: float | None = None) -> dict:
    """Shared pipeline of ``edit``, ``remove`` and ``demo``. Returns the report.

    Streams the clip in chunks, so memory stays bounded whatever its length:
    pass 1 tracks the face; pass 2 renders the skin mask, feeds the editor and keeps the
    input's colour traces; the editor plans; pass 3 edits and writes; pass 4 (unless
    ``--no-verify``) decodes the saved file beside the input for the colour traces and
    PSNR/SSIM of the file as saved. Clips small enough are decoded once (``_Source``).
    """
    from .editor import PulseEditor
    from .face import SkinMasker
    from .pulse import hr_curve, parse_hr_target
    from .rppg import ColourTraces, read_traces
    from .rppg.hr import check_duration
    from .verify import plot_pulse, save_figure
    from .video import Behind, VideoWriter, probe_video

    timings = _Stopwatch()
    lap = timings.lap

    # ---- validate everything cheap before any heavy work
    input_path = Path(args.input).expanduser()
    kind, out_path, report_path, figure_path = _output_paths(args, outputs, input_path)
    if not 0 <= args.crf <= 51:
        raise InputError(f"--crf must be 0..51 (0 lossless, 18 visually lossless, 23 x264 default), got {args.crf}.")
    methods = _methods(args.methods)
    target = parse_hr_target(args.target_hr) if args.command == "edit" else None
    decoy = parse_hr_target(args.decoy_hr) if getattr(args, "decoy_hr", None) is not None else None
    robust_to = args.robust_to or ("h264" if kind == "h264" else "lossless")

    info = probe_video(input_path, fps=args.fps)
    fps = info.fps
    check_duration(info.num_frames, fps, min_duration_s=MIN_DURATION_S)
    if getattr(args, "method", "training-free") == "physiolatent":
        if args.amplitude is not None or args.min_psnr is not None:
            raise InputError("--amplitude and --min-psnr set the training-free editor's strength; the network has "
                             "none to set.")
        editor = _NetworkEdit(args, input_path, fps, target, args.command)
    else:
        # Our writer dithers before x264; a .mkv/PNG output forced to h264 strength is
        # measured against crf 23, what most H.264 re-encodes use.
        editor = PulseEditor(fps, args.command, target=target, decoy_hr_bpm=decoy, robust_to=robust_to,
                             amplitude=args.amplitude, min_psnr_db=args.min_psnr, seed=args.seed,
                             codec_crf=args.crf if kind == "h264" else 23, codec_quantize="dither",
                             codec_preset=args.preset)
    lap("probe")

    # ---- pass 1: face track; pass 2: mask, observe, input traces
    source = _Source(input_path, info, args)
    track = _track(source)
    lap("face_track")
    masker, traces_before, n_frames = SkinMasker(track, record_bytes=MASK_RECORD_BYTES), [], 0
    for chunk in source.chunks("analysing"):
        mask = masker(chunk)
        editor.observe(chunk, mask)
        if not args.no_verify:  # the input's readings are only compared with the saved file's
            traces_before.append(read_traces(chunk, mask, methods))
        n_frames += len(chunk)
    traces_before = None if args.no_verify else ColourTraces.join(traces_before)
    check_duration(n_frames, fps, min_duration_s=MIN_DURATION_S)
    lap("analyse")
    editor.plan(track) if isinstance(editor, _NetworkEdit) else editor.plan()
    lap("plan")

    # ---- pass 3: edit and write (atomic: the file appears only when complete)
    target_path = str(out_path) + ("/" if kind == "png" else "")
    masks_again, start = _masks_again(masker), 0
    with VideoWriter(target_path, fps, crf=args.crf, overwrite=args.overwrite, seed=args.seed,
                     input_path=input_path, preset=args.preset) as writer, Behind(writer.write) as write:
        for chunk in source.chunks("editing"):
            write(editor.apply(chunk, masks_again(chunk), start, inplace=True))  # encoded while the next is edited
            start += len(chunk)
    written_video = str(writer.path)
    outputs.done(written_video)
    lap("edit_write")

    aim = target if target is not None else decoy  # the HR the saved file should read, if any
    aim_curve = hr_curve(aim, n_frames, fps) if aim is not None else None
    aim_constant = float(aim_curve[0]) if aim is not None and aim.kind == "constant" else None
    band = _band_for(*([] if aim_curve is None else [aim_curve.min(), aim_curve.max()]), true_hr_bpm)
    checked = trajectory = codec_reference = traces_after = None
    if not args.no_verify:
        # ---- pass 4: the file as saved, beside the input
        traces_after, checked, codec_reference = _read_back(written_video, source, _masks_again(masker), kind,
                                                            args, n_frames, fps, traces_before, methods,
                                                            aim_constant, band)
        if aim is not None and aim.kind != "constant":
            trajectory = _trajectory_check(traces_after.rgb, fps, aim_curve, band)
        lap("verify")

    editor_info = editor.info
    if traces_after is None:
        figure_path = None  # nothing read back to draw
    if figure_path is not None:
        title = (f"{args.command}: target {aim}" if aim is not None else "remove") + " (file as saved)"
        fig = plot_pulse(traces_after.rgb, fps, before=traces_before.rgb, target_hr_bpm=aim_constant, band_bpm=band,
                         title=title)
        outputs.done(_ordinary_permissions(save_figure(fig, figure_path, overwrite=args.overwrite)))
        lap("figure")
    info = dataclasses.replace(info, num_frames=n_frames)

    report = jsonable({
        "command": args.command,
        "input": asdict(info),
        "outputs": {"video": written_video, "report": str(report_path),
                    "figure": None if figure_path is None else str(figure_path)},
        "settings": {
            "target_hr": None if target is None else str(target),
            "decoy_hr": None if decoy is None else str(decoy),
            "robust_to": robust_to, "output_codec": kind, "crf": args.crf if kind == "h264" else None,
            "seed": args.seed, "methods": methods, "band_bpm": list(band), "fps": fps,
        },
        "true_hr_bpm": true_hr_bpm,
        "face": {"frames": n_frames, "frames_detected": int(np.sum(track.found))},
        "editor": editor_info,
        "verify": checked,
        "trajectory": trajectory,
        "codec_reference": codec_reference,
        "timings_s": timings.as_dict(),
        "peak_memory_mb": timings.peak_mb,
    })
    _write_json(report_path, report)
    outputs.done(report_path)
    if not args.quiet:
        _print_summary(report)
    return report


def _read_back(written_video: str, source: _Source, masker, kind: str, args, n_frames: int, fps: float,
               traces_before, methods, aim_constant, band):
    """Pass 4: decode the saved file beside the input (``masker``: a fresh skin masker of
    the input). Returns (colour traces of the saved file, verification dict with
    PSNR/SSIM, codec reference or None)."""
    from .codec import PARALLEL_MAX_PIXELS
    from .rppg import ColourTraces, read_traces
    from .verify import FidelityMeter, verify_traces
    from .video import iter_frames, prefetch, quantize_to_uint8

    meter, traces_after = FidelityMeter(n_frames), []
    head_frames = min(n_frames, int(round(CODEC_REFERENCE_S * fps)),
                      max(8, CODEC_REFERENCE_PIXELS // max(source.info.width * source.info.height, 1)))
    head_in = head_saved = None  # the first frames of both clips, 8-bit, for the codec reference
    # The codec reference runs in a worker thread beside the rest of this pass, once both
    # heads are in; not for frames above 640x480, where a second x264 instance during the
    # pass would raise the peak memory (see codec.PARALLEL_MAX_PIXELS).
    beside = source.info.width * source.info.height <= PARALLEL_MAX_PIXELS
    codec_reference = None

    def start_reference():
        return pool.submit(_codec_reference, head_in, head_saved, fps, args.crf, args.seed, args.preset)

    saved_chunks = prefetch(iter_frames(Path(written_video), chunk_frames=source.chunk_frames))
    seen = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec-reference") as pool:
        for original in source.chunks("verifying"):
            # Both files are decoded in chunks of the same length, so the chunks line up.
            saved = next(saved_chunks, None)
            if saved is None or len(saved) != len(original):
                raise VideoError(f"{written_video} decodes to fewer frames than the {n_frames} written: it is damaged.")
            saved = saved[:, : original.shape[1], : original.shape[2]]  # H.264 pads odd sizes
            traces_after.append(read_traces(saved, masker(original), methods))
            meter.update(saved, original)
            if kind == "h264" and seen < head_frames:
                # 8-bit copies: both clips come from 8-bit video, and 2 s of 1080p float32 is 1.5 GB.
                if head_in is None:
                    head_in, head_saved = (np.empty((head_frames, *original.shape[1:]), np.uint8) for _ in range(2))
                at = slice(seen, min(seen + len(original), head_frames))
                head_in[at] = quantize_to_uint8(original[: at.stop - seen], "round")
                head_saved[at] = quantize_to_uint8(saved[: at.stop - seen], "round")
                if at.stop == head_frames and beside:
                    codec_reference = start_reference()
            seen += len(original)
        traces_after = ColourTraces.join(traces_after)
        if next(saved_chunks, None) is not None:
            raise VideoError(f"{written_video} decodes to more frames than the {n_frames} written.")
        if head_in is not None and codec_reference is None:
            codec_reference = start_reference()

    checked = verify_traces(traces_after, fps, methods=methods, traces_before=traces_before,
                            target_hr_bpm=aim_constant, band_bpm=band)
    checked.update(psnr_db=meter.psnr_db, ssim=meter.ssim, ssim_frames=len(meter.ssim_at))
    return traces_after, checked, None if codec_reference is None else codec_reference.result()


class _Stopwatch:
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
        peak = _peak_rss_mb()
        if peak is not None:
            self.peak_mb[name] = peak

    def as_dict(self) -> dict[str, float]:
        return {**self._laps, "total": round(sum(self._laps.values()), 3)}


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MB (None where unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)  # bytes on macOS, KB on Linux


def _output_paths(args, outputs: _Outputs, input_path: Path):
    """(kind, video, report, figure or None) for edit/remove, checked before any work."""
    kind = _out_kind(args.output)
    out_path = outputs.check(Path(args.output).expanduser(), "output", input_path)
    report_path = outputs.check(Path(args.report or _stem_path(out_path, ".report.json")).expanduser(), "report")
    figure_path = None
    if not args.no_figure:
        figure_path = outputs.check(Path(args.figure or _stem_path(out_path, ".png")).expanduser(), "figure")
    paths = [p.resolve() for p in (out_path, report_path, figure_path) if p is not None]
    if len(set(paths)) < len(paths):
        raise InputError("the output, report and figure paths must differ.")
    return kind, out_path, report_path, figure_path


def _codec_reference(frames, saved, fps: float, crf: int, seed: int, preset: str = "medium") -> dict:
    """Fidelity of a lossy save against the input through the same writer (dither +
    libx264 at this crf): the edit's cost without the codec's own loss. Measured on the
    first ``CODEC_REFERENCE_S`` seconds (``frames``, ``saved``: uint8 [t,H,W,3]), so long
    clips need no second full encode; chunk by chunk, so 1080p stays small."""
    from .verify import FidelityMeter
    from .video import encode_decode_chunks, to_float

    n = len(frames)
    edit_vs_reference, reference_vs_input = FidelityMeter(n), FidelityMeter(n)
    chunks = (to_float(frames[s : s + 8]) for s in range(0, n, 8))
    encoded_chunks = encode_decode_chunks(chunks, fps, crf=crf, quantize="dither", preset=preset, seed=seed)
    for i, encoded in enumerate(encoded_chunks):
        at = slice(8 * i, 8 * i + len(encoded))
        edit_vs_reference.update(to_float(saved[at]), encoded)
        reference_vs_input.update(encoded, to_float(frames[at]))
    return {
        "description": f"first {n} frames of the input encoded with the same settings "
                       f"(H.264 crf {crf}, dithered)",
        "psnr_db": edit_vs_reference.psnr_db,
        "ssim": edit_vs_reference.ssim,
        "codec_only_psnr_db": reference_vs_input.psnr_db,
    }


def _trajectory_check(rgb, fps, aim_curve, band) -> dict:
    """For an HR trajectory: POS HR over sliding windows of the colour trace ``rgb [T,3]``
    against the target curve."""
    from .rppg import ESTIMATORS, hr_over_time

    duration = len(rgb) / fps
    window_s = min(8.0, duration / 2)
    pulse = ESTIMATORS["pos"](rgb, fps)
    times, hrs = hr_over_time(pulse, fps, window_s=window_s, step_s=1.0, band_bpm=band)
    times, hrs = np.asarray(times, float), np.asarray(hrs, float)
    want = np.interp(times * fps, np.arange(len(aim_curve)), aim_curve)
    ok = np.isfinite(hrs)
    return {
        "method": "pos", "window_s": window_s, "times_s": times, "hr_bpm": hrs, "target_bpm": want,
        "mae_bpm": float(np.mean(np.abs(hrs[ok] - want[ok]))) if ok.any() else None,
    }


def _print_summary(report: dict) -> None:
    v, s, inp = report["verify"] or {}, report["settings"], report["input"]
    lines = [f"input   {inp['path']}  {inp['width']}x{inp['height']}, {inp['fps']:.3g} fps, "
             f"{inp['num_frames']} frames ({inp['duration_s']:.1f} s)"]
    if report.get("true_hr_bpm") is not None:
        lines.append(f"true HR {report['true_hr_bpm']:.1f} bpm")
    if v:
        lines.append(f"HR before (median of estimators): {_fmt_hr(v.get('hr_bpm_median_before'))} bpm")
    if s["target_hr"]:
        lines.append(f"target  {s['target_hr']}")
    if s["decoy_hr"]:
        lines.append(f"decoy   {s['decoy_hr']}")
    e = report.get("editor") or {}
    if e.get("injected_rms") and e.get("injected_rms_base") and e["injected_rms"] > e["injected_rms_base"]:
        lines.append(f"strength raised to {100 * e['injected_rms']:.2f} % RMS (from {100 * e['injected_rms_base']:.2f} %): "
                     "the clip's own colour changes would outvote a weaker pulse")
    if e.get("predicted_misreads"):
        lines.append("predicted to misread the target even so: " + ", ".join(e["predicted_misreads"]))
    if not v:
        lines.append("not verified (--no-verify): read the saved file with `python -m physiolatent_core estimate`")
    else:
        lines.append("HR after, read from the saved file:")
    for name, hr in v.get("hr_bpm", {}).items():
        before = v.get("hr_bpm_before", {}).get(name)
        lines.append(f"  {name:6s} {_fmt_hr(hr)} bpm   (before {_fmt_hr(before)})")
    if report["command"] == "remove" and v.get("snr_db_before"):
        method = "pos" if "pos" in v["snr_db_before"] else next(iter(v["snr_db_before"]))
        before, after = v["snr_db_before"][method], v["snr_db_after"][method]
        if before is not None and after is not None:
            lines.append(f"pulse SNR at the original HR ({method}): {before:.1f} dB before, {after:.1f} dB after")
    if report.get("trajectory") and report["trajectory"]["mae_bpm"] is not None:
        lines.append(f"trajectory error (POS, sliding windows): {report['trajectory']['mae_bpm']:.1f} bpm")
    if v:
        fidelity = f"PSNR {v['psnr_db']:.1f} dB, SSIM {v['ssim']:.4f} against the input"
        if report.get("codec_reference"):
            c = report["codec_reference"]
            fidelity += f"; {c['psnr_db']:.1f} dB against the input through the same codec"
        lines.append(fidelity)
    outs = report["outputs"]
    lines.append("wrote   " + ", ".join(p for p in (outs["video"], outs["report"], outs["figure"]) if p))
    print("\n".join(lines))


def _estimate(args, outputs: _Outputs) -> dict:
    from .face import SkinMasker
    from .rppg import ColourTraces, read_traces
    from .rppg.hr import check_duration
    from .verify import plot_pulse, save_figure, verify_traces
    from .video import probe_video

    input_path = Path(args.input).expanduser()
    methods = _methods(args.methods)
    report_path = outputs.check(Path(args.report).expanduser(), "report", input_path) if args.report else None
    figure_path = None
    if args.figure and not args.no_figure:
        figure_path = outputs.check(Path(args.figure).expanduser(), "figure", input_path)
    t0 = time.perf_counter()
    info = probe_video(input_path, fps=args.fps)
    check_duration(info.num_frames, info.fps, min_duration_s=MIN_DURATION_S)
    # Two streamed passes (face track, then mask + colour trace): bounded memory.
    source = _Source(input_path, info, args)
    track = _track(source)
    masker, traces = SkinMasker(track), []
    for chunk in source.chunks("reading colour"):
        traces.append(read_traces(chunk, masker(chunk), methods))
    traces = ColourTraces.join(traces)
    info = dataclasses.replace(info, num_frames=len(traces))
    checked = verify_traces(traces, info.fps, methods=methods)
    if figure_path is not None:
        fig = plot_pulse(traces.rgb, info.fps, title=f"{input_path.name}: POS pulse")
        outputs.done(_ordinary_permissions(save_figure(fig, figure_path, overwrite=args.overwrite)))
    report = jsonable({
        "command": "estimate", "input": asdict(info),
        "settings": {"methods": methods, "fps": info.fps},
        "face": {"frames": len(traces), "frames_detected": int(np.sum(track.found))},
        "verify": checked, "timings_s": {"total": round(time.perf_counter() - t0, 3)},
        "outputs": {"report": None if report_path is None else str(report_path),
                    "figure": None if figure_path is None else str(figure_path)},
    })
    if report_path is not None:
        _write_json(report_path, report)
        outputs.done(report_path)
    # The estimate is the command's result: printed even with --quiet.
    for name in methods:
        hr, snr = checked["hr_bpm"][name], checked["snr_db"][name]
        print(f"{name:6s} {_fmt_hr(hr)} bpm   SNR {'n/a' if snr is None else f'{snr:5.1f} dB'}")
    print(f"median {_fmt_hr(checked['hr_bpm_median'])} bpm")
    return report


def _demo(args, outputs: _Outputs) -> dict:
    """Synthetic subject (true HR 68) -> input.mp4 -> edit to 100 bpm -> edited.mp4 + report + figure."""
    from .synth import check_skin_tone, synth_subject

    out_dir = Path(args.out).expanduser()
    names = {"input": "input.mp4", "edited": "edited.mp4", "report": "report.json", "figure": "figure.png"}
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file: give a folder for the demo outputs.")
    for name in names.values():
        if (out_dir / name).exists() and not args.overwrite:
            raise InputError(f"{out_dir / name} already exists: pass --overwrite or choose another --out folder.")
    if not 0 <= args.crf <= 51:
        raise InputError(f"--crf must be 0..51, got {args.crf}.")
    check_skin_tone(args.skin_tone, "--skin-tone")
    if not out_dir.exists():
        out_dir.mkdir(parents=True)
        outputs.done(out_dir)  # created by this run: removed again on failure
    try:
        size = tuple(int(s) for s in args.size.lower().split("x"))
        assert len(size) == 2
    except (ValueError, AssertionError):
        raise InputError(f"--size must look like 360x480 (height x width), got {args.size!r}.") from None
    true_hr, target_hr = 68.0, 100.0
    _log(args, f"rendering a synthetic subject ({args.duration:g} s, true HR {true_hr:g} bpm)...")
    clip = synth_subject(duration_s=args.duration, fps=30.0, hr_bpm=true_hr, size=size, seed=args.seed,
                         skin_tone=args.skin_tone)
    input_path = out_dir / names["input"]
    outputs.done(_write(str(input_path), clip.frames, clip.fps, args.crf, args.overwrite, None, args.seed,
                        args.quiet))
    true_mean = clip.hr_bpm
    del clip
    edit_args = argparse.Namespace(
        command="edit", input=str(input_path), output=str(out_dir / names["edited"]), target_hr=str(target_hr),
        report=str(out_dir / names["report"]), figure=str(out_dir / names["figure"]), no_figure=False,
        fps=None, crf=args.crf, preset=args.preset, no_verify=False, robust_to=None, amplitude=None, min_psnr=None,
        methods=args.methods, seed=args.seed, overwrite=args.overwrite, quiet=args.quiet,
    )
    return _edit_or_remove(edit_args, outputs, true_hr_bpm=true_mean)


def _import_in_background(*modules: str) -> None:
    """Import slow modules (scipy.signal: ~1 s) in a daemon thread, so that they load
    beside the first decode pass instead of before it. A first use on the main thread
    waits for the import to finish (Python's per-module import lock)."""
    import importlib
    import threading

    def load():
        for name in modules:
            importlib.import_module(name)

    threading.Thread(target=load, name="imports", daemon=True).start()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(network=bool(argv) and argv[0] in ("train", "evaluate"))
    args = parser.parse_args(argv)
    outputs = _Outputs(getattr(args, "overwrite", False))
    if args.command in ("edit", "remove", "estimate", "demo"):
        _import_in_background("scipy.signal", "scipy.sparse.linalg")
    try:
        if args.command in ("edit", "remove"):
            _edit_or_remove(args, outputs)
        elif args.command == "estimate":
            _estimate(args, outputs)
        elif args.command == "train":
            from .train import main_train

            return main_train(args)
        elif args.command == "evaluate":
            from .evaluate import main_evaluate

            return main_evaluate(args)
        else:
            _demo(args, outputs)
    except PhysioLatentError as exc:
        outputs.cleanup()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        outputs.cleanup()
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException:
        outputs.cleanup()
        raise
    return 0
