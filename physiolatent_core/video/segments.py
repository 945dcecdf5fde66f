"""A video written as independent segments, then joined into one file without re-encoding.

A long job writes its output as numbered segments (``SegmentWriter``), each the encoded
packets of frames ``first .. first + n`` of the clip: a fresh encoder per segment, so every
segment starts on a keyframe and needs no other, and its own dither seed
(``segment_seed``), so a segment's bytes do not depend on where an earlier run stopped.
A segment is two files in the work folder, ``seg_00003.data`` (the packets back to back)
and ``seg_00003.npz`` (their sizes, pts, dts and keyframe flags, the encoder's extradata
and time base, the frame size; ``np.savez``, read with ``allow_pickle=False``). The data
file is renamed into place first and the index last, both atomically: a segment whose
index is there is complete (``read_segment``).

``JoinWriter`` muxes the segments' packets, in order, into the output: a ``VideoWriter``
whose stream is configured exactly as the segments' encoders were, so its header
(extradata) is theirs (checked), and which carries the input's other streams, timestamps,
rotation and metadata over as any ``VideoWriter`` does (``keep.py``); the file appears
atomically when complete. Segment 0 is dithered with the writer's own seed, so a clip of
one segment comes out as ``VideoWriter`` alone would write it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..atomic import AtomicPath, atomic_path
from ..errors import InputError, VideoError
from .write import VideoWriter

# The container a segment's encoder is configured for: the output's, so that the
# encoder's global header (avcC, FFV1's configuration) is the one the output needs.
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def segment_seed(seed: int, index: int) -> int:
    """The dither seed of segment ``index``: ``seed`` itself for the first, then one derived
    from both (a segment's noise must not depend on how many frames came before it)."""
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] >> 1)


def segment_paths(folder: Path, index: int) -> tuple[Path, Path]:
    """(packet data, index) files of segment ``index`` in ``folder``."""
    stem = folder / f"seg_{index:05d}"
    return stem.with_suffix(".data"), stem.with_suffix(".npz")


class SegmentWriter(VideoWriter):
    """Frames ``first_frame ..`` of a clip whose output is ``path``, encoded as ``VideoWriter``
    would encode them there, saved as segment ``index`` of ``folder`` (nothing is written
    at ``path``). Same arguments as ``VideoWriter``; ``seed`` is the job's (the segment's is
    derived from it); ``layout``: the input's ``keep.source_layout``, if already known. Use
    as a context manager; ``close`` saves the segment."""

    copies_streams = False  # the join carries the input's other streams, once

    def __init__(self, folder: Path, index: int, first_frame: int, path, fps, seed: int = 0, layout=None, **kwargs):
        self._layout = layout  # the input's (keep.source_layout), found once for all segments
        super().__init__(path, fps, seed=segment_seed(seed, index), overwrite=True, **kwargs)
        if self.kind == "png":
            raise InputError("a folder of PNG frames is not written in segments: save as .mp4 or .mkv.")
        self.folder, self.index, self.first_frame = Path(folder), int(index), int(first_frame)
        self._data_path, self._index_path = segment_paths(self.folder, self.index)
        self._out = AtomicPath(self._data_path)  # the packets; the index follows in close()
        self._data = None
        self._packets: list[tuple[int, int, int, bool]] = []  # size, pts, dts, keyframe

    def _source_layout(self, input_path):
        return self._layout if self._layout is not None else super()._source_layout(input_path)

    def _open_container(self):
        # In memory and never started: it only configures the stream's encoder as the
        # output's container would (global header included).
        return av.open(io.BytesIO(), "w", format=_FORMATS.get(self.path.suffix.lower(), "mp4"))

    def _start(self, height: int, width: int):
        super()._start(height, width)
        self._data = open(self._out.tmp, "wb")

    def _emit(self, av_frame: av.VideoFrame) -> None:
        av_frame.pts, _ = self._frame_time(self.first_frame + self.frames_written)
        self._keep(self._stream.encode(av_frame))

    def _keep(self, packets) -> None:
        for packet in packets:
            data = bytes(packet)
            self._data.write(data)
            self._packets.append((len(data), packet.pts, packet.dts, packet.is_keyframe))

    def close(self) -> str:
        """Flush the encoder and save the segment; returns its index file's path."""
        if self._size is None:
            raise VideoError(f"no frames were written to segment {self.index}: nothing to save.")
        try:
            self._keep(self._stream.encode(None))
            context = self._stream.codec_context
            extradata, time_base = bytes(context.extradata or b""), context.time_base
            self._data.close()
            self._out.commit()
            sizes, pts, dts, key = (np.array(column, np.int64) for column in zip(*self._packets))
            with atomic_path(self._index_path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, sizes=sizes, pts=pts, dts=dts, keyframe=key.astype(bool),
                             extradata=np.frombuffer(extradata, np.uint8),
                             time_base=np.array([time_base.numerator, time_base.denominator], np.int64),
                             first_frame=np.int64(self.first_frame), frames=np.int64(self.frames_written),
                             size=np.array(self._size, np.int64))
        except BaseException:
            self.abort()
            raise
        finally:
            self._release()
        self._size = None
        return str(self._index_path)

    def _release(self) -> None:
        """Free the encoder now: it holds a frame pool the size of x264's lookahead (hundreds
        of MB at 4K), and the container, stream and context reference each other, so
        dropping the writer would leave them to the cycle collector."""
        if self._container is not None:
            try:
                self._container.close()  # in memory and never started: frees, writes nothing
            finally:
                self._container = self._stream = None

    def abort(self) -> None:
        if self._data is not None:
            self._data.close()
        try:
            self._release()
        except Exception:  # already failing: the segment's files are removed below anyway
            self._container = None
        super().abort()


