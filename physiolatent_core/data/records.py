"""The common clip record every reader returns, subject-wise splits, and target-HR sampling.

A ``Clip`` is one recording: frames (in memory, or a lazy loader that decodes a
frame range on demand so a dataset of one-minute videos does not sit in RAM),
its fps, an optional ground-truth PPG resampled to the frame times, an optional
mean HR, and the subject it belongs to (splits are by subject, never by clip, so
no face is seen in both training and test).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

__all__ = ["PAPER_TARGETS_BPM", "Clip", "sample_target_hr", "split_clips", "split_subjects"]

# The paper trains on a discrete prompt set (limitations slide: 75 bpm was unseen);
# its test targets are 60/80/100/120. A 10-bpm grid over 60–120 is our reading.
PAPER_TARGETS_BPM: tuple[float, ...] = (60.0, 70.0, 80.0, 90.0, 100.0, 110.0, 120.0)


@dataclass
class Clip:
    """One recording.

    Attributes:
        subject_id: who is in it (the unit of train/val/test splits).
        fps: frames per second.
        num_frames: T.
        source: file or folder it came from ("synthetic:<seed>" for synthetic ones).
        ppg: ``[T] float32`` ground-truth pulse at the frame times, or None.
        hr_bpm: mean ground-truth HR over the clip, or None.
        mask: optional ``[T, H, W] float32`` skin mask that comes with the data (synthetic).
    Frames come from ``frames(start, stop)`` as ``[t, H, W, 3] float32`` in 0..1.
    """

    subject_id: str
    fps: float
    num_frames: int
    source: str = ""
    ppg: np.ndarray | None = None
    hr_bpm: float | None = None
    mask: np.ndarray | None = None
    _frames: np.ndarray | None = field(default=None, repr=False)
    _loader: Callable[[int, int], np.ndarray] | None = field(default=None, repr=False)

    def frames(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``[start, stop)`` as float32 ``[t, H, W, 3]`` in 0..1."""
        stop = self.num_frames if stop is None else stop
        if not 0 <= start < stop <= self.num_frames:
            raise InputError(f"frame range [{start}, {stop}) is outside clip {self.source!r} of {self.num_frames} frames.")
        if self._frames is not None:
            out = self._frames[start:stop]
        elif self._loader is not None:
            out = self._loader(start, stop)
        else:
            raise InputError(f"clip {self.source!r} has neither frames nor a loader.")
        if out.shape[0] != stop - start:
            raise InputError(
                f"clip {self.source!r}: asked for frames [{start}, {stop}) but got {out.shape[0]}; "
                "the file may be shorter than its header says."
            )
        return np.asarray(out, dtype=np.float32)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def split_subjects(
    ids: Sequence[str], val_frac: float = 0.1, test_frac: float = 0.2, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """Shuffle the distinct subject ids and cut them into (train, val, test).

    Each non-zero fraction gets at least one subject (when there are enough),
    and train always keeps at least one. Deterministic for a given seed.
    """
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise InputError(f"val_frac={val_frac} and test_frac={test_frac} must be in [0, 1) and sum below 1.")
    unique = sorted(set(map(str, ids)))
    if not unique:
        raise InputError("split_subjects got no subject ids; did the reader find any clips?")
    order = [unique[i] for i in np.random.default_rng(seed).permutation(len(unique))]
    n = len(order)
    n_test = max(1, round(test_frac * n)) if test_frac > 0 and n >= 2 else 0
    n_val = max(1, round(val_frac * n)) if val_frac > 0 and n - n_test >= 2 else 0
    if n_test + n_val >= n:
        raise InputError(f"{n} subject(s) are too few for val_frac={val_frac}, test_frac={test_frac}.")
    test = sorted(order[:n_test])
    val = sorted(order[n_test : n_test + n_val])
    train = sorted(order[n_test + n_val :])
    return train, val, test


def split_clips(clips: Sequence[Clip], val_frac: float = 0.1, test_frac: float = 0.2, seed: int = 0):
    """``split_subjects`` applied to clips: returns (train_clips, val_clips, test_clips)."""
    train, val, test = split_subjects([c.subject_id for c in clips], val_frac, test_frac, seed)
    pick = lambda ids: [c for c in clips if c.subject_id in set(ids)]  # noqa: E731
    return pick(train), pick(val), pick(test)


def sample_target_hr(
    rng: np.random.Generator,
    n: int = 1,
    mode: str = "discrete",
    choices: Sequence[float] = PAPER_TARGETS_BPM,
    low_bpm: float = 40.0,
    high_bpm: float = 180.0,
) -> np.ndarray:
    """Target HRs ``[n]`` in bpm: ``"discrete"`` draws from ``choices`` (the paper's
    setting), ``"uniform"`` from U(low_bpm, high_bpm) (lets the model interpolate)."""
    if mode == "discrete":
        if len(choices) == 0:
            raise InputError("sample_target_hr(mode='discrete') needs a non-empty list of choices.")
        return rng.choice(np.asarray(choices, dtype=np.float64), size=n)
    if mode == "uniform":
        if not 0 < low_bpm < high_bpm:
            raise InputError(f"uniform target range must satisfy 0 < low < high; got {low_bpm}, {high_bpm}.")
        return rng.uniform(low_bpm, high_bpm, size=n)
    raise InputError(f"target HR mode must be 'discrete' or 'uniform'; got {mode!r}.")
