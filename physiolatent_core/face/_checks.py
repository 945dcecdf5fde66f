"""Input checks shared by the face package."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def _check_frames(frames, name: str) -> np.ndarray:
    """Validate a clip [T,H,W,3] (float 0..1 or uint8); returns it as an ndarray."""
    if not isinstance(frames, np.ndarray):
        if hasattr(frames, "detach"):  # a torch tensor (ComfyUI IMAGE)
            frames = frames.detach().cpu().numpy()
        else:
            frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"{name} must be RGB frames [T,H,W,3]; got shape {frames.shape}.")
    if len(frames) == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise InputError(f"{name} is empty (shape {frames.shape}); pass at least one frame.")
    if frames.dtype != np.uint8 and not np.issubdtype(frames.dtype, np.floating):
        raise InputError(f"{name} must be float 0..1 or uint8; got dtype {frames.dtype}.")
    return frames
