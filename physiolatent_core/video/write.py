"""Writing video files and folders of frames, atomically; the saved-and-reloaded round trip.

By the output's extension (``output_kind``): ``.mp4`` / ``.mov`` / ``.m4v`` → H.264
(libx264, yuv420p, or yuv420p10le with ``bit_depth=10``; ``crf``, ``preset``); ``.mkv`` →
FFV1, ``bgr0`` (lossless for 8-bit RGB), ``gbrp10le`` / ``gbrp16le`` with ``bit_depth``
10 / 16; a path ending in ``/`` or without a suffix → a folder of ``frame_000000.png``
... (16-bit PNGs with ``bit_depth=16``). H.264 4:2:0 needs even sizes, so an odd
width/height is padded by repeating the last column/row.

Given ``input_path`` (a video file), the output keeps what the input had besides its
frames (``keep``): its audio and subtitle streams (copied, or re-encoded where the
container cannot hold them), frame timestamps (variable rates and start offsets),
rotation, colour tags (the H.264 output is encoded with the input's matrix and range) and
container metadata; ``VideoWriter.kept`` says what was kept. Without an input, H.264 is
BT.709 limited range at a constant rate. Writes are atomic (``physiolatent_core.atomic``: a temp
file or folder beside the target, renamed on success); the input is never overwritten
and an existing output only with ``overwrite=True`` (``check_output_path``).

Float frames are quantised to the output's depth with a temporal dither that keeps a
sub-level pulse (``quantise``); the .mp4 writer dithers its own Y'CbCr planes, its last step,
since x264 drops the scattered ±1 changes of a per-pixel RGB dither.
"""

from __future__ import annotations

import functools
import numbers
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from ..atomic import AtomicPath
from ..errors import InputError, VideoError
from .keep import BT709, Colour, StreamCopier, WaveformTrack, source_layout, ycbcr_rows
from .quantise import QUANTIZE_METHODS, DitherState, _dither_codes, _TileDither, quantize_codes
from .read import _check_fps, iter_frames, quarter_turns

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
H264_SUFFIXES = (".mp4", ".mov", ".m4v")  # output_kind "h264"; ".mkv" is "ffv1"
# Bit depths each output kind writes, and its pixel format at each.
BIT_DEPTHS = {"h264": {8: "yuv420p", 10: "yuv420p10le"}, "ffv1": {8: "bgr0", 10: "gbrp10le", 16: "gbrp16le"},
              "png": {8: "rgb24", 16: "rgb48"}}
# Tile size of the H.264 luma dither (chroma uses half): tiles that step as a whole survive
# x264 where single pixels do not, and 8 keeps as much of a sub-level pulse as 16
# (docs/ARCHITECTURE.md, "Dither for H.264").
_H264_DITHER_BLOCK = 8