@dataclass(frozen=True)
class Segment:
    """A finished segment, as ``read_segment`` found it."""

    index: int
    first_frame: int
    frames: int
    size: tuple[int, int]  # (H, W) of the frames given to the writer
    extradata: bytes
    time_base: Fraction
    sizes: np.ndarray  # [P] bytes of each packet, in decoding order
    pts: np.ndarray  # [P] in time_base
    dts: np.ndarray  # [P]
    keyframe: np.ndarray  # [P] bool
    data: Path


def read_segment(folder: Path, index: int) -> Segment | None:
    """Segment ``index`` of ``folder`` if it is complete (index and data agree), else None."""
    data, index_path = segment_paths(Path(folder), index)
    if not index_path.is_file() or not data.is_file():
        return None
    try:
        with np.load(index_path, allow_pickle=False) as z:
            segment = Segment(index, int(z["first_frame"]), int(z["frames"]), tuple(int(v) for v in z["size"]),
                              z["extradata"].tobytes(), Fraction(*(int(v) for v in z["time_base"])),
                              z["sizes"], z["pts"], z["dts"], z["keyframe"], data)
    except (OSError, ValueError, KeyError):  # cut short by a crash of the machine: write it again
        return None
    return segment if data.stat().st_size == int(segment.sizes.sum()) else None


class JoinWriter(VideoWriter):
    """The output file of a segmented write: ``append`` the segments in order, then
    ``close`` (or use it as a context manager). Same arguments as ``VideoWriter`` (those
    the segments were written with); ``frames_written`` and ``kept`` work as there."""

    def append(self, segment: Segment) -> None:
        if segment.first_frame != self.frames_written:
            raise VideoError(f"segment {segment.index} starts at frame {segment.first_frame}, the output has "
                             f"{self.frames_written}: segments are missing; run the job again.")
        if self._size is None:
            self._start(*segment.size)
            self._container.start_encoding()  # opens the stream's encoder: its extradata is the file's header
            self._extradata = bytes(self._stream.codec_context.extradata or b"")
        if segment.size != self._size or segment.extradata != self._extradata:
            raise VideoError(f"segment {segment.index} in {segment.data.parent} was encoded with other settings "
                             "than this output: delete that folder and run the job again.")
        with open(segment.data, "rb") as f:
            for size, pts, dts, key in zip(segment.sizes, segment.pts, segment.dts, segment.keyframe):
                packet = av.Packet(f.read(int(size)))
                packet.pts, packet.dts, packet.is_keyframe = int(pts), int(dts), bool(key)
                packet.time_base, packet.stream = segment.time_base, self._stream
                self._container.mux(packet)
                if self._copier is not None:  # the other streams, interleaved up to this frame
                    self._copier.feed_until(float(pts * segment.time_base))
        self.frames_written += segment.frames
