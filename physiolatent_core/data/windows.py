"""Training windows: fixed-length frame ranges of clips, face-cropped, as model-ready tensors.

``WindowDataset`` cuts every clip into windows of ``num_frames`` frames (the VAE
wants 1+4k), crops the face (one fixed box per window, so the crop itself does
not move and add a fake colour signal), resizes to ``size``×``size`` and returns

    {"video": [3, T, S, S] float32 in [-1, 1],  "mask": [T, S, S] float32 0..1,
     "fps": float, "source_hr_bpm": float (nan if unknown), "ppg": [T] (nan if unknown),
     "subject_id": str, "clip_index": int, "start": int}

Targets are not drawn here: the training loop draws them with its own seeded
generator (``records.sample_target_hr``), so a window can be reused with many targets.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from einops import rearrange

from ..errors import InputError
from .records import Clip

__all__ = ["WindowDataset", "crop_window", "window_starts"]

CROP_MODES = ("face", "center", "none")


def window_starts(num_frames_clip: int, num_frames: int, stride: int | None = None) -> list[int]:
    """Start indices of windows of ``num_frames`` every ``stride`` frames (default: non-overlapping)."""
    stride = stride or num_frames
    if num_frames_clip < num_frames:
        return []
    return list(range(0, num_frames_clip - num_frames + 1, stride))


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """``[T,H,W,C]`` -> ``[T,size,size,C]`` with area interpolation (anti-aliased when shrinking)."""
    out = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    out = np.stack(out)
    return out if out.ndim == frames.ndim else out[..., None]


def _center_square(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[1:3]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return x[:, y0 : y0 + s, x0 : x0 + s]


def crop_window(
    frames: np.ndarray, fps: float, size: int, crop: str = "face", mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop and resize one window.

    Args:
        frames: ``[T, H, W, 3]`` float32 0..1.
        mask: optional ``[T, H, W]`` skin mask that came with the data.
        crop: ``"face"`` (``face.face_crops``: the tracked face with one fixed box, and
            the face skin mask when ``mask`` is None), ``"center"`` (central square) or
            ``"none"`` (resize the whole frame).
    Returns: ``(crops [T,S,S,3], mask [T,S,S] or None)``.
    """
    if crop not in CROP_MODES:
        raise InputError(f"crop must be one of {CROP_MODES}; got {crop!r}.")
    if crop == "face":
        from ..face import face_crops  # noqa: PLC0415 - only needed for real videos

        faces = face_crops(frames, fps, size, mask=mask)
        return faces.crops, faces.mask_crops
    if crop == "center":
        frames = _center_square(frames)
        mask = None if mask is None else _center_square(mask)
    crops = _resize(frames, size)
    mask = None if mask is None else _resize(mask[..., None], size)[..., 0]
    return crops.astype(np.float32), mask


class WindowDataset(torch.utils.data.Dataset):
    """All windows of ``num_frames`` frames of ``clips`` (see module docstring for items).

    Crops are cached in memory after the first access (``cache=True``): face
    tracking is the slow part, and training revisits each window many times.
    """

    def __init__(
        self,
        clips: list[Clip],
        num_frames: int,
        size: int = 64,
        crop: str = "face",
        stride: int | None = None,
        max_windows_per_clip: int | None = None,
        cache: bool = True,
    ):
        if num_frames < 2:
            raise InputError(f"num_frames must be at least 2; got {num_frames}.")
        if crop not in CROP_MODES:
            raise InputError(f"crop must be one of {CROP_MODES}; got {crop!r}.")
        self.clips, self.num_frames, self.size, self.crop = clips, num_frames, size, crop
        self.windows: list[tuple[int, int]] = []
        for ci, clip in enumerate(clips):
            starts = window_starts(clip.num_frames, num_frames, stride)
            self.windows += [(ci, s) for s in starts[:max_windows_per_clip]]
        if not self.windows:
            longest = max((c.num_frames for c in clips), default=0)
            raise InputError(
                f"no clip has {num_frames} frames (longest has {longest}); use shorter windows or longer clips."
            )
        self._cache: dict[int, dict] = {} if cache else None

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict:
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        ci, start = self.windows[i]
        clip = self.clips[ci]
        stop = start + self.num_frames
        frames = clip.frames(start, stop)
        mask = None if clip.mask is None else clip.mask[start:stop]
        crops, mask = crop_window(frames, clip.fps, self.size, self.crop, mask)
        if mask is None:
            mask = np.ones(crops.shape[:3], dtype=np.float32)
        ppg = clip.ppg[start:stop] if clip.ppg is not None else np.full(self.num_frames, np.nan)
        item = {
            "video": rearrange(torch.from_numpy(crops), "t h w c -> c t h w") * 2.0 - 1.0,
            "mask": torch.from_numpy(np.ascontiguousarray(mask)),
            "fps": float(clip.fps),
            "source_hr_bpm": float("nan") if clip.hr_bpm is None else float(clip.hr_bpm),
            "ppg": torch.as_tensor(np.asarray(ppg, dtype=np.float32)),
            "subject_id": clip.subject_id,
            "clip_index": ci,
            "start": start,
        }
        if self._cache is not None:
            self._cache[i] = item
        return item