@functools.cache
def _x264_options() -> dict[str, str]:
    """x264 options that keep its output reproducible.

    x264's AVX-512 code encodes identical frames differently from run to run at some frame
    widths (docs/BENCHMARKS.md, run V), and every measurement here (the codec gain, the
    edit it sets) must be repeatable. On such CPUs x264 is given the instruction sets up
    to AVX2, all of which an AVX-512 CPU has; elsewhere it chooses for itself.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            avx512 = " avx512f" in f.read()
    except OSError:  # not Linux: x264's own choice
        avx512 = False
    return {"x264-params": "asm=AVX2,FMA3,BMI2,LZCNT"} if avx512 else {}


# ----------------------------------------------------------------------------- checks


def _names_folder(path) -> bool:
    """A path ending in / or without a suffix names a folder of frames."""
    return os.fspath(path).endswith(("/", os.sep)) or not Path(path).suffix


def output_kind(path) -> str:
    """What ``VideoWriter`` writes to ``path``: ``"h264"``, ``"ffv1"`` or ``"png"`` (a folder
    of frames); ``InputError`` for a suffix it cannot write."""
    suffix = Path(path).suffix.lower()
    if _names_folder(path):
        return "png"
    if suffix in H264_SUFFIXES:
        return "h264"
    if suffix == ".mkv":
        return "ffv1"
    raise InputError(f"cannot write {suffix} files: use .mp4/.mov (H.264), .mkv (lossless FFV1) "
                     "or a folder name ending in / (PNG frames).")


def check_crf(crf, *, what: str = "crf") -> int:
    """``crf`` as an int, or ``InputError`` (naming it ``what``, e.g. "--crf") outside 0..51."""
    if not (isinstance(crf, numbers.Real) and 0 <= crf <= 51):
        raise InputError(f"{what} must be 0..51 (0 lossless, 18 visually lossless, 23 x264 default), got {crf}.")
    return int(crf)


def check_output_path(path, *, overwrite: bool, input_path=None, what: str = "output",
                      folder: bool | None = None) -> Path:
    """``path`` (user home expanded) if something may be written there, else ``InputError``.

    Refused: the input itself (``input_path``), an existing path without ``overwrite``, an
    existing folder where a file goes or the reverse, and a path whose folder is missing.
    ``folder``: whether a folder goes there; None infers it as ``output_kind`` does (a
    name ending in / or without a suffix). ``what`` names the path in the messages.
    """
    p = Path(path).expanduser()
    if input_path is not None and p.resolve() == Path(input_path).expanduser().resolve():
        raise InputError(f"{what} path equals input ({p}): an output that equals the input would overwrite it; "
                         f"choose another {what} path.")
    if p.exists() and not overwrite:
        raise InputError(f"{p} already exists: pass --overwrite (overwrite=True) or choose another {what} path.")
    if folder is None:
        folder = _names_folder(path)
    if p.exists() and p.is_dir() != folder:
        raise InputError(f"{p} exists as a {'folder' if p.is_dir() else 'file'}: choose another "
                         "path (a folder output needs a name ending in /, a file one an extension).")
    if not p.parent.is_dir():
        raise InputError(f"the folder {p.parent} for the {what} does not exist: create it or choose another path.")
    return p


# ----------------------------------------------------------------------------- writing


# RGB 0..1 → Y'CbCr codes for outputs without an input to follow: BT.709 limited range, 8 bit.
_RGB_TO_YCBCR = ycbcr_rows(BT709, 8)


def _rgb_to_ycbcr420(rgb: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB [H, W, 3] float 0..1 (even H, W) → Y'CbCr code values, float32 (``rows``:
    ``keep.ycbcr_rows``, default BT.709 limited range, 8 bit): Y [H, W], Cb and Cr
    [H/2, W/2] (each chroma sample is the mean of its 2x2 pixels)."""
    rows = _RGB_TO_YCBCR if rows is None else rows
    h, w = rgb.shape[:2]
    luma = cv2.transform(rgb, rows[:1])  # per-pixel affine map, SIMD
    # The map is affine, so the chroma of the 2x2 mean colour is the mean of the 2x2 chroma;
    # averaging RGB first converts a quarter of the pixels. Bilinear at exactly half size
    # samples between 2x2 pixels: their mean, faster than INTER_AREA (docs/ARCHITECTURE.md,
    # "Video I/O: accuracy and speed"). All three rows: OpenCV's 3-channel path is much
    # faster than its 2-channel one (docs/BENCHMARKS.md, section 2).
    half = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_LINEAR)
    ycbcr = cv2.transform(half, rows)
    return luma, np.ascontiguousarray(ycbcr[..., 1]), np.ascontiguousarray(ycbcr[..., 2])


