"""Face crops for the learned reader: our face tracker's boxes, not our skin mask.

The reader sees the whole face crop pixel by pixel (``face.track_face`` -> ``crop_squares``
-> ``cut_crops``); nothing of the skin mask or its pooled colour reaches it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from physiolatent_core import face  # noqa: E402

#: Side of the crops the network reads, pixels.
CROP_PX = 64
#: Border around the tracker's face box, as a fraction of its size on each side.
CROP_MARGIN = 0.1


def reader_crops(frames: np.ndarray, fps: float, track: face.FaceTrack | None = None,
                 crop_px: int = CROP_PX) -> np.ndarray:
    """``frames [T,H,W,3]`` float 0..1 -> face crops ``[T,S,S,3]`` float32 that follow the
    tracked face (the tracker's boxes are smoothed over 1 s, so the crop does not jitter)."""
    if track is None:
        track = face.track_face(frames, fps)
    squares = face.crop_squares(track, margin=CROP_MARGIN)
    return face.cut_crops(frames, squares, crop_px)[0]


def crops_of_chunks(chunks, squares: np.ndarray, crop_px: int = CROP_PX) -> np.ndarray:
    """Crops of a clip given as an iterable of frame chunks, along precomputed ``squares [T,4]``."""
    out, start = [], 0
    for chunk in chunks:
        out.append(face.cut_crops(chunk, squares[start:start + len(chunk)], crop_px)[0])
        start += len(chunk)
    return np.concatenate(out)
