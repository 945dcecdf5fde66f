"""Video files in and out: PyAV for containers, OpenCV for folders of frames.

Frames are ``float32 [T, H, W, 3]`` RGB in 0..1 and ``fps`` travels beside them.

Reading
    ``probe_video`` / ``iter_frames`` / ``read_video`` accept .mp4 .mov .m4v .avi .mkv
    .webm files and folders of PNG/JPG frames (natural order: ``f2.png`` before
    ``f10.png``). Folders carry no frame rate: pass ``fps=``. Variable-frame-rate files
    report ``fps = 1 / median frame interval`` and ``variable_fps=True``; frames are
    returned in order, not resampled. Grayscale sources are returned as RGB (the
    grey value in all three channels, ``is_grayscale=True``); an alpha channel is
    dropped with a warning (``has_alpha=True``). Sources deeper than 8 bits are read
    as 8-bit RGB. A truncated file whose header survives returns the frames that
    decode, with a ``TruncatedVideoWarning``; a file whose header is cut raises
    ``VideoError``.

Writing (by the output's extension)
    ``.mp4`` / ``.mov`` → H.264 (libx264, yuv420p, BT.709 limited range, ``crf``, ``preset``);
    ``.mkv`` → FFV1, ``bgr0`` (lossless for 8-bit RGB); a path ending in ``/`` or
    without a suffix → a folder of ``frame_000000.png`` ... H.264 4:2:0 needs even
    sizes, so an odd width/height is padded by repeating the last column/row.
    Writes are atomic (temp file or folder beside the target, renamed on success);
    the input is never overwritten and an existing output only with ``overwrite=True``.

8-bit quantisation and the pulse
    A skin pulse is often below one grey level, and rounding to uint8 erases it.
    ``quantize_to_uint8(method="dither")`` diffuses each pixel's rounding residual to
    the same pixel of the next frame, so the running mean over time keeps the
    sub-level signal (.mkv and PNG output). H.264 discards scattered ±1 pixel changes
    in static areas as noise but keeps whole blocks stepping by one level, so the .mp4
    writer dithers the Y/Cb/Cr planes (its last 8-bit step) in a codec-aware way: luma
    pixels hold their level until the wanted value moves 0.75 away, and the error
    diffusion over time runs on 8x8 tile means (``_TileDither``); chroma uses the
    per-pixel diffusion with residuals starting equal within 4x4 tiles. Measured through
    crf 18 (0.3-level sine, still image): flat grey keeps ~85 %, a textured face ~50 %
    (per-pixel dither: ~0 % and ~20 %; rounding: 0 %).
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import re
import shutil
import tempfile
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import cv2
import numpy as np
from einops import repeat

from .errors import InputError, VideoError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")  # for file pickers; FFmpeg reads more
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
QUANTIZE_METHODS = ("dither", "round", "truncate")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# RGB 0..1 → Y'CbCr code values, BT.709 limited range (Y 16..235, Cb/Cr 16..240): the
# H.264 output is tagged so, and players and swscale convert back with the same matrix.
_KR, _KB = 0.2126, 0.0722
_KG = 1 - _KR - _KB
_RGB_TO_YCBCR = np.array([
    [219 * _KR, 219 * _KG, 219 * _KB, 16],
    [-112 * _KR / (1 - _KB), -112 * _KG / (1 - _KB), 112, 128],
    [112, -112 * _KG / (1 - _KR), -112 * _KB / (1 - _KR), 128],
], np.float32)
# swscale BILINEAR | ACCURATE_RND | FULL_CHR_H_INT for YUV → RGB: swscale's fast default is
# off by ~1 grey level on average (up to 2) on flat colours; this is within 0.5, at ~2 ms
# per 640x480 frame instead of 0.2 ms.
_SWS_ACCURATE = 0x2 | 0x40000 | 0x2000
# Tile size of the H.264 dither (luma pixels; chroma uses half). Measured on a flat field
# through crf 18: per-pixel dither loses a 0.3-level sine, tiles of 4 keep ~65 %, 8 and 16 ~85 %.
_H264_DITHER_BLOCK = 8


@functools.cache
def _x264_options() -> dict[str, str]:
    """x264 options that keep its output reproducible.

    x264's AVX-512 code encodes identical frames differently from run to run at some frame
    widths (measured with this package's libx264 on an AMD EPYC with AVX-512: a 260x200
    clip gave a new file on every encode, 256x200 the same; limited to AVX2 every encode
    was identical), and every measurement here (the codec gain, the edit it sets) must be
    repeatable. On such CPUs x264 is given the instruction sets up to AVX2, all of which
    an AVX-512 CPU has; elsewhere it chooses for itself.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            avx512 = " avx512f" in f.read()
    except OSError:  # not Linux: x264's own choice
        avx512 = False
    return {"x264-params": "asm=AVX2,FMA3,BMI2,LZCNT"} if avx512 else {}


