"""What a saved file keeps of its input besides the frames: "the output is the input, except
for the pulse".

``source_layout(path)`` reads what the writer carries over: the video's frame timestamps
and time base (variable frame rates and start offsets stay as they were), its rotation
(display matrix), colour tags (matrix, primaries, transfer, range), bit depth, and the
container's and the video stream's metadata (creation time, title, language ...).
``StreamCopier`` copies every audio and subtitle stream of the input into the output
container packet by packet, interleaved with the video as it is written, without
re-encoding where the container holds the codec; audio it cannot hold is re-encoded (AAC
for .mp4/.mov, FLAC for .mkv), a subtitle or data stream it cannot hold is left out, and
``summary()`` says which was done to each.

Colour: frames are decoded to R'G'B' with the input's own matrix and range (swscale reads
the tags; an untagged file is decoded as BT.601, swscale's default), so the writer encodes
with the same matrix and range (``ycbcr_rows``) and tags the output like the input. The
transfer and primaries are not converted, only carried: the edit happens on the source's
own code values.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import InputError

# AVColorSpace → (Kr, Kb). 2 (unspecified) is decoded by swscale as BT.601, so it is
# encoded so too (and stays untagged).
_MATRIX_COEFFS = {1: (0.2126, 0.0722), 2: (0.299, 0.114), 4: (0.30, 0.11), 5: (0.299, 0.114),
                  6: (0.299, 0.114), 7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}
_MATRIX_NAMES = {0: "rgb", 1: "bt709", 2: "unspecified", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                 8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
_PRIMARY_NAMES = {1: "bt709", 2: "unspecified", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
                  8: "film", 9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRC_NAMES = {1: "bt709", 2: "unspecified", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
              13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
_RANGE_NAMES = {0: "unspecified", 1: "tv", 2: "pc"}
# Container / stream tags a muxer writes itself: copying them would carry stale values.
_MUXER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "duration", "vendor_id",
               "number_of_frames", "number_of_bytes", "_statistics_tags", "_statistics_writing_app",
               "_statistics_writing_date_utc", "bps", "rotate"}
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
# Where a container cannot hold an audio codec, it is re-encoded to this.
_AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "ipod": "aac", "matroska": "flac"}


@dataclass(frozen=True)
class Colour:
    """A video's colour tags (FFmpeg's AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic
    and AVColorRange numbers); 2 / 0 mean unspecified."""

    matrix: int = 2
    primaries: int = 2
    trc: int = 2
    range: int = 0

    @property
    def full_range(self) -> bool:
        return self.range == 2

    @property
    def kept_matrix(self) -> bool:
        """Whether the writer can encode with this matrix (else it uses BT.709 and tags that)."""
        return self.matrix in _MATRIX_COEFFS

    def names(self) -> dict:
        return {"matrix": _MATRIX_NAMES.get(self.matrix, str(self.matrix)),
                "primaries": _PRIMARY_NAMES.get(self.primaries, str(self.primaries)),
                "transfer": _TRC_NAMES.get(self.trc, str(self.trc)),
                "range": _RANGE_NAMES.get(self.range, str(self.range))}


BT709 = Colour(1, 1, 1, 1)


def ycbcr_rows(colour: Colour, bits: int = 8) -> np.ndarray:
    """float32 [3, 4] mapping R'G'B' 0..1 (and a 1) to Y', Cb, Cr code values of ``bits`` bits
    with the colour's matrix and range (limited: Y 16..235, C 16..240, times 2^(bits-8))."""
    kr, kb = _MATRIX_COEFFS.get(colour.matrix, _MATRIX_COEFFS[1])
    kg = 1 - kr - kb
    if colour.full_range:
        top = float((1 << bits) - 1)
        y_scale, c_scale, y_off = top, top / 2, 0.0
    else:
        step = float(1 << (bits - 8))
        y_scale, c_scale, y_off = 219 * step, 112 * step, 16 * step
    mid = float(1 << (bits - 1))
    return np.array([
        [y_scale * kr, y_scale * kg, y_scale * kb, y_off],
        [-c_scale * kr / (1 - kb), -c_scale * kg / (1 - kb), c_scale, mid],
        [c_scale, -c_scale * kg / (1 - kr), -c_scale * kb / (1 - kr), mid],
    ], np.float32)


def _tags(metadata) -> dict:
    return {k: v for k, v in dict(metadata).items() if k.lower() not in _MUXER_TAGS}


def colour_of(cc) -> Colour:
    """The colour tags of a codec context or a frame."""
    matrix = 2 if cc.colorspace is None else int(cc.colorspace)  # 0 is RGB, not unspecified
    return Colour(matrix, int(cc.color_primaries or 2), int(cc.color_trc or 2), int(cc.color_range or 0))


