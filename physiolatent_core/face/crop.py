"""Square face crops and back: crop along the track, paste edited crops into their
frames, and composite an edit inside the mask.

Frames are float32 [T,H,W,3] RGB in 0..1; crops [T,S,S,3]; masks [T,H,W] in 0..1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from ..errors import InputError
from ._checks import _check_frames
from .mask import skin_mask
from .track import FaceTrack, track_face

__all__ = ["CropInfo", "FaceCrops", "composite", "crop_faces", "crop_squares", "cut_crops", "face_crops",
           "uncrop_faces"]


@dataclass
class CropInfo:
    """How square face crops map back into their frames.

    boxes: [T,4] float (x0, y0, x1, y1) of each square crop in frame pixels (may reach
        outside the frame; those parts were filled by replicating the border).
    frame_size: (H, W) of the original frames.
    size: side S of the crops in pixels.
    """

    boxes: np.ndarray
    frame_size: tuple[int, int]
    size: int


def _check_size(size) -> int:
    size = int(size)
    if size < 8:
        raise InputError(f"crop size must be at least 8 px; got {size}.")
    return size


def _check_margin(margin) -> float:
    if not (0 <= margin <= 4):
        raise InputError(f"margin must be between 0 and 4 (a fraction of the face size); got {margin}.")
    return float(margin)


def crop_squares(track: FaceTrack, margin: float = 0.25, fixed: bool = False) -> np.ndarray:
    """[T,4] square crop boxes (x0, y0, x1, y1) around the track's face boxes.

    margin: border on each side, as a fraction of the face box size.
    fixed: every row is the one square around all per-frame squares (a still crop).
    """
    margin = _check_margin(margin)
    b = np.asarray(track.boxes, dtype=np.float64)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + 2 * margin)
    sq = np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)
    if fixed:
        # One crop for the whole clip: the square around the union of all crops.
        lo, hi = sq[:, :2].min(axis=0), sq[:, 2:].max(axis=0)
        c, s = (lo + hi) / 2, (hi - lo).max()
        sq = np.tile([c[0] - s / 2, c[1] - s / 2, c[0] + s / 2, c[1] + s / 2], (len(b), 1))
    return sq


def crop_faces(
    frames: np.ndarray,
    track: FaceTrack,
    size: int = 256,
    margin: float = 0.25,
    fixed: bool = False,
) -> tuple[np.ndarray, CropInfo]:
    """Cut a square crop around the tracked face of every frame.

    Args:
        frames: [T,H,W,3] float 0..1.
        track: FaceTrack of the same clip.
        size: side S of the output crops.
        margin: border added on each side, as a fraction of the face box size.
        fixed: one crop box for the whole clip (the square around all per-frame crops),
            for networks that want a still crop; otherwise the crop follows the face.

    Returns:
        (crops [T,S,S,3] float32, CropInfo). Sub-pixel accurate (affine warp); parts
        outside the frame replicate its border; downscaling is anti-aliased.
    """
    frames = _check_frames(frames, "frames")
    if len(frames) != len(track):
        raise InputError(f"{len(frames)} frames but the face track has {len(track)}; crop the clip you tracked.")
    size = _check_size(size)
    return cut_crops(frames, crop_squares(track, margin, bool(fixed)), size)


def cut_crops(frames: np.ndarray, squares: np.ndarray, size: int) -> tuple[np.ndarray, CropInfo]:
    """Cut crops along given squares: ``crop_faces`` for a chunk of a clip.

    Args:
        frames: [t,H,W,3] float 0..1 (or uint8).
        squares: [t,4] crop squares, e.g. rows start..stop of ``crop_squares(track, ...)``.
        size: side S of the output crops.

    Returns:
        (crops [t,S,S,3] float32, CropInfo of these frames, for ``uncrop_faces``).
    """
    frames = _check_frames(frames, "frames")
    squares = np.asarray(squares, dtype=np.float64)
    if squares.shape != (len(frames), 4):
        raise InputError(f"squares must be [{len(frames)},4], one per frame; got shape {squares.shape}.")
    size = _check_size(size)
    h, w = frames.shape[1:3]
    crops = np.empty((len(frames), size, size, 3), np.float32)
    for i, (frame, sq) in enumerate(zip(frames, squares)):
        scale = size / (sq[2] - sq[0])
        src = np.ascontiguousarray(frame, dtype=np.float32)
        if scale < 0.7:
            # Anti-alias: blur only the part of the frame the crop reads.
            x0, y0 = max(0, math.floor(sq[0]) - 4), max(0, math.floor(sq[1]) - 4)
            x1, y1 = min(w, math.ceil(sq[2]) + 4), min(h, math.ceil(sq[3]) + 4)
            if x1 > x0 and y1 > y0:
                sigma = 0.5 * math.sqrt(1.0 / scale**2 - 1.0)
                src = src.copy()
                src[y0:y1, x0:x1] = cv2.GaussianBlur(src[y0:y1, x0:x1], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
        # crop pixel i's centre (i + 0.5) / scale + sq0 = frame pixel k's centre k + 0.5
        m = np.array([[scale, 0.0, 0.5 * scale - 0.5 - scale * sq[0]], [0.0, scale, 0.5 * scale - 0.5 - scale * sq[1]]])
        crops[i] = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crops, CropInfo(boxes=squares, frame_size=(h, w), size=size)


@dataclass
class FaceCrops:
    """A clip's face crops and what they were made from (see ``face_crops``).

    crops: [T,S,S,3] float32, the frames cropped along ``info.boxes``.
    info: CropInfo of the crops (``uncrop_faces`` pastes edited crops back with it).
    track: FaceTrack the crop squares were placed on.
    mask: [T,H,W] full-frame skin mask (the one given, or ``skin_mask`` of the track).
    mask_crops: [T,S,S] float32, ``mask`` cropped along the same squares (computed on
        first access, so callers that only composite with ``mask`` never pay for it).
    """

    crops: np.ndarray
    info: CropInfo
    track: FaceTrack
    mask: np.ndarray

    @cached_property
    def mask_crops(self) -> np.ndarray:
        mask = np.asarray(self.mask)
        expected = (len(self.info.boxes), *self.info.frame_size)
        if mask.shape != expected:
            raise InputError(
                f"the mask is {mask.shape} but the crops were cut from frames {expected} (T,H,W); "
                "pass the mask of the clip you cropped."
            )
        # Cropped as a three-channel image, exactly as the frames are.
        mask3 = np.repeat(mask[..., None], 3, axis=-1).astype(np.float32)
        return np.ascontiguousarray(cut_crops(mask3, self.info.boxes, self.info.size)[0][..., 0])


def face_crops(
    frames: np.ndarray,
    fps: float,
    size: int = 256,
    *,
    track: FaceTrack | None = None,
    mask: np.ndarray | None = None,
    margin: float = 0.25,
    fixed: bool = True,
) -> FaceCrops:
    """Track the face, make its skin mask and crop it: the face stage of the network paths.

    Args:
        frames: [T,H,W,3] float 0..1 (or uint8).
        fps: frame rate; used to track when ``track`` is None.
        size: side S of the crops.
        track: FaceTrack of the clip (default: ``track_face(frames, fps)``).
        mask: [T,H,W] skin mask of the clip (default: ``skin_mask(frames, track)``).
        margin: border on each side, as a fraction of the face box size (``crop_faces``).
        fixed: one crop square for the whole clip (default: networks want a still crop,
            else the crop's own motion adds a colour signal); False follows the face.

    Returns:
        FaceCrops: crops [T,S,S,3], mask_crops [T,S,S], info, track, mask [T,H,W].
    """
    if track is None:
        track = track_face(frames, fps)
    if mask is None:
        mask = skin_mask(frames, track)
    crops, info = crop_faces(frames, track, size=size, margin=margin, fixed=fixed)
    return FaceCrops(crops=crops, info=info, track=track, mask=mask)


def uncrop_faces(crops: np.ndarray, info: CropInfo, original_frames: np.ndarray) -> np.ndarray:
    """Paste (edited) crops back into their frames: the inverse of ``crop_faces``.

    Args:
        crops: [T,S,S,3] float 0..1 as returned by ``crop_faces`` (possibly edited).
        info: the CropInfo ``crop_faces`` returned.
        original_frames: [T,H,W,3] the frames the crops were cut from.

    Returns:
        [T,H,W,3] float32: the original frames with each crop square replaced by the
        upscaled crop (its edge pixel blended). Composite with a mask to keep only skin.
    """
    original_frames = _check_frames(original_frames, "original_frames")
    crops = np.asarray(crops)
    t, h, w = original_frames.shape[:3]
    s = info.size
    if crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
        raise InputError(f"crops must be [T,{s},{s},3] as made by crop_faces; got shape {crops.shape}.")
    if len(crops) != t or len(info.boxes) != t:
        raise InputError(
            f"{len(crops)} crops, {len(info.boxes)} crop boxes and {t} original frames: they must match; "
            "uncrop the crops of the same clip."
        )
    if tuple(info.frame_size) != (h, w):
        raise InputError(
            f"the crops were cut from {info.frame_size[0]}x{info.frame_size[1]} frames but the original "
            f"frames are {h}x{w}; pass the frames you cropped."
        )
    out = original_frames.astype(np.float32, copy=True)
    for i, sq in enumerate(info.boxes):
        x0, y0 = max(0, math.floor(sq[0])), max(0, math.floor(sq[1]))
        x1, y1 = min(w, math.ceil(sq[2])), min(h, math.ceil(sq[3]))
        if x1 <= x0 or y1 <= y0:
            continue
        inv = (sq[2] - sq[0]) / s  # frame pixels per crop pixel
        m = np.array([[inv, 0.0, sq[0] + 0.5 * inv - 0.5 - x0], [0.0, inv, sq[1] + 0.5 * inv - 0.5 - y0]])
        dsize = (x1 - x0, y1 - y0)
        crop = np.ascontiguousarray(crops[i], dtype=np.float32)
        pasted = cv2.warpAffine(crop, m, dsize, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Coverage: 1 inside the crop square, fractional on its boundary pixels.
        cover = cv2.warpAffine(np.ones((s, s), np.float32), m, dsize, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        region = out[i, y0:y1, x0:x1]
        out[i, y0:y1, x0:x1] = cover * pasted + (1.0 - cover) * region
    return out


# --------------------------------------------------------------------------- composite


def composite(original: np.ndarray, edited: np.ndarray, mask: np.ndarray, feather_px: float = 0) -> np.ndarray:
    """Blend an edit into the original: ``mask * edited + (1 - mask) * original``.

    Args:
        original, edited: [T,H,W,3] float 0..1 of the same shape.
        mask: [T,H,W] (or [T,H,W,1], or [H,W] for every frame) in 0..1.
        feather_px: extra Gaussian feathering of the mask edge (sigma in pixels).

    Returns:
        [T,H,W,3] float32.
    """
    original = _check_frames(original, "original")
    edited = _check_frames(edited, "edited")
    if original.shape[1:3] != edited.shape[1:3]:
        raise InputError(
            f"frame size mismatch: original frames are {original.shape[1]}x{original.shape[2]}, edited "
            f"{edited.shape[1]}x{edited.shape[2]}; resize or uncrop the edit to the original size first."
        )
    if len(original) != len(edited):
        raise InputError(f"original has {len(original)} frames, edited {len(edited)}; pass clips of the same length.")
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 2:
        mask = np.broadcast_to(mask, (len(original),) + mask.shape)
    if mask.ndim != 3:
        raise InputError(f"mask must be [T,H,W] (or [H,W]); got shape {mask.shape}.")
    if mask.shape[1:] != original.shape[1:3]:
        raise InputError(
            f"mask is {mask.shape[1]}x{mask.shape[2]} but frames are {original.shape[1]}x{original.shape[2]}; "
            "make the mask from these frames."
        )
    if len(mask) != len(original):
        raise InputError(
            f"mask length mismatch: {len(mask)} mask frames for {len(original)} video frames; "
            "make the mask from the same clip."
        )
    if not np.all(np.isfinite(mask)):
        raise InputError("mask contains NaN or infinite values; rebuild it.")
    mask = np.clip(mask, 0.0, 1.0)
    feather_px = float(feather_px or 0.0)
    if not feather_px >= 0:
        raise InputError(f"feather_px must be >= 0 (pixels); got {feather_px}.")
    if feather_px > 0:
        mask = np.stack([cv2.GaussianBlur(np.ascontiguousarray(m), (0, 0), feather_px) for m in mask])
    m = mask[..., None]
    return (m * edited + (1.0 - m) * original).astype(np.float32)