class VideoWriter:
    """Write chunks of frames to one output; see the module docstring for formats.

    Use as a context manager: the file appears at ``path`` only when the block exits
    without an exception. ``quantize`` ("dither" | "round" | "truncate") overrides
    ``dither`` (True → "dither", False → "round"). uint8 chunks are written as they are
    (at 8 bits). ``bit_depth``: 8, or 10 (H.264, FFV1) / 16 (FFV1, PNG) for deeper
    sources. ``input_path`` with ``keep``: carry the input's streams and metadata over.
    ``audio``: ``(waveform [C, S] float -1..1, sample_rate)``, an audio track to encode beside
    the frames (ComfyUI's AUDIO; not with an input whose streams are kept). ``upright``: the
    frames are the input's turned upright (``iter_frames(upright=True)``); they are turned
    back, so the file stores them as the input did, under its kept rotation (a folder of
    PNGs keeps them upright).
    """

    copies_streams = True  # the input's other streams go into this file (not into a segment's)

    def __init__(self, path, fps, crf=18, overwrite=False, dither=True, seed=0, input_path=None,
                 preset="medium", quantize=None, bit_depth=8, keep=True, audio=None, upright=False):
        self.kind = output_kind(path)
        if bit_depth not in BIT_DEPTHS[self.kind]:
            raise InputError(f"{self.kind} output cannot be written at {bit_depth} bits: it takes "
                             f"{', '.join(map(str, BIT_DEPTHS[self.kind]))} (10-bit H.264 in .mp4, 16-bit FFV1 in .mkv).")
        self.bit_depth = int(bit_depth)
        _check_fps(fps)
        crf = check_crf(crf)
        if preset not in X264_PRESETS:
            raise InputError(f"unknown x264 preset {preset!r}: choose one of {X264_PRESETS}.")
        self.quantize = quantize or ("dither" if dither else "round")
        if self.quantize not in QUANTIZE_METHODS:
            raise InputError(f"unknown quantize method {self.quantize!r}: choose one of {QUANTIZE_METHODS}.")
        self.path = check_output_path(path, overwrite=overwrite, input_path=input_path, folder=self.kind == "png")
        self.fps, self.crf, self.preset, self.seed, self.overwrite = fps, crf, preset, seed, overwrite
        self.layout = self._source_layout(input_path) if keep and input_path is not None else None
        # The input's timestamps go with its frames unless the caller set another rate.
        self._retimed = self.layout is None or abs(fps - self.layout.fps) > 1e-3 * fps or len(self.layout.pts) < 2 \
            or bool(np.any(np.diff(self.layout.pts) <= 0))
        self.colour = self._output_colour()
        # Quarter turns clockwise that undo an upright view (none for PNGs: they carry no rotation).
        self._unturn = quarter_turns(self.layout.rotation) if upright and self.layout and self.kind != "png" else 0
        self._copier: StreamCopier | WaveformTrack | None = None
        self.audio = audio
        if audio is not None and self.kind == "png":
            raise InputError("a folder of PNG frames cannot hold audio: save as .mp4 or .mkv to keep it.")
        if audio is not None and self.layout is not None and any(o["type"] == "audio" for o in self.layout.others):
            raise InputError("give either audio samples or an input whose audio is kept, not both.")
        self.frames_written = 0
        self._size = None  # (H, W) of the frames given
        self._out = AtomicPath(self.path, overwrite=overwrite)  # written at _out.tmp, renamed on close
        self._container = self._stream = None
        self._states: list[DitherState] = []
        self._planes: list = []  # H.264 dither states: Y, Cb, Cr

    def _output_colour(self) -> Colour:
        """The tags (and, for H.264, the matrix and range) the output is written with."""
        if self.layout is None:
            return BT709 if self.kind == "h264" else Colour()
        src = self.layout.colour
        if self.kind != "h264":  # RGB: only the primaries and transfer mean anything
            return Colour(0, src.primaries, src.trc, 2)
        return Colour(src.matrix if src.kept_matrix else 1, src.primaries, src.trc, src.range)

    @property
    def kept(self) -> dict:
        """What the output kept of its input besides the frames (for reports)."""
        layout = self.layout
        if layout is None:
            return {"input": None, "streams": self._copier.summary() if self._copier is not None else []}
        streams = self._copier.summary() if self._copier is not None else [
            {**o, "action": "left out", "why": "a folder of PNG frames holds no other streams"} for o in layout.others]
        source_colour, out = layout.colour.names(), self.colour.names()
        return {
            "streams": streams,
            "timestamps": ("retimed to a constant rate" if self._retimed else "the input's"),
            "rotation_deg": layout.rotation if self.kind != "png" else None,
            "colour": {"input": source_colour, "output": out,
                       "matrix_kept": self.kind == "h264" and layout.colour.kept_matrix},
            "metadata": sorted(layout.metadata) if self.kind != "png" else [],
            "bit_depth": {"input": layout.bit_depth, "output": self.bit_depth},
        }

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
            self._out.tmp.mkdir()
            self._states = [DitherState(self.seed)]
            return
        self._container = self._open_container()
        rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 → 30000/1001
        self._states = [DitherState(self.seed)]  # RGB dither (FFV1, and round/truncate and uint8 for H.264)
        if self.kind == "ffv1":
            self._stream = self._container.add_stream("ffv1", rate=rate)
            # 8-bit RGB as bgr0 (FFV1 has no 8-bit gbrp): a lossless byte shuffle.
            self._stream.pix_fmt = BIT_DEPTHS["ffv1"][self.bit_depth]
            self._stream.width, self._stream.height = width, height
            self._stream.options = {"level": "3", "slices": "4"}  # slices: threaded encode and decode
        else:
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.pix_fmt = BIT_DEPTHS["h264"][self.bit_depth]
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.options = {"crf": str(self.crf), "preset": self.preset, **_x264_options()}
            top = (1 << self.bit_depth) - 1
            self._rows = ycbcr_rows(self.colour, self.bit_depth)
            self._planes = [_TileDither(_H264_DITHER_BLOCK, self.seed, top=top)] + [
                DitherState(self.seed + k, _H264_DITHER_BLOCK // 2) for k in (1, 2)]
        cc, colour = self._stream.codec_context, self.colour
        cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = (
            colour.matrix, colour.primaries, colour.trc, colour.range)
        self._carry_over()

    def _source_layout(self, input_path):
        """What the output carries over from its input (``keep.source_layout``: a pass over the file)."""
        return source_layout(input_path)

    def _open_container(self):
        """The output container, at the temporary path (a segment writer keeps it in memory)."""
        return av.open(str(self._out.tmp), "w")

    def _carry_over(self) -> None:
        """Timestamps, rotation, metadata and the other streams of the input (before the header)."""
        layout = self.layout
        if self.audio is not None:
            self._copier = WaveformTrack(self.audio[0], self.audio[1], self._container)
        if layout is None:
            return
        if not self._retimed:
            self._stream.codec_context.time_base = layout.time_base
            self._stream.time_base = layout.time_base
        if layout.rotation:
            self._stream.set_display_rotation(layout.rotation)
        self._container.metadata.update(layout.metadata)
        self._stream.metadata.update(layout.video_metadata)
        if self._copier is None and self.copies_streams:
            self._copier = StreamCopier(layout, self._container)

    def _frame_time(self, index: int) -> tuple[int, float]:
        """(pts in the stream's time base, seconds) of frame ``index``."""
        if self._retimed:
            return index, index / self.fps
        pts = self.layout.frame_pts(index)
        return pts, float(pts * self.layout.time_base)

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
        if self._unturn:
            chunk = np.ascontiguousarray(np.rot90(chunk, -self._unturn, axes=(1, 2)))
        if self._size is None:
            self._start(*chunk.shape[1:3])
        elif chunk.shape[1:3] != self._size:
            raise InputError(f"frame size {chunk.shape[2]}x{chunk.shape[1]} differs from the first chunk's "
                             f"{self._size[1]}x{self._size[0]}: a video has one size.")
        for frame in chunk:
            self._write_frame(frame)
            self.frames_written += 1

    def _write_frame(self, frame: np.ndarray) -> None:
        deep = self.bit_depth > 8
        if self.kind == "h264" and frame.dtype != np.uint8 and (self.quantize == "dither" or deep):
            odd = frame.shape[0] % 2, frame.shape[1] % 2
            padded = np.pad(frame, ((0, odd[0]), (0, odd[1]), (0, 0)), mode="edge") if any(odd) else frame
            y, cb, cr = _rgb_to_ycbcr420(np.clip(padded, 0, 1), self._rows)
            top = (1 << self.bit_depth) - 1
            planes = [self._planes[0](y), _dither_codes(cb[None], self._planes[1], top)[0],
                      _dither_codes(cr[None], self._planes[2], top)[0]]
            # PyAV's yuv420p array: the Y, Cb, Cr planes back to back, viewed as [1.5 H, W].
            packed = np.concatenate([p.ravel() for p in planes]).reshape(-1, padded.shape[1])
            av_frame = av.VideoFrame.from_ndarray(packed, format=BIT_DEPTHS["h264"][self.bit_depth])
        else:
            bits = 8 if frame.dtype == np.uint8 or self.kind == "h264" else self.bit_depth
            rgb = frame if frame.dtype == np.uint8 else quantize_codes(frame[None], bits, self.quantize,
                                                                       self._states[0])[0]
            if self.kind == "png":
                cv2.imwrite(str(self._out.tmp / f"frame_{self.frames_written:06d}.png"),
                            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                return
            if self.kind == "ffv1":
                av_frame = self._ffv1_frame(rgb)
            else:  # round/truncate: the user's own 8-bit RGB, converted by swscale like any save node
                rgb = np.pad(rgb, ((0, rgb.shape[0] % 2), (0, rgb.shape[1] % 2), (0, 0)), mode="edge")
                colour = self.colour
                av_frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                    format=BIT_DEPTHS["h264"][self.bit_depth], dst_colorspace=5 if colour.matrix == 2 else colour.matrix,
                    dst_color_range=2 if colour.full_range else 1)
        av_frame.colorspace, av_frame.color_range = self.colour.matrix, self.colour.range
        av_frame.color_primaries, av_frame.color_trc = self.colour.primaries, self.colour.trc
        self._emit(av_frame)

    def _emit(self, av_frame: av.VideoFrame) -> None:
        """Encode one converted frame (the next one) and mux it."""
        av_frame.pts, seconds = self._frame_time(self.frames_written)
        self._container.mux(self._stream.encode(av_frame))
        if self._copier is not None:  # the other streams, interleaved up to this frame
            self._copier.feed_until(seconds)

    def _ffv1_frame(self, rgb: np.ndarray) -> av.VideoFrame:
        """An FFV1 frame of the writer's depth from RGB codes (uint8, or uint16 of ``bit_depth`` bits)."""
        if self.bit_depth == 8:
            return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="bgr0")
        if rgb.dtype == np.uint8:  # uint8 frames into a deep file: widen exactly (k * 257 / 65535 == k / 255)
            rgb = rgb.astype(np.uint16) * ((1 << self.bit_depth) - 1) // 255
        return av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=BIT_DEPTHS["ffv1"][self.bit_depth])

    def close(self) -> str:
        """Finish the file and move it into place; returns the output path."""
        if self._size is None:
            raise VideoError(f"no frames were written to {self.path}: nothing to save.")
        try:
            if self._container is not None:
                self._container.mux(self._stream.encode(None))  # flush delayed frames
                if self._copier is not None:
                    # All of the input's frames written: all of its other streams; else up to the video's end.
                    whole = self.layout is None or self.frames_written >= len(self.layout.pts)
                    self._copier.finish(None if whole else self._frame_time(self.frames_written)[1])
                self._container.close()
                self._container = None
        except Exception:
            self.abort()
            raise
        try:
            self._out.commit()  # refuses a path that appeared meanwhile (without overwrite)
        finally:
            self._size = None
        return str(self.path)

    def abort(self) -> None:
        """Drop everything written so far (called on exceptions inside ``with``)."""
        if self._copier is not None:
            self._copier.close()
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # already failing: the temp file is deleted below anyway
                pass
            self._container = None
        self._out.discard()
        self._size = None


def write_video(path, frames, fps, crf=18, overwrite=False, dither=True, input_path=None, seed=0,
                preset="medium", quantize=None, chunk_frames=64, bit_depth=8, keep=True, audio=None) -> str:
    """Write frames [T, H, W, 3] (float 0..1 or uint8) to ``path``; returns the path written.
    ``input_path``: the clip they came from, whose audio, timestamps and tags are kept."""
    with VideoWriter(path, fps, crf=crf, overwrite=overwrite, dither=dither, seed=seed, input_path=input_path,
                     preset=preset, quantize=quantize, bit_depth=bit_depth, keep=keep, audio=audio) as writer:
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
