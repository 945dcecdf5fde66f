"""Reading video files (PyAV) and folders of frames (OpenCV).

``probe_video`` / ``iter_frames`` / ``read_video`` accept .mp4 .mov .m4v .avi .mkv .webm
files and folders of PNG/JPG frames (natural order: ``f2.png`` before ``f10.png``).
Folders carry no frame rate: pass ``fps=``. Variable-frame-rate files report
``fps = 1 / median frame interval`` and ``variable_fps=True``; frames are returned in
order, not resampled. Grayscale sources are returned as RGB (the grey value in all three
channels, ``is_grayscale=True``); an alpha channel is dropped with a warning
(``has_alpha=True``). Sources deeper than 8 bits (10-bit H.264/HEVC, ProRes ...) are read
as 16-bit RGB (uint16 codes, ``bit_depth`` in ``VideoInfo``), so nothing of their depth is
lost; frames are converted with the file's own colour matrix and range. A truncated file
whose header survives returns the frames that decode, with a ``TruncatedVideoWarning``; a
file whose header is cut raises ``VideoError``.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from ..errors import InputError, VideoError
from .keep import bit_depth_of, colour_of, stream_summary
from .quantise import to_float

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")  # for file pickers; FFmpeg reads more
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# swscale BILINEAR | ACCURATE_RND | FULL_CHR_H_INT for YUV → RGB: swscale's fast default is
# off by a grey level or two on flat colours, this is within half a level, at a few times the
# cost (docs/ARCHITECTURE.md, "Video I/O: accuracy and speed").
_SWS_ACCURATE = 0x2 | 0x40000 | 0x2000


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
    bit_depth: int = 8  # bits per colour sample as stored (frames deeper than 8 are read as uint16)
    rotation: float = 0.0  # display matrix, counter-clockwise degrees (the frames are stored unrotated)
    colour: dict | None = None  # matrix, primaries, transfer, range tags (video files)
    streams: list | None = None  # the file's other streams: index, type, codec, ...


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
                         "png" if files[0].suffix.lower() == ".png" else "mjpeg", 8 * first.dtype.itemsize)
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
        try:  # rotation and tags as decoded (side data included); a damaged start has the stream's tags
            container.seek(0)
            first = next(container.decode(stream), None)
        except av.FFmpegError:
            first = None
        tags = first if first is not None else stream.codec_context
        return VideoInfo(str(p), stream.codec_context.width, stream.codec_context.height, float(fps or found),
                         int(num), duration, variable, has_alpha, is_gray, stream.codec_context.name,
                         bit_depth_of(tags.format), float(getattr(first, "rotation", 0) or 0),
                         colour_of(tags).names(), [stream_summary(s) for s in container.streams if s is not stream])
    finally:
        container.close()


class LazyFrame:
    """One decoded video frame whose YUV -> RGB conversion waits until it is used.

    ``np.asarray(frame)`` gives the uint8 [H, W, 3] RGB that ``iter_frames`` would have
    returned (the same swscale conversion). The conversion is most of a decode
    (docs/BENCHMARKS.md, section 2), and a pass that looks at few frames (the face
    tracker searches about one in eight) skips it for the others.
    """

    __slots__ = ("_frame", "shape", "_turn")
    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, frame: av.VideoFrame, turn: int = 0):
        self._frame, self._turn = frame, turn  # turn: quarter turns counter-clockwise (upright frames)
        self.shape = (frame.width, frame.height, 3) if turn % 2 else (frame.height, frame.width, 3)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rgb = _turned(_to_rgb(self._frame, deep=False), self._turn)  # 8 bits: enough for passes that look at few frames
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


def _to_rgb(frame: av.VideoFrame, deep: bool = True) -> np.ndarray:
    """RGB [H, W, 3]: uint8, or uint16 for a source deeper than 8 bits (unless not ``deep``)."""
    if deep and bit_depth_of(frame.format) > 8:
        # Planar gbrp16: swscale's packed rgb48 output with FULL_CHR_H_INT mixes up the
        # colours of 10-bit YUV (measured: G and B off by 0.3 on a skin tone); PyAV returns it RGB.
        return frame.to_ndarray(format="gbrp16le", interpolation=_SWS_ACCURATE)
    return frame.to_ndarray(format="rgb24", interpolation=_SWS_ACCURATE)


def _turned(rgb: np.ndarray, turn: int) -> np.ndarray:
    """``rgb`` [H, W, 3] turned ``turn`` quarter turns counter-clockwise (a fresh array)."""
    return np.ascontiguousarray(np.rot90(rgb, turn)) if turn else rgb


def quarter_turns(rotation: float) -> int:
    """Quarter turns counter-clockwise (0..3) that show a frame stored with ``rotation``
    (a display matrix's counter-clockwise degrees) upright."""
    return int(round(rotation / 90)) % 4


def _decoded_images(path: Path, start: int, lazy: bool = False, upright: bool = False) -> Iterator:
    """Yield frames from index ``start`` as RGB uint8/uint16 [H, W, 3] (``lazy``: video
    frames as ``LazyFrame``; ``upright``: turned as the display matrix shows them), in
    presentation order."""
    if path.is_dir():
        for f in _frame_files(path)[start:]:
            yield _read_image(f)[0]
        return
    container, stream = _open(path)
    has_alpha, _ = _pixel_format(stream)
    if has_alpha:
        warnings.warn(f"{path} has an alpha channel; it is dropped (frames are RGB).", stacklevel=3)
    index, damage, expected, turn = 0, "", stream.frames, None  # frames the header lists (0: unknown)
    try:
        for frame in container.decode(stream):
            if turn is None:  # one rotation per stream: the first frame's
                turn = quarter_turns(frame.rotation or 0) if upright else 0
            if index >= start:  # decode-and-skip: exact frame indices, also for VFR files
                yield LazyFrame(frame, turn) if lazy else _turned(_to_rgb(frame), turn)
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
                raw: bool = False, lazy: bool = False, upright: bool = False) -> Iterator:
    """Stream frames ``start`` (inclusive) to ``stop`` (exclusive) in chunks.

    Yields float32 [t, H, W, 3] RGB 0..1 with t <= chunk_frames (``raw``: the decoded
    uint8/uint16 codes, a fresh array per chunk; ``lazy``: a video's chunks as
    ``LazyFrames``, converted to RGB frame by frame where used, a folder's as ``raw``); at
    most one chunk (plus one decoded frame) is in memory at a time. Frames before
    ``start`` are decoded and skipped, which keeps frame indices exact for
    variable-frame-rate files. ``upright``: frames turned as a video's display matrix
    shows them (a phone video stored on its side comes out upright; ``VideoWriter(...,
    upright=True)`` turns them back under the kept rotation).
    """
    if chunk_frames < 1 or start < 0 or (stop is not None and stop < start):
        raise InputError(f"need chunk_frames >= 1 and 0 <= start <= stop, got {chunk_frames}, {start}, {stop}.")
    p = _existing(path)
    buffer, count, index, first = None, 0, start, None
    for img in _decoded_images(p, start, lazy=lazy, upright=upright):
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