def bit_depth_of(fmt) -> int:
    """Bits per sample of a pixel format (8 for unknown)."""
    if fmt is None:
        return 8
    return max((c.bits for c in fmt.components if not c.is_alpha), default=8)


def stream_summary(stream) -> dict:
    """One non-video stream of an input, for ``VideoInfo.streams`` and reports."""
    cc = stream.codec_context
    out = {"index": stream.index, "type": stream.type, "codec": cc.name if cc is not None else None}
    language = stream.metadata.get("language")
    if language and language != "und":
        out["language"] = language
    if stream.type == "audio" and cc is not None:
        out.update(sample_rate=cc.sample_rate, channels=cc.channels)
    if stream.start_time is not None and stream.time_base is not None:
        out["start_s"] = round(float(stream.start_time * stream.time_base), 6)
    return out


@dataclass
class SourceLayout:
    """What the writer carries from an input video file (see the module docstring)."""

    path: Path
    pts: np.ndarray  # int64 [T]: presentation timestamps of the frames, in order, in ``time_base``
    time_base: Fraction
    fps: float  # the rate probe_video reports; the timestamps are used when the writer's fps equals it
    rotation: float  # counter-clockwise degrees of the display matrix
    colour: Colour
    bit_depth: int
    metadata: dict = field(default_factory=dict)  # container tags (creation_time, title, ...)
    video_metadata: dict = field(default_factory=dict)  # the video stream's tags (language, handler ...)
    others: list = field(default_factory=list)  # stream_summary of every non-video stream

    def frame_pts(self, index: int) -> int:
        """Timestamp of frame ``index``: the input's, continued at its median interval past its end."""
        if index < len(self.pts):
            return int(self.pts[index])
        step = int(np.median(np.diff(self.pts))) if len(self.pts) > 1 else max(1, round(1 / (self.fps * self.time_base)))
        return int(self.pts[-1]) + (index - len(self.pts) + 1) * step


def source_layout(path) -> SourceLayout | None:
    """The layout of a video file, or None for a folder of frames or a path that is not there
    (nothing to carry)."""
    p = Path(path).expanduser()
    if p.is_dir() or not p.exists():
        return None
    from .read import _open, probe_video

    info = probe_video(p)
    container, stream = _open(p)
    try:
        pts = np.sort(np.array([pk.pts for pk in container.demux(stream) if pk.pts is not None and pk.size > 0],
                               np.int64))
        try:
            container.seek(0)
            first = next(container.decode(stream), None)
        except av.FFmpegError:  # a damaged start: the stream's own tags
            first = None
        rotation = float(first.rotation or 0) if first is not None else 0.0
        colour = colour_of(first if first is not None else stream.codec_context)
        depth = bit_depth_of(first.format if first is not None else stream.codec_context.format)
        others = [stream_summary(s) for s in container.streams if s.type != "video"]
        return SourceLayout(p, pts, stream.time_base, info.fps, rotation, colour, depth, _tags(container.metadata),
                            _tags(stream.metadata), others)
    finally:
        container.close()


@functools.cache
def _container_holds(format_name: str) -> frozenset:
    """Codecs a container format can hold (FFmpeg's avformat_query_codec), cached per format."""
    probe = av.open(io.BytesIO(), "w", format=format_name)
    try:
        return frozenset(probe.supported_codecs)
    finally:
        probe.close()


