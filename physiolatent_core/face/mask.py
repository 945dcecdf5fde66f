"""The soft skin mask of a tracked face, rendered whole or chunk by chunk.

A template in face-box coordinates (u, v in 0..1 across the box): an ellipse fitted to
the box (reaching above it for the forehead), minus the eye/brow band and the mouth.
It is multiplied by a skin-colour likelihood in YCrCb whose model (mean, covariance,
threshold; ``skin.SkinModel``) is fitted once per clip from the cheeks of every keyframe
detection: a per clip threshold cannot flicker. The colour map is computed on a small
grid that follows the box, smoothed over time (exponential, ``colour_smooth_s``), and
resized into the frame; the template's edges are soft ramps evaluated at the exact
(sub-pixel) box coordinates, so the mask glides with the box instead of stepping.

Masks are float32 [T,H,W] in 0..1.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import InputError
from ._checks import _check_frames
from .track import FaceTrack, track_face

__all__ = ["SkinMasker", "face_mask", "mask_region", "skin_mask"]

# The mask grid spans this part of box coordinates: a little wider than the box, and
# above it for the forehead (a Haar box starts at about the brows).
_U_RANGE = (-0.08, 1.08)
_V_RANGE = (-0.32, 1.1)


def mask_region(box: np.ndarray) -> np.ndarray:
    """[4] or [N,4] face boxes -> the boxes that the skin mask can cover (same shape).

    The mask is zero outside this region.
    """
    box = np.asarray(box, dtype=np.float64)
    w, h = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
    return np.stack(
        [box[..., 0] + _U_RANGE[0] * w, box[..., 1] + _V_RANGE[0] * h,
         box[..., 0] + _U_RANGE[1] * w, box[..., 1] + _V_RANGE[1] * h],
        axis=-1,
    )


def _ramp(dist: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-ness: 1 where dist <= -width/2, 0 where dist >= width/2, linear between."""
    return np.clip(0.5 - dist / width, 0.0, 1.0)


def _template(u: np.ndarray, v: np.ndarray, soft: float = 0.06) -> np.ndarray:
    """Geometric skin template at box coordinates u [cols], v [rows] -> [rows, cols] float32.

    Proportions measured on Haar boxes (u, v in 0..1 across the box): brows at v ~0.27,
    eyes ~0.37, mouth ~0.8, chin ~1.02, hairline ~-0.1..-0.2; the box spans the cheeks.
    Edges are linear ramps ``soft`` box-units wide (not hard steps), so the mask moves
    continuously when the box moves by a fraction of a grid cell.
    """
    uu, vv = np.meshgrid(u, v)

    def ellipse(cu, cv, au, av):  # approximate signed distance (box units), < 0 inside
        return (np.sqrt(((uu - cu) / au) ** 2 + ((vv - cv) / av) ** 2) - 1.0) * min(au, av)

    face = _ramp(ellipse(0.5, 0.42, 0.47, 0.62), soft)
    band = np.maximum(np.abs(vv - 0.36) - 0.12, np.abs(uu - 0.5) - 0.45)  # eyes and brows
    not_eyes = 1.0 - _ramp(band, soft)
    not_mouth = 1.0 - _ramp(ellipse(0.5, 0.845, 0.23, 0.125), soft)
    return (face * not_eyes * not_mouth).astype(np.float32)


