"""Synthetic clips of several subjects side by side, each with its own known pulse.

``synth.synth_subject`` renders one subject; :func:`synth_faces` renders one per heart
rate and puts them side by side in one frame (subject 1 on the left). A subject may enter
the shot mid-clip (``enter_s``): until then its place shows a plain wall (the mean colour
of its own first frame's border, with the same sensor noise), then the subject appears.
For tests of multi-face tracking and editing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .synth import SynthClip, synth_subject

__all__ = ["FacesClip", "synth_faces"]


@dataclass
class FacesClip:
    """Several synthetic subjects side by side.

    frames: float32 [T,H,W*F,3]; fps; subjects: each subject's ``SynthClip`` (its frames,
    known pulse, skin mask and face box in its own tile); present: [F,T] bool, whether
    subject f is in the shot; tile_width: W, the width of each subject's tile.
    """

    frames: np.ndarray
    fps: float
    subjects: list[SynthClip]
    present: np.ndarray
    tile_width: int

    def skin_mask(self, index: int) -> np.ndarray:
        """[T,H,W*F] float32: subject ``index``'s true skin mask in the whole frame (0 where absent)."""
        t, h, w = self.frames.shape[:3]
        out = np.zeros((t, h, w), np.float32)
        x0 = index * self.tile_width
        out[:, :, x0 : x0 + self.tile_width] = self.subjects[index].skin_mask * self.present[index][:, None, None]
        return out

    def face_box(self, index: int) -> np.ndarray:
        """[T,4] subject ``index``'s true face box in whole-frame pixels."""
        return self.subjects[index].face_box + np.array([index * self.tile_width, 0, index * self.tile_width, 0])


def synth_faces(hr_bpm=(60.0, 110.0), *, duration_s: float = 8.0, fps: float = 15.0,
                size: tuple[int, int] = (160, 160), enter_s=None, seed: int = 0, **kwargs) -> FacesClip:
    """Render ``len(hr_bpm)`` subjects side by side, subject ``f`` with heart rate ``hr_bpm[f]``.

    Args:
        hr_bpm: one heart rate (or trajectory) per subject, left to right.
        duration_s, fps: the clip.
        size: (height, width) of each subject's tile; at 160x160 the face is ~70 px wide.
        enter_s: per subject, when it enters the shot (seconds; None or 0: from the start).
        seed: subject f uses ``seed + f``.
        **kwargs: more ``synth.synth_subject`` options for every subject.

    Returns:
        FacesClip.
    """
    hr_bpm = list(hr_bpm)
    if not hr_bpm:
        raise InputError("synth_faces needs at least one heart rate (one per subject).")
    enter_s = [None] * len(hr_bpm) if enter_s is None else list(enter_s)
    if len(enter_s) != len(hr_bpm):
        raise InputError(f"enter_s has {len(enter_s)} entries for {len(hr_bpm)} subjects; give one per subject.")
    subjects = [synth_subject(duration_s=duration_s, fps=fps, hr_bpm=hr, size=size, seed=seed + f, **kwargs)
                for f, hr in enumerate(hr_bpm)]
    n_frames = len(subjects[0].frames)
    present = np.ones((len(subjects), n_frames), bool)
    rng = np.random.default_rng(seed)
    for f, (subject, enter) in enumerate(zip(subjects, enter_s)):
        if not enter:
            continue
        if not 0 < enter < duration_s:
            raise InputError(f"subject {f + 1} enters at {enter} s, outside the {duration_s} s clip.")
        first = int(round(enter * fps))
        present[f, :first] = False
        tile = subject.frames[0]
        border = np.concatenate([tile[0], tile[-1], tile[:, 0], tile[:, -1]])
        wall = np.clip(border.mean(axis=0) + rng.normal(0.0, 1.0 / 255, (first, *tile.shape)), 0, 1)
        subject.frames[:first] = np.round(wall * 255) / 255  # an 8-bit camera's plain wall
    frames = np.concatenate([s.frames for s in subjects], axis=2)
    return FacesClip(frames=frames, fps=float(fps), subjects=subjects, present=present, tile_width=size[1])