class TruncatedVideoWarning(UserWarning):
    """The file ended early: the frames before the damage were returned."""


@dataclass
class VideoInfo:
    """What ``probe_video`` found; sizes in pixels, before any padding or conversion."""

    path: str
    width: int
    height: int
    fps: float
    num_frames: int  # exact when countable, else duration * fps
    duration_s: float
    variable_fps: bool
    has_alpha: bool
    is_grayscale: bool
    codec: str  # e.g. "h264", or "png" / "mjpeg" for a folder of frames


# ----------------------------------------------------------------------------- reading


def _existing(path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise VideoError(f"video not found: {p}. Check the path (it is relative to {Path.cwd()}).")
    return p


def _check_fps(fps) -> None:
    if not (isinstance(fps, numbers.Real) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a positive number of frames per second, got {fps!r}.")


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _frame_files(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
    if not files:
        raise VideoError(f"{folder} holds no PNG/JPG frames: point at a video file or a folder of frame images.")
    return sorted(files, key=lambda f: _natural_key(f.name))


def _read_image(path: Path) -> tuple[np.ndarray, int]:
    """One image file → (RGB array [H, W, 3] uint8 or uint16, channels in the file)."""
    # imdecode(fromfile) rather than imread: works with non-ASCII paths on every OS.
    img = cv2.imdecode(np.fromfile(str(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise VideoError(f"cannot decode image {path}: is it a valid PNG/JPG?")
    channels = 1 if img.ndim == 2 else img.shape[2]
    if channels == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif channels == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img, channels


TO_FLOAT_BLOCK = 1 << 18  # values (1 MiB of float32)


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 0..1 in one pass (float input: as float32, unscaled)."""
    if pixels.dtype.kind == "f":
        return np.asarray(pixels, np.float32)
    scale = np.float32(1.0 / np.iinfo(pixels.dtype).max)
    src = np.ascontiguousarray(pixels).reshape(-1)
    out = np.empty(src.shape, np.float32)
    # Cast, then scale in place, a cache-sized block at a time: numpy's mixed-type
    # multiply (uint8 * float32 -> float32) is ~5x slower.
    for at in range(0, len(src), TO_FLOAT_BLOCK):
        block = out[at : at + TO_FLOAT_BLOCK]
        np.copyto(block, src[at : at + TO_FLOAT_BLOCK], casting="unsafe")
        block *= scale
    return out.reshape(pixels.shape)


def _open(path: Path):
    """Open a container and its first video stream, with user-facing errors."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise VideoError(
            f"cannot open {path} as a video ({exc.strerror or exc}). The file is not a video, or its "
            "header is damaged (e.g. a cut-off download): re-export it as .mp4 or .mkv."
        ) from exc
    if container.format.name == "tty":  # FFmpeg renders any text file as an "ANSI art" video
        container.close()
        raise VideoError(f"{path} is a text file, not a video: choose a video file or a folder of frames.")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video frames (no video stream, or an empty one): choose a file with video.")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: several times faster decoding
    return container, stream


def _pixel_format(stream) -> tuple[bool, bool]:
    """(has_alpha, is_grayscale) for a stream's pix_fmt."""
    fmt = stream.codec_context.format
    if fmt is None:  # unknown until decoding (rare): assume plain 8-bit colour
        return False, False
    has_alpha = any(c.is_alpha for c in fmt.components)
    colour = [c for c in fmt.components if not c.is_alpha]
    is_gray = len(colour) == 1 and not fmt.has_palette
    return has_alpha, is_gray


def probe_video(path, fps: float | None = None) -> VideoInfo:
    """Describe a video file or a folder of frames without decoding pixels.

    ``fps`` is required for a folder of frames (which has none) and, for a video file,
    overrides the rate found in the file. Variable frame rate: ``fps`` is 1 / median
    interval between presentation timestamps, and ``variable_fps`` is True when any
    interval is off that median by more than 2 % (and by more than 1.5 timestamp ticks,
    so millisecond rounding of a constant rate does not count).
    """
    p = _existing(path)
    if fps is not None:
        _check_fps(fps)
    if p.is_dir():
        files = _frame_files(p)
        if fps is None:
            raise InputError(f"missing fps: pass --fps (a folder of frames such as {p} has no frame rate).")
        first, channels = _read_image(files[0])
        return VideoInfo(str(p), first.shape[1], first.shape[0], float(fps), len(files), len(files) / fps,
                         False, channels == 4, channels == 1,
                         "png" if files[0].suffix.lower() == ".png" else "mjpeg")
    container, stream = _open(p)
    try:
        pts = np.sort([pk.pts for pk in container.demux(stream) if pk.pts is not None and pk.size > 0])
        tick = float(stream.time_base)
        has_alpha, is_gray = _pixel_format(stream)
        nominal = float(stream.average_rate or stream.guessed_rate or 0)
        variable = False
        if len(pts) >= 3:
            intervals = np.diff(pts) * tick
            median = float(np.median(intervals))
            off = np.abs(intervals - median)
            variable = bool(np.any((off > 0.02 * median) & (off > 1.5 * tick)))
            # Keep the container's exact rational (e.g. 30000/1001) when it agrees.
            measured = 1.0 / median if median > 0 else nominal
            found = nominal if (not variable and nominal and abs(nominal - measured) < 0.01 * measured) else measured
        else:
            found = nominal
        if not found:
            raise VideoError(f"{p} has no frame rate and too few frames to measure one: pass --fps.")
        num = len(pts) or stream.frames
        if stream.frames > len(pts) > 0:
            warnings.warn(f"{p} is truncated: its header lists {stream.frames} frames, {len(pts)} are present.",
                          TruncatedVideoWarning, stacklevel=2)
        if num == 0:
            raise VideoError(f"{p} contains no video frames: the file is empty or was not finished writing.")
        duration = (float(pts[-1] - pts[0]) * tick + 1.0 / found) if len(pts) >= 2 else num / found
        return VideoInfo(str(p), stream.codec_context.width, stream.codec_context.height, float(fps or found),
                         int(num), duration, variable, has_alpha, is_gray, stream.codec_context.name)
    finally:
        container.close()


class LazyFrame:
    """One decoded video frame whose YUV -> RGB conversion waits until it is used.

    ``np.asarray(frame)`` gives the uint8 [H, W, 3] RGB that ``iter_frames`` would have
    returned (the same swscale conversion). The conversion is most of a decode (a 10 s
    640x480 file: 1.68 s decoded to RGB, 0.37 s without), and a pass that looks at few
    frames (the face tracker searches about one in eight) skips it for the others.
    """

    __slots__ = ("_frame", "shape")
    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, frame: av.VideoFrame):
        self._frame, self.shape = frame, (frame.height, frame.width, 3)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rgb = _to_rgb(self._frame)
        return rgb if dtype is None else rgb.astype(dtype, copy=False)

    def copy(self) -> LazyFrame:
        return self  # nothing in it changes


class LazyFrames:
    """A chunk of ``LazyFrame`` [t] standing for the uint8 [t, H, W, 3] chunk it converts to:
    ``shape``, ``dtype``, ``len``, indexing and iteration give frames, ``np.asarray`` all of them."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, frames: list[LazyFrame]):
        self._frames = frames
        self.shape = (len(frames), *frames[0].shape)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index):
        return self._frames[index]

    def __iter__(self):
        return iter(self._frames)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.stack([np.asarray(f, dtype) for f in self._frames])


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24", interpolation=_SWS_ACCURATE)


def _decoded_images(path: Path, start: int, lazy: bool = False) -> Iterator:
    """Yield frames from index ``start`` as RGB uint8/uint16 [H, W, 3] (``lazy``: video
    frames as ``LazyFrame``), in presentation order."""
    if path.is_dir():
        for f in _frame_files(path)[start:]:
            yield _read_image(f)[0]
        return
    container, stream = _open(path)
    has_alpha, _ = _pixel_format(stream)
    if has_alpha:
        warnings.warn(f"{path} has an alpha channel; it is dropped (frames are RGB).", stacklevel=3)
    index, damage, expected = 0, "", stream.frames  # frames the header lists (0: unknown)
    try:
        for frame in container.decode(stream):
            if index >= start:  # decode-and-skip: exact frame indices, also for VFR files
                yield LazyFrame(frame) if lazy else _to_rgb(frame)
            index += 1
    except av.FFmpegError as exc:
        damage = f"decoding failed after frame {index} ({exc})"
    finally:
        container.close()
    if not damage and index < expected:  # cut off at the end: the demuxer just stops
        damage = f"decoded {index} of the {expected} frames its header lists"
    if index == 0:
        raise VideoError(f"{path} contains no decodable video frames ({damage or 'empty'}): re-export the file.")
    if damage:
        warnings.warn(f"{path} is damaged or truncated: {damage}; returning the frames before it.",
                      TruncatedVideoWarning, stacklevel=3)


def iter_frames(path, chunk_frames: int = 64, start: int = 0, stop: int | None = None,
                raw: bool = False, lazy: bool = False) -> Iterator:
    """Stream frames ``start`` (inclusive) to ``stop`` (exclusive) in chunks.

    Yields float32 [t, H, W, 3] RGB 0..1 with t <= chunk_frames (``raw``: the decoded
    uint8/uint16 codes, a fresh array per chunk; ``lazy``: a video's chunks as
    ``LazyFrames``, converted to RGB frame by frame where used, a folder's as ``raw``); at
    most one chunk (plus one decoded frame) is in memory at a time. Frames before
    ``start`` are decoded and skipped, which keeps frame indices exact for
    variable-frame-rate files.
    """
    if chunk_frames < 1 or start < 0 or (stop is not None and stop < start):
        raise InputError(f"need chunk_frames >= 1 and 0 <= start <= stop, got {chunk_frames}, {start}, {stop}.")
    p = _existing(path)
    buffer, count, index, first = None, 0, start, None
    for img in _decoded_images(p, start, lazy=lazy):
        if stop is not None and index >= stop:
            break
        if buffer is None:
            first = img
            buffer = ([None] * chunk_frames if isinstance(img, LazyFrame)
                      else np.empty((chunk_frames, *img.shape), img.dtype))
        if img.shape != first.shape or img.dtype != first.dtype:
            raise VideoError(f"frame {index} of {p} is {img.shape[1]}x{img.shape[0]} {img.dtype}, earlier frames are "
                             f"{first.shape[1]}x{first.shape[0]} {first.dtype}: all frames must share one size "
                             "and bit depth.")
        buffer[count] = img
        count, index = count + 1, index + 1
        if count == chunk_frames:
            yield _chunk(buffer, count, raw or lazy)
            count = 0
    if count:
        yield _chunk(buffer, count, raw or lazy)


def _chunk(buffer, count: int, raw: bool):
    """The first ``count`` frames of ``iter_frames``' buffer, as the caller keeps them."""
    if isinstance(buffer, list):
        return LazyFrames(buffer[:count])
    return buffer[:count].copy() if raw else to_float(buffer[:count])


def read_video(path, max_frames: int | None = None, fps: float | None = None) -> tuple[np.ndarray, float]:
    """Whole clip in memory: (frames float32 [T, H, W, 3], fps). See ``probe_video`` for ``fps``.

    Filled into one array sized from the probe, so peak memory is the clip, not twice it.
    """
    info = probe_video(path, fps=fps)
    n = info.num_frames if max_frames is None else min(max_frames, info.num_frames)
    frames = np.empty((n, info.height, info.width, 3), np.float32)
    filled, extra = 0, []  # extra: frames beyond the probe's count (a damaged index)
    for chunk in iter_frames(path, chunk_frames=64, stop=max_frames):
        take = min(len(chunk), n - filled)
        frames[filled:filled + take] = chunk[:take]
        filled += take
        if take < len(chunk):
            extra.append(chunk[take:])
    return (np.concatenate([frames[:filled], *extra]) if extra else frames[:filled]), info.fps


# ------------------------------------------------------------------------ quantisation


@dataclass
class DitherState:
    """Per-pixel rounding residual carried from one frame to the next, in code units.

    Starts random in [-0.5, 0.5) (from ``seed``), shared by ``block`` x ``block``
    pixels, so pixels do not all step on the same frame. Updated in place.
    """

    seed: int = 0
    block: int = 1
    residual: np.ndarray | None = None

    def get(self, shape: tuple) -> np.ndarray:
        if self.residual is None:
            rng = np.random.default_rng(self.seed)
            if self.block == 1 or len(shape) < 2:
                self.residual = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
            else:
                h, w, b = shape[0], shape[1], self.block
                start = rng.uniform(-0.5, 0.5, (-(-h // b), -(-w // b), *shape[2:])).astype(np.float32)
                self.residual = repeat(start, "h w ... -> (h bh) (w bw) ...", bh=b, bw=b)[:h, :w]
        elif self.residual.shape != tuple(shape):
            raise InputError(f"dither state is for frames of shape {self.residual.shape}, got {tuple(shape)}: "
                             "use one state per video.")
        return self.residual


def _dither_codes(codes: np.ndarray, state: DitherState) -> np.ndarray:
    """Error diffusion over time. codes float [T, ...] in 0..255 → uint8 [T, ...]."""
    out = np.empty(codes.shape, np.uint8)
    residual = state.get(codes.shape[1:]).copy()
    level = np.empty_like(residual)
    for t in range(codes.shape[0]):  # in place: this loop is the writer's hot path
        np.add(codes[t], residual, out=residual)  # the level wanted, before rounding
        np.clip(np.rint(residual, out=level), 0, 255, out=level)
        np.subtract(residual, level, out=residual)  # in [-0.5, 0.5]: codes are within 0..255
        out[t] = level
    state.residual = residual
    return out


class _TileDither:
    """H.264-friendly temporal dither of one plane: codes float [H, W] → uint8 [H, W].

    Each pixel holds its level until the wanted value moves more than ``0.5 + margin``
    away, so a sub-level change flips no scattered pixels (which the encoder would drop).
    What the held levels miss, averaged over ``tile`` x ``tile`` pixels, goes through
    error diffusion over time; a tile then steps by one level as a whole, which the
    encoder keeps.
    """

    def __init__(self, tile: int, seed: int, margin: float = 0.25):
        self.tile, self.seed, self.margin = tile, seed, margin
        self.held = self.residual = None

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        (h, w), k = codes.shape, self.tile
        if self.held is None:
            self.held = np.rint(codes)
            self.residual = np.random.default_rng(self.seed).uniform(-0.5, 0.5, (-(-h // k), -(-w // k)))
        np.copyto(self.held, np.rint(codes), where=np.abs(codes - self.held) > 0.5 + self.margin)
        missed = codes - self.held
        if h % k or w % k:
            missed = np.pad(missed, ((0, -h % k), (0, -w % k)), mode="edge")
        tiles = (missed.shape[1] // k, missed.shape[0] // k)
        # Tile means: OpenCV's area resize by a whole factor, 10x faster than a numpy mean over axes.
        wanted = cv2.resize(missed, tiles, interpolation=cv2.INTER_AREA) + self.residual
        steps = np.rint(wanted)
        self.residual = wanted - steps
        # Whole levels: float32 holds them exactly, and the full-size sum moves half the bytes of float64.
        out = self.held + repeat(steps.astype(np.float32), "h w -> (h a) (w c)", a=k, c=k)[:h, :w]
        return np.clip(out, 0, 255, out=out).astype(np.uint8)


#: What a pixel that steps gets on top of its whole levels: float32 rounding of k/255 * 255
#: is ~1e-5 of a level, so truncation never takes the step away, and a dithering saver
#: downstream carries it for a thousand frames before it adds a level.
WHOLE_LEVEL_MARGIN = 1e-3


def add_in_whole_levels(frame: np.ndarray, box: tuple[int, int, int, int], change: np.ndarray,
                        weight: np.ndarray, residual: np.ndarray, tile: int = 8) -> None:
    """``frame += change`` inside ``box`` in whole 8-bit levels, tile by tile; in place.

    For outputs that will be truncated to 8 bit (ComfyUI's core SaveVideo: ``(x*255).byte()``)
    from frames that lie on k/255 levels, as decoded video does: truncation turns a sub-level
    change into nothing when it is positive and a whole level when it is negative, in every
    channel alike. Here each ``tile`` x ``tile`` tile of the frame grid steps by whole levels
    per channel as one (H.264's dead zone drops pixels that step on their own), the tile's
    mean change going through error diffusion over time; a pixel that steps gets
    :data:`WHOLE_LEVEL_MARGIN` on top, so truncation, rounding and dithering all keep it.

    Args:
        frame: [H, W, 3] float32 0..1, edited in place.
        box: (x0, y0, x1, y1) of the region ``change`` covers.
        change: [y1-y0, x1-x0, 3] float, the wanted change in 0..1 units.
        weight: [y1-y0, x1-x0] 0..1; pixels above 0.5 step, carrying the whole tile's change
            (the tile's other pixels stay as they are), so the tile's sum moves as wanted.
        residual: [ceil(H/tile), ceil(W/tile), 3] float32, each tile's rounding residual in
            levels from the previous frame (start it with :class:`DitherState`); updated in place.
    """
    x0, y0, x1, y1 = box
    tx0, ty0 = x0 // tile, y0 // tile
    tx1, ty1 = -(-x1 // tile), -(-y1 // tile)
    th, tw = ty1 - ty0, tx1 - tx0
    padded = np.zeros((th * tile, tw * tile, 3), np.float32)
    steps_on = np.zeros(padded.shape[:2], np.float32)
    oy, ox = y0 - ty0 * tile, x0 - tx0 * tile
    steps_on[oy : oy + y1 - y0, ox : ox + x1 - x0] = weight > 0.5
    padded[oy : oy + y1 - y0, ox : ox + x1 - x0] = change
    # Tile sums from OpenCV's area resize by a whole factor (a mean; ~5x faster than numpy's sum).
    area = np.float32(tile * tile)
    n_on = np.rint(cv2.resize(steps_on, (tw, th), interpolation=cv2.INTER_AREA).reshape(th, tw, 1) * area)
    wanted = cv2.resize(padded, (tw, th), interpolation=cv2.INTER_AREA).reshape(th, tw, 3)
    wanted *= area * np.float32(255) / np.maximum(n_on, np.float32(1))
    tile_residual = residual[ty0:ty1, tx0:tx1]
    wanted += tile_residual
    steps = np.where(n_on > 0, np.rint(wanted), np.float32(0)).astype(np.float32)
    np.copyto(tile_residual, wanted - steps, where=n_on > 0)
    steps[steps != 0] += np.float32(WHOLE_LEVEL_MARGIN)
    steps /= np.float32(255)
    per_pixel = cv2.resize(steps, (tw * tile, th * tile), interpolation=cv2.INTER_NEAREST).reshape(padded.shape)
    per_pixel *= steps_on[..., None]
    h, w = frame.shape[:2]
    target = frame[ty0 * tile : ty1 * tile, tx0 * tile : tx1 * tile]
    target += per_pixel[: min(h, ty1 * tile) - ty0 * tile, : min(w, tx1 * tile) - tx0 * tile]
    np.clip(target, 0.0, 1.0, out=target)


def quantize_to_uint8(frames, method: str = "dither", state: DitherState | None = None, seed: int = 0) -> np.ndarray:
    """float [T, ...] in 0..1 → uint8 [T, ...] (value * 255; out-of-range values are clipped).

    ``"dither"``: temporal error diffusion per pixel (pass one ``DitherState`` for all
    chunks of a video; None starts a fresh one from ``seed``). ``"round"``: nearest
    level. ``"truncate"``: floor, as ComfyUI's SaveVideo does (``(x*255).byte()``).
    """
    if method not in QUANTIZE_METHODS:
        raise InputError(f"unknown quantize method {method!r}: choose one of {QUANTIZE_METHODS}.")
    frames = np.asarray(frames, np.float32)
    if method == "dither":
        codes = np.clip(frames, 0.0, 1.0) * np.float32(255)
        return _dither_codes(codes, state if state is not None else DitherState(seed=seed))
    # Truncate / round: a cache-sized block at a time (whole-clip temporaries were ~5x slower).
    src = np.ascontiguousarray(frames).reshape(-1)
    out = np.empty(src.shape, np.uint8)
    block = np.empty(min(TO_FLOAT_BLOCK, len(src)), np.float32)
    for at in range(0, len(src), TO_FLOAT_BLOCK):
        part = src[at : at + TO_FLOAT_BLOCK]
        codes = block[: len(part)]
        np.clip(part, 0.0, 1.0, out=codes)
        codes *= np.float32(255)
        if method == "round":
            codes += np.float32(0.5)
        np.copyto(out[at : at + len(part)], codes, casting="unsafe")  # codes >= 0: the cast floors
    return out.reshape(frames.shape)


def prequantize_for_truncation(frames, seed: int = 0) -> np.ndarray:
    """float [T, ...] → float32 on (k + 0.5)/255, k the temporally dithered 8-bit level.

    For frames that a saver will truncate (ComfyUI's core SaveVideo: ``(x*255).byte()``):
    truncation of (k + 0.5)/255 gives exactly k (float32 error ~1e-5 of a level), and so
    does rounding, so the dither's sub-level pulse survives instead of being rectified
    (truncation turns a small negative change into a whole level down and a positive one
    into nothing). k = 255 is clamped to 1.0, which truncates to 255.
    """
    k = quantize_to_uint8(frames, method="dither", seed=seed).astype(np.float32)
    return np.minimum((k + np.float32(0.5)) / np.float32(255), np.float32(1.0))


def _rgb_to_ycbcr420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB [H, W, 3] float 0..1 (even H, W) → BT.709 limited-range code values, float32:
    Y [H, W], Cb and Cr [H/2, W/2] (each chroma sample is the mean of its 2x2 pixels)."""
    h, w = rgb.shape[:2]
    luma = cv2.transform(rgb, _RGB_TO_YCBCR[:1])  # per-pixel affine map, SIMD
    # The map is affine, so the chroma of the 2x2 mean colour is the mean of the 2x2 chroma;
    # averaging RGB first converts a quarter of the pixels. Bilinear at exactly half size
    # samples between 2x2 pixels: their mean, 4x faster than INTER_AREA (within 1e-7).
    half = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    # All three rows: OpenCV's 3-channel path is ~10x faster than its 2-channel one.
    ycbcr = cv2.transform(half, _RGB_TO_YCBCR)
    return luma, np.ascontiguousarray(ycbcr[..., 1]), np.ascontiguousarray(ycbcr[..., 2])


# ----------------------------------------------------------------------------- overlap

# Decoding, x264 and most numpy/OpenCV work release the GIL, so one worker thread that
# decodes the next chunk (or encodes the last one) while the caller works on this one
# keeps both cores of a small machine busy.

_END = object()


def prefetch(chunks: Iterable) -> Iterator:
    """Yield the items of ``chunks`` in order while a worker thread produces the next one."""
    items = iter(chunks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        upcoming = pool.submit(next, items, _END)
        while (item := upcoming.result()) is not _END:
            upcoming = pool.submit(next, items, _END)
            yield item


class Behind:
    """Call ``fn(item)`` in a worker thread, at most one call behind the caller.

    >>> with VideoWriter(path, fps) as writer, Behind(writer.write) as write:
    ...     for chunk in chunks: write(edit(chunk))   # encodes chunk k while chunk k+1 is edited

    The caller must not change ``item`` after passing it: ``fn`` reads it later, in the
    worker. An error in a call is raised by the next call or on leaving the ``with`` block.
    """

    def __init__(self, fn: Callable):
        self._fn = fn
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="behind")
        self._pending = None

    def __call__(self, item) -> None:
        self.wait()
        self._pending = self._pool.submit(self._fn, item)

    def wait(self) -> None:
        """Block until the last call finished; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Behind:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            elif self._pending is not None:
                self._pending.exception()  # let it finish; the caller's error wins
        finally:
            self._pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- writing


def _output_kind(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if path.endswith(("/", os.sep)) or not suffix:
        return "png"
    if suffix in (".mp4", ".mov", ".m4v"):
        return "h264"
    if suffix == ".mkv":
        return "ffv1"
    raise InputError(f"cannot write {suffix} files: use .mp4/.mov (H.264), .mkv (lossless FFV1) "
                     "or a folder name ending in / (PNG frames).")


class VideoWriter:
    """Write chunks of frames to one output; see the module docstring for formats.

    Use as a context manager: the file appears at ``path`` only when the block exits
    without an exception. ``quantize`` ("dither" | "round" | "truncate") overrides
    ``dither`` (True → "dither", False → "round"). uint8 chunks are written as they are.
    """

    def __init__(self, path, fps, crf=18, overwrite=False, dither=True, seed=0, input_path=None,
                 preset="medium", quantize=None):
        self.path = Path(path).expanduser()
        self.kind = _output_kind(str(path))
        _check_fps(fps)
        if not 0 <= crf <= 51:
            raise InputError(f"crf must be 0..51 (0 lossless, 18 visually lossless, 23 x264 default), got {crf}.")
        if preset not in X264_PRESETS:
            raise InputError(f"unknown x264 preset {preset!r}: choose one of {X264_PRESETS}.")
        self.quantize = quantize or ("dither" if dither else "round")
        if self.quantize not in QUANTIZE_METHODS:
            raise InputError(f"unknown quantize method {self.quantize!r}: choose one of {QUANTIZE_METHODS}.")
        if input_path is not None and self.path.resolve() == Path(input_path).expanduser().resolve():
            raise InputError(f"output path equals input ({self.path}): choose another output path.")
        if self.path.exists() and not overwrite:
            raise InputError(f"{self.path} already exists: pass --overwrite (overwrite=True) or choose another path.")
        if self.path.exists() and self.path.is_dir() != (self.kind == "png"):
            raise InputError(f"{self.path} exists as a {'folder' if self.path.is_dir() else 'file'}: choose another "
                             "path (a folder output needs a name ending in /, a file one an extension).")
        if not self.path.parent.is_dir():
            raise InputError(f"output folder {self.path.parent} does not exist: create it or choose another path.")
        self.fps, self.crf, self.preset, self.seed, self.overwrite = fps, int(crf), preset, seed, overwrite
        self.frames_written = 0
        self._size = None  # (H, W) of the frames given
        self._tmp = self.path.parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:8]}{self.path.suffix}"
        self._container = self._stream = None
        self._states: list[DitherState] = []
        self._planes: list = []  # H.264 dither states: Y, Cb, Cr

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, height: int, width: int):
        self._size = (height, width)
        if self.kind == "png":
            self._tmp.mkdir()
            self._states = [DitherState(self.seed)]
            return
        self._container = av.open(str(self._tmp), "w")
        rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 → 30000/1001
        if self.kind == "ffv1":
            self._stream = self._container.add_stream("ffv1", rate=rate)
            self._stream.pix_fmt = "bgr0"  # 8-bit RGB (FFV1 has no 8-bit gbrp): a lossless byte shuffle
            self._stream.width, self._stream.height = width, height
            self._stream.options = {"level": "3", "slices": "4"}  # slices: threaded encode and decode
            self._states = [DitherState(self.seed)]
            return
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.pix_fmt = "yuv420p"
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.options = {"crf": str(self.crf), "preset": self.preset, **_x264_options()}
        cc = self._stream.codec_context
        cc.colorspace = cc.color_primaries = cc.color_trc = 1  # BT.709
        cc.color_range = 1  # limited (MPEG) range
        self._states = [DitherState(self.seed)]  # RGB dither for round/truncate and uint8 paths
        self._planes = [_TileDither(_H264_DITHER_BLOCK, self.seed)] + [
            DitherState(self.seed + k, _H264_DITHER_BLOCK // 2) for k in (1, 2)]

    def write(self, frames_chunk) -> None:
        """Append frames: [t, H, W, 3] (or one [H, W, 3]) float 0..1 or uint8, RGB."""
        chunk = np.asarray(frames_chunk)
        if chunk.ndim == 3:
            chunk = chunk[None]
        if chunk.ndim != 4 or chunk.shape[-1] != 3 or 0 in chunk.shape:
            raise InputError(f"frames must be RGB [t, H, W, 3], got shape {chunk.shape}.")
        if chunk.dtype != np.uint8:
            chunk = chunk.astype(np.float32, copy=False)
            if not np.isfinite(chunk).all():
                raise InputError("frames contain NaN or inf: check the step that produced them.")
        if self._size is None:
            self._start(*chunk.shape[1:3])
        elif chunk.shape[1:3] != self._size:
            raise InputError(f"frame size {chunk.shape[2]}x{chunk.shape[1]} differs from the first chunk's "
                             f"{self._size[1]}x{self._size[0]}: a video has one size.")
        for frame in chunk:
            self._write_frame(frame)
            self.frames_written += 1

    def _write_frame(self, frame: np.ndarray) -> None:
        if self.kind == "h264" and frame.dtype != np.uint8 and self.quantize == "dither":
            odd = frame.shape[0] % 2, frame.shape[1] % 2
            padded = np.pad(frame, ((0, odd[0]), (0, odd[1]), (0, 0)), mode="edge") if any(odd) else frame
            y, cb, cr = _rgb_to_ycbcr420(np.clip(padded, 0, 1))
            planes = [self._planes[0](y), _dither_codes(cb[None], self._planes[1])[0],
                      _dither_codes(cr[None], self._planes[2])[0]]
            # PyAV's yuv420p array: the Y, Cb, Cr planes back to back, viewed as [1.5 H, W].
            packed = np.concatenate([p.ravel() for p in planes]).reshape(-1, padded.shape[1])
            av_frame = av.VideoFrame.from_ndarray(packed, format="yuv420p")
        else:
            rgb = frame if frame.dtype == np.uint8 else quantize_to_uint8(frame[None], self.quantize, self._states[0])[0]
            if self.kind == "png":
                cv2.imwrite(str(self._tmp / f"frame_{self.frames_written:06d}.png"),
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                return
            if self.kind == "ffv1":
                av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="bgr0")
            else:  # round/truncate: the user's own 8-bit RGB, converted by swscale like any save node
                rgb = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)), mode="edge")
                av_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        if self.kind == "h264":
            av_frame.colorspace, av_frame.color_range = 1, 1
        av_frame.pts = self.frames_written
        self._container.mux(self._stream.encode(av_frame))

    def close(self) -> str:
        """Finish the file and move it into place; returns the output path."""
        if self._size is None:
            raise VideoError(f"no frames were written to {self.path}: nothing to save.")
        try:
            if self._container is not None:
                self._container.mux(self._stream.encode(None))  # flush delayed frames
                self._container.close()
                self._container = None
            if self.path.exists() and not self.overwrite:
                raise InputError(f"{self.path} appeared while writing: pass --overwrite or choose another path.")
        except Exception:
            self.abort()
            raise
        if self.path.is_dir() and self.kind == "png":  # overwrite=True: swap folders, then delete the old
            old = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.path, old)
            os.replace(self._tmp, self.path)
            shutil.rmtree(old)
        else:
            os.replace(self._tmp, self.path)
        self._size = None
        return str(self.path)

    def abort(self) -> None:
        """Drop everything written so far (called on exceptions inside ``with``)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already failing: the temp file is deleted below anyway
                pass
            self._container = None
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        elif self._tmp.exists():
            self._tmp.unlink()
        self._size = None


def write_video(path, frames, fps, crf=18, overwrite=False, dither=True, input_path=None, seed=0,
                preset="medium", quantize=None, chunk_frames=64) -> str:
    """Write frames [T, H, W, 3] (float 0..1 or uint8) to ``path``; returns the path written."""
    with VideoWriter(path, fps, crf=crf, overwrite=overwrite, dither=dither, seed=seed, input_path=input_path,
                     preset=preset, quantize=quantize) as writer:
        for i in range(0, len(frames), chunk_frames):
            writer.write(frames[i:i + chunk_frames])
    return str(writer.path)


def encode_decode(frames, fps, codec="h264", crf=23, quantize="truncate", preset="medium", seed=0) -> np.ndarray:
    """What a saved-and-reloaded clip looks like: frames [T, H, W, 3] → same shape, float32.

    The default is ComfyUI's core SaveVideo: truncate to uint8, libx264 crf 23 preset
    medium, yuv420p. ``codec="ffv1"`` is lossless, so only ``quantize`` acts.
    """
    frames = np.asarray(frames)
    chunks = (frames[i : i + 64] for i in range(0, len(frames), 64))
    return np.concatenate(list(encode_decode_chunks(chunks, fps, codec, crf, quantize, preset, seed, chunk_frames=64)))


def encode_decode_chunks(chunks, fps, codec="h264", crf=23, quantize="truncate", preset="medium", seed=0,
                         chunk_frames: int = 8) -> Iterator[np.ndarray]:
    """Streaming :func:`encode_decode`: save an iterable of [t, H, W, 3] chunks, then yield
    the saved clip back as float32 chunks of ``chunk_frames`` frames (same H, W). Only
    one chunk is in memory at a time, so it suits 1080p; consume the generator fully."""
    suffix = {"h264": ".mp4", "ffv1": ".mkv"}.get(codec)
    if suffix is None:
        raise InputError(f"unknown codec {codec!r}: choose 'h264' or 'ffv1'.")
    with tempfile.TemporaryDirectory(prefix="physiolatent-") as tmp:
        path = Path(tmp) / f"clip{suffix}"
        with VideoWriter(path, fps, crf=crf, quantize=quantize, seed=seed, preset=preset) as writer:
            for chunk in chunks:
                writer.write(chunk)
            height, width = writer._size
        for decoded in iter_frames(path, chunk_frames=chunk_frames):
            yield decoded[:, :height, :width]  # drop the padding of odd sizes