class StreamCopier:
    """Copies the non-video streams of ``layout``'s file into ``output`` (an open PyAV output
    container), interleaved with the video: call ``feed_until(seconds)`` after each video
    frame and ``finish(end_s)`` before closing. ``summary()``: what happened to each stream."""

    def __init__(self, layout: SourceLayout, output):
        self.layout, self.output = layout, output
        self._input = av.open(str(layout.path))
        fmt = output.format.name.split(",")[0]
        holds = _container_holds(fmt)
        self._plan: dict[int, tuple] = {}  # input stream index -> (action, out stream, decoder or None)
        self._notes: list[dict] = []
        for s in self._input.streams:
            if s.type == "video":
                if s.index != self._video_index():
                    self._notes.append({**stream_summary(s), "action": "left out",
                                        "why": "only the first video stream is edited and written"})
                continue
            summary = stream_summary(s)
            codec = summary["codec"]
            if s.type in ("audio", "subtitle") and codec in holds:
                out = output.add_stream_from_template(s)
                self._plan[s.index] = ("copied", out, None)
                summary["action"] = "copied"
            elif s.type == "audio" and fmt in _AUDIO_FALLBACK:
                new = _AUDIO_FALLBACK[fmt]
                out = output.add_stream(new, rate=s.codec_context.sample_rate)
                layout = s.codec_context.layout
                # A layout of unknown order ("1 channels") gets the default one: encoders need one.
                out.layout = _DEFAULT_LAYOUTS.get(s.codec_context.channels, layout) if "channels" in layout.name else layout
                s.codec_context.thread_type = "AUTO"
                self._plan[s.index] = ("re-encoded", out, s)
                summary.update(action=f"re-encoded to {new}", why=f"{fmt} cannot hold {codec}")
            else:
                summary.update(action="left out", why=f"the output container ({fmt}) cannot hold {s.type} {codec}")
                self._notes.append(summary)
                continue
            out.metadata.update(_tags(s.metadata))
            self._notes.append(summary)
        self._packets = self._input.demux([self._input.streams[i] for i in self._plan]) if self._plan else iter(())
        self._pending = None  # a packet read but not yet due

    def _video_index(self) -> int:
        return self._input.streams.video[0].index

    def summary(self) -> list[dict]:
        return self._notes

    def feed_until(self, seconds: float | None) -> None:
        """Write every packet that starts before ``seconds`` (None: all that are left)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.size == 0 and packet.pts is None:  # the demuxer's end-of-stream marker
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            if seconds is not None and stamp is not None and float(stamp * packet.time_base) >= seconds:
                self._pending = packet
                return
            self._write(packet)

    def _write(self, packet) -> None:
        action, out, decoder = self._plan[packet.stream.index]
        if decoder is None:
            packet.stream = out
            self.output.mux(packet)
            return
        for frame in decoder.decode(packet):
            self.output.mux(out.encode(frame))

    def finish(self, end_s: float | None) -> None:
        """Write what is left: all of it (``end_s`` None), or what starts before ``end_s``
        (the video was cut short); flush the re-encoders; close the input."""
        try:
            self.feed_until(end_s)
            for action, out, decoder in self._plan.values():
                if decoder is not None:
                    for frame in decoder.decode(None):
                        self.output.mux(out.encode(frame))
                    self.output.mux(out.encode(None))
        finally:
            self.close()

    def close(self) -> None:
        if self._input is not None:
            self._input.close()
            self._input = None


class WaveformTrack:
    """An audio track given as samples (ComfyUI's AUDIO: ``waveform`` [C, S] float -1..1 at
    ``sample_rate``), encoded beside the video (AAC in .mp4/.mov, FLAC in .mkv) and fed
    like ``StreamCopier``: ``feed_until(seconds)`` after each frame, ``finish`` at the end."""

    def __init__(self, waveform, sample_rate: int, output):
        wave = np.asarray(waveform, np.float32)
        if wave.ndim == 1:
            wave = wave[None]
        if wave.ndim != 2 or wave.shape[0] not in _DEFAULT_LAYOUTS or wave.shape[1] == 0:
            raise InputError(f"audio must be [channels, samples] with 1-8 channels, got shape {wave.shape}.")
        if not (isinstance(sample_rate, (int, np.integer)) and 1000 <= sample_rate <= 384000):
            raise InputError(f"audio sample_rate must be an integer 1000..384000 Hz, got {sample_rate!r}.")
        fmt = output.format.name.split(",")[0]
        self.codec = "flac" if fmt == "matroska" else "aac"
        self.wave, self.rate, self.output = np.ascontiguousarray(np.clip(wave, -1, 1)), int(sample_rate), output
        self.layout = _DEFAULT_LAYOUTS[wave.shape[0]]
        self.stream = output.add_stream(self.codec, rate=self.rate)
        self.stream.layout = self.layout
        self._at = 0

    def summary(self) -> list[dict]:
        return [{"type": "audio", "codec": self.codec, "sample_rate": self.rate, "channels": int(self.wave.shape[0]),
                 "action": f"encoded to {self.codec} from the given samples"}]

    def feed_until(self, seconds: float | None) -> None:
        end = self.wave.shape[1] if seconds is None else min(self.wave.shape[1], int(round(seconds * self.rate)))
        while self._at < end:
            block = self.wave[:, self._at : min(end, self._at + 4096)]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="fltp", layout=self.layout)
            frame.sample_rate, frame.pts, frame.time_base = self.rate, self._at, Fraction(1, self.rate)
            self.output.mux(self.stream.encode(frame))
            self._at += block.shape[1]

    def finish(self, end_s: float | None = None) -> None:
        """All samples (an audio track longer than the video is kept whole), then the encoder's tail."""
        self.feed_until(None)
        self.output.mux(self.stream.encode(None))

    def close(self) -> None:
        pass
