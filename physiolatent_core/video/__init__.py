"""Video files in and out: PyAV for containers, OpenCV for folders of frames.

Frames are ``float32 [T, H, W, 3]`` RGB in 0..1 and ``fps`` travels beside them.

* ``read``: ``probe_video``, ``iter_frames`` (chunks, or ``LazyFrames`` converted where
  used), ``read_video``; video files and folders of PNG/JPG frames.
* ``write``: ``VideoWriter`` / ``write_video`` (.mp4/.mov H.264, .mkv FFV1, a folder of
  PNGs; atomic), the checks of what may be written where (``output_kind``, ``check_crf``,
  ``check_output_path``), and ``encode_decode`` (the round trip a save node applies).
* ``quantise``: float ↔ 8-bit levels with a temporal dither that keeps a pulse smaller than
  one grey level (``quantize_to_uint8``, ``add_in_whole_levels``, ``to_float``).
* ``stream``: ``prefetch`` and ``Behind``, a worker thread reading ahead or writing behind.
"""

from .quantise import (
    QUANTIZE_METHODS,
    TO_FLOAT_BLOCK,
    WHOLE_LEVEL_MARGIN,
    DitherState,
    add_in_whole_levels,
    prequantize_for_truncation,
    quantize_to_uint8,
    to_float,
)
from .read import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    LazyFrame,
    LazyFrames,
    TruncatedVideoWarning,
    VideoInfo,
    iter_frames,
    probe_video,
    read_video,
)
from .stream import Behind, prefetch
from .write import (
    H264_SUFFIXES,
    X264_PRESETS,
    VideoWriter,
    check_crf,
    check_output_path,
    encode_decode,
    encode_decode_chunks,
    output_kind,
    write_video,
)

__all__ = [
    "H264_SUFFIXES", "IMAGE_SUFFIXES", "QUANTIZE_METHODS", "TO_FLOAT_BLOCK", "VIDEO_SUFFIXES",
    "WHOLE_LEVEL_MARGIN", "X264_PRESETS",
    "Behind", "DitherState", "LazyFrame", "LazyFrames", "TruncatedVideoWarning", "VideoInfo", "VideoWriter",
    "add_in_whole_levels", "check_crf", "check_output_path", "encode_decode", "encode_decode_chunks",
    "iter_frames", "output_kind", "prefetch", "prequantize_for_truncation", "probe_video",
    "quantize_to_uint8", "read_video", "to_float", "write_video",
]