class SkinMasker:
    """Render the soft skin mask chunk by chunk (consecutive chunks, from frame 0).

    >>> masker = SkinMasker(track)
    >>> for chunk in chunks: mask_chunk = masker(chunk)   # [t,H,W] float32

    Per frame: a small grid (``grid`` rows x cols) covers ``mask_region(box)`` snapped
    outwards to whole pixels; the template is evaluated at the grid's exact box
    coordinates (so it follows sub-pixel motion), multiplied by the skin probability
    of the area-averaged pixels under each cell (smoothed over time), and resized up
    into the frame. State: the frame counter and the smoothed colour grid.

    With ``record_bytes`` it keeps each frame's grid (rows x cols float32, ~11 kB a frame
    by default) up to that many bytes (past them it keeps none), and :meth:`replay`
    renders the same masks again, bit for bit, without the frames' colour analysis (for
    a later pass over the same clip).
    """

    def __init__(self, track: FaceTrack, *, use_colour: bool = True, colour_smooth_s: float = 0.2,
                 soft: float = 0.06, grid: tuple[int, int] = (56, 48), record_bytes: int = 0):
        self.track = track
        self.use_colour = use_colour and track.skin_model is not None
        # Exponential smoothing weight per frame for the colour grid: the per-pixel
        # classification must not flicker from frame to frame.
        self.alpha = 1.0 - math.exp(-1.0 / max(colour_smooth_s * track.fps, 1e-6))
        self.soft = float(soft)
        self.grid = (int(grid[0]), int(grid[1]))
        self._t = 0
        self._colour: np.ndarray | None = None
        self._record_frames = record_bytes // (self.grid[0] * self.grid[1] * 4)
        self._recorded: list[tuple[np.ndarray, tuple[int, int, int, int]]] | None = [] if self._record_frames else None

    def _check_chunk(self, chunk: np.ndarray) -> None:
        track = self.track
        if track.frame_size is not None and tuple(chunk.shape[1:3]) != tuple(track.frame_size):
            raise InputError(
                f"frames are {chunk.shape[1]}x{chunk.shape[2]} but the face track was made on "
                f"{track.frame_size[0]}x{track.frame_size[1]} frames; track the same clip you mask."
            )
        if self._t + len(chunk) > len(track):
            raise InputError(
                f"the face track has {len(track)} frames but frame {self._t + len(chunk) - 1} was asked for; "
                "track the whole clip first (or pass chunks of the same clip in order)."
            )

    @property
    def recording(self) -> bool:
        """Whether every frame so far was recorded (``replay`` can be called)."""
        return self._recorded is not None

    def replay(self) -> "_MaskReplay":
        """A masker that renders the masks this one rendered, in the same order, from the
        recorded grids (the chunks it is given only set the frame size)."""
        if self._recorded is None:
            raise RuntimeError("replay() needs SkinMasker(..., record_bytes=...) large enough for the clip.")
        return _MaskReplay(self, list(self._recorded))

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = _check_frames(chunk, "frames")
        self._check_chunk(chunk)
        track = self.track
        rows, cols = self.grid
        masks = np.zeros(chunk.shape[:3], np.float32)
        present = track.present(self._t, self._t + len(chunk))
        for i, frame in enumerate(chunk):
            if not present[i]:  # a face that has not entered yet, or has left: no mask
                if self._recorded is not None:
                    self._recorded.append(None)
                continue
            box = track.boxes[self._t + i]
            region = mask_region(box)
            # Whole-pixel rectangle around the region (may reach outside the frame).
            rx0, ry0 = math.floor(region[0]), math.floor(region[1])
            rx1, ry1 = max(math.ceil(region[2]), rx0 + 1), max(math.ceil(region[3]), ry0 + 1)
            bw, bh = box[2] - box[0], box[3] - box[1]
            u = (rx0 + (np.arange(cols) + 0.5) * (rx1 - rx0) / cols - box[0]) / bw
            v = (ry0 + (np.arange(rows) + 0.5) * (ry1 - ry0) / rows - box[1]) / bh
            grid = _template(u, v, self.soft)
            if self.use_colour:
                colour = self._colour_grid(frame, (rx0, ry0, rx1, ry1))
                if self._colour is None:
                    self._colour = colour
                else:
                    self._colour += self.alpha * (colour - self._colour)
                grid *= self._colour
            if self._recorded is not None:
                self._recorded.append((grid, (rx0, ry0, rx1, ry1)))
                if len(self._recorded) > self._record_frames:
                    self._recorded = None  # over budget: keep nothing
            _paste(masks[i], grid, (rx0, ry0, rx1, ry1))
        self._t += len(chunk)
        return masks

    def _colour_grid(self, frame: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """Skin probability [rows, cols] of the pixels under each grid cell (area-averaged,
        then blurred by one cell); cells outside the frame are 0."""
        h, w = frame.shape[:2]
        rows, cols = self.grid
        rx0, ry0, rx1, ry1 = rect
        x0, y0, x1, y1 = max(rx0, 0), max(ry0, 0), min(rx1, w), min(ry1, h)
        out = np.zeros((rows, cols), np.float32)
        if x1 <= x0 or y1 <= y0:
            return out
        # Grid cells covering the visible part.
        c0, c1 = round((x0 - rx0) / (rx1 - rx0) * cols), round((x1 - rx0) / (rx1 - rx0) * cols)
        r0, r1 = round((y0 - ry0) / (ry1 - ry0) * rows), round((y1 - ry0) / (ry1 - ry0) * rows)
        c1, r1 = max(c1, c0 + 1), max(r1, r0 + 1)
        # Subsample big faces before averaging: ~4x4 pixels per cell are plenty.
        step = max(1, min((x1 - x0) // (4 * (c1 - c0)), (y1 - y0) // (4 * (r1 - r0))))
        patch = np.asarray(frame[y0:y1:step, x0:x1:step], dtype=np.float32)
        if frame.dtype == np.uint8:
            patch = patch / 255.0
        small = cv2.resize(patch, (c1 - c0, r1 - r0), interpolation=cv2.INTER_AREA).reshape(r1 - r0, c1 - c0, 3)
        ycrcb = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb)
        out[r0:r1, c0:c1] = self.track.skin_model.probability(ycrcb)
        return cv2.GaussianBlur(out, (0, 0), 1.0, borderType=cv2.BORDER_CONSTANT)


def _paste(mask: np.ndarray, grid: np.ndarray, rect: tuple[int, int, int, int]) -> None:
    """Resize ``grid`` [rows, cols] onto the whole-pixel ``rect`` and write the part of it
    inside the frame into ``mask`` [H, W]."""
    h, w = mask.shape
    rx0, ry0, rx1, ry1 = rect
    cx0, cy0, cx1, cy1 = max(rx0, 0), max(ry0, 0), min(rx1, w), min(ry1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    interp = cv2.INTER_LINEAR if rx1 - rx0 >= grid.shape[1] else cv2.INTER_AREA
    up = cv2.resize(grid, (rx1 - rx0, ry1 - ry0), interpolation=interp)
    mask[cy0:cy1, cx0:cx1] = up[cy0 - ry0 : cy1 - ry0, cx0 - rx0 : cx1 - rx0]


class _MaskReplay:
    """``SkinMasker.replay()``: the recorded masks again, chunk by chunk from frame 0."""

    def __init__(self, masker: SkinMasker, recorded: list):
        self._masker, self._recorded, self._t = masker, recorded, 0

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = _check_frames(chunk, "frames")
        size = self._masker.track.frame_size
        if size is not None and tuple(chunk.shape[1:3]) != tuple(size):
            raise InputError(f"frames are {chunk.shape[1]}x{chunk.shape[2]}, the masks {size[0]}x{size[1]}.")
        if self._t + len(chunk) > len(self._recorded):
            raise InputError(
                f"the masker recorded {len(self._recorded)} frames but frame {self._t + len(chunk) - 1} was "
                "asked for; replay the chunks the masker rendered."
            )
        masks = np.zeros(chunk.shape[:3], np.float32)
        for i in range(len(chunk)):
            if self._recorded[self._t + i] is not None:  # None: the face was absent
                _paste(masks[i], *self._recorded[self._t + i])
        self._t += len(chunk)
        return masks


def skin_mask(frames: np.ndarray, track: FaceTrack, *, use_colour: bool = True, **kwargs) -> np.ndarray:
    """Soft skin mask of the tracked face.

    Args:
        frames: [T,H,W,3] float 0..1, the clip ``track`` was made on.
        track: its FaceTrack (``track_face`` or ``FaceTracker``).
        use_colour: refine the geometric template with the per-clip skin colour model.
        **kwargs: ``SkinMasker`` options (colour_smooth_s, soft, grid).

    Returns:
        [T,H,W] float32 in 0..1: forehead, cheeks, nose and chin; 0 on eyes, brows,
        mouth, hair and background, everywhere outside ``mask_region(track.boxes)``, and
        in frames outside ``track.span`` (the face is absent there).
    """
    frames = _check_frames(frames, "frames")
    if len(frames) != len(track):
        raise InputError(
            f"{len(frames)} frames but the face track has {len(track)}; track the same clip you mask."
        )
    return SkinMasker(track, use_colour=use_colour, **kwargs)(frames)


def face_mask(frames: np.ndarray, fps: float, *, use_colour: bool = True, **track_kwargs) -> tuple[np.ndarray, FaceTrack]:
    """Track the face and build its skin mask: returns (mask [T,H,W] float32, FaceTrack).

    ``track_kwargs`` go to ``track_face`` (detect_every, smooth_s, lost_s, ...).
    """
    track = track_face(frames, fps, **track_kwargs)
    return skin_mask(frames, track, use_colour=use_colour), track
