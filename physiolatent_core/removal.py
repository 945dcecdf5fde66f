"""Removal at every strength: ``--strength standard | strong | max`` (``max`` is ``remove``'s default).

* ``standard``: the pooled editor alone (``editor.PulseEditor``, mode ``remove``): the pulse
  that a 6x6 grid of skin colour shows is taken out along its phase, and pulse-band chaff
  (notched at the subject's HR) is put in. What readers that pool the skin see.
* ``strong`` and ``max``: first ``aligned_bandstop.AlignedBandStop`` removes, in a grid that
  follows the face, every small pulse-band colour change of the skin at every scale and in
  every colour direction, and steadies the head's pulse-band sub-pixel motion (its
  ballistocardiographic bob, which readers that track the face read as a pulse); then the
  pooled editor removes what is left of the pulse (planned on the colours the first stage
  leaves, so nothing is removed twice), the breathing band and the face colour around every
  other rate an estimator reads there (a "pulse" of facial motion), and adds the chaff,
  notched at all of those rates. ``max``
  gates less content out than ``strong`` (``aligned_bandstop.GATE_FOR``).

The fidelity floor is shared: each stage keeps at least the job's floor + 3 dB (half the
error budget; the pooled stage keeps its own 52 dB where that is higher, for lossless
outputs), so together they keep the job's floor.
"""

from __future__ import annotations

import numpy as np

from .aligned_bandstop import AlignedBandStop
from .editor import PulseEditor
from .errors import InputError

__all__ = ["DEFAULT_STRENGTH", "PrivacyRemover", "REMOVE_MIN_PSNR_DB", "STRENGTHS", "check_strength"]

STRENGTHS = ("standard", "strong", "max")
DEFAULT_STRENGTH = "max"  # privacy first: what remove does unless told otherwise
#: The fidelity floor of ``strong`` and ``max`` removal on whole frames (the pooled editor's
#: lossless floor is higher: it changes less).
REMOVE_MIN_PSNR_DB = 45.0
_HALF_BUDGET_DB = 10 * np.log10(2.0)


def check_strength(strength: str) -> str:
    if strength not in STRENGTHS:
        raise InputError(f"removal strength must be one of {', '.join(STRENGTHS)}, got {strength!r}.")
    return strength


class PrivacyRemover:
    """``editors.ChunkEditor`` for ``strong`` / ``max`` removal: the aligned band-stop, then
    the pooled editor. ``pooled`` is a ``PulseEditor`` in mode ``remove``; ``follow(track)``
    must be called before the first ``observe`` (the band-stop's grid follows the track).

    ``min_psnr_db``: the job's floor on whole frames (None: ``REMOVE_MIN_PSNR_DB``; 0: none).
    """

    chunk_frames: int | None = None

    def __init__(self, fps: float, pooled: PulseEditor, strength: str = "max", min_psnr_db: float | None = None):
        if check_strength(strength) == "standard":
            raise InputError("standard removal is the pooled editor alone: use PulseEditor(mode='remove').")
        if pooled.mode != "remove":
            raise InputError("PrivacyRemover removes: give it a PulseEditor in mode 'remove'.")
        self.fps = float(fps)
        self.strength = strength
        floor = REMOVE_MIN_PSNR_DB if min_psnr_db is None else float(min_psnr_db) or None
        self.min_psnr_db = floor
        self.pooled = pooled
        pooled.remove_readings = True
        if floor is not None and (pooled.min_psnr_db is None or pooled.min_psnr_db < floor + _HALF_BUDGET_DB):
            pooled.min_psnr_db = floor + _HALF_BUDGET_DB
        self.bandstop: AlignedBandStop | None = None

    def follow(self, track) -> None:
        """The clip's face track (``face.FaceTrack``), before the first ``observe``."""
        floor = None if self.min_psnr_db is None else self.min_psnr_db + _HALF_BUDGET_DB
        self.bandstop = AlignedBandStop(self.fps, track, strength=self.strength, min_psnr_db=floor)
        self.pooled.upstream = self.bandstop

    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        if self.bandstop is None:
            raise InputError(f"{self.strength} removal follows the face track: call follow(track) first "
                             "(editors.run_editor does, given the track).")
        self.bandstop.observe(frames, face_mask)
        self.pooled.observe(frames, face_mask)

    def plan(self, track=None) -> dict:
        self.bandstop.plan(track)
        self.pooled.plan(track)
        return self.info

    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        out = self.bandstop.apply(frames, face_mask, start, inplace=inplace)
        return self.pooled.apply(out, face_mask, start, inplace=True)

    @property
    def info(self) -> dict:
        info = self.pooled.info
        if self.bandstop is not None and self.bandstop.info:
            bandstop = self.bandstop.info
            info["strength"] = self.strength
            info["aligned_bandstop"] = bandstop
            # The two stages' errors add: PSNR of the sum of their mean squared errors.
            mse = sum(10 ** (-info_db / 10) for info_db in (bandstop["predicted_psnr_db"], info["predicted_psnr_db"])
                      if np.isfinite(info_db))
            info["predicted_psnr_db"] = float(-10 * np.log10(mse)) if mse > 0 else float("inf")
        return info
