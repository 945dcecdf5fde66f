"""Find, track and mask the face; crop it out and paste it back; composite edits.

Everything runs offline on the CPU with OpenCV's Haar cascades (shipped inside
opencv-python-headless), so no weights are downloaded.

Policy (what the tracker does, and why)
---------------------------------------
* **Which face.** Several faces: the largest face of the first frame in which any
  face is found is tracked; after that the detection that overlaps the previous box
  most (IoU) is kept, so a bigger face walking in does not steal the track. Only when
  the tracked face has been lost for longer than ``lost_s`` (1 s) does the tracker
  take the largest face again.
* **When to detect.** A whole-frame Haar search costs 30-100 ms at 320x240, far beyond
  the budget (the whole editor must run >= 100 fps at 640x480). So detection runs on
  *keyframes* every ``detect_every`` frames (~0.25 s) and on the clip's last frame,
  near the last box only (a region of interest, downscaled so the face is ~80 px,
  with min/max face sizes around the last one: ~5 ms); the whole frame is searched
  only when that fails. When a keyframe is unreliable (the face jumped, appeared, or
  was not associated) the frames since the previous keyframe are searched too, so
  fast motion is followed.
* **Lost frames.** Frames without a detection get a box linearly interpolated between
  the neighbouring detections (held at the ends of the clip). ``found`` is True within
  one keyframe interval of a detection and between detections at most two intervals
  apart, False inside longer gaps. The mask is still drawn at the held box there; the
  skin-colour model keeps it off a background that has no skin colour.
* **Never found.** ``FaceNotFoundError`` with advice.
* **Precision and smoothing.** Haar boxes jitter by 2-3 px and ~5 % in size; a
  jittering mask modulates the pooled skin colour and injects a false pulse. Each
  detection is refined to sub-pixel position and size by ECC alignment
  (``cv2.findTransformECC``) of its face patch with a reference patch; then boxes
  (centre and size) are smoothed with a Savitzky-Golay filter (order 2) over
  ``smooth_s`` (1 s), which follows steady head motion without lag.

Skin mask
---------
A template in face-box coordinates (u, v in 0..1 across the box): an ellipse fitted to
the box (reaching above it for the forehead), minus the eye/brow band and the mouth.
It is multiplied by a skin-colour likelihood in YCrCb whose model (mean, covariance,
threshold) is fitted once per clip from the cheeks of every keyframe detection: a per
clip threshold cannot flicker. The colour map is computed on a small grid that follows
the box, smoothed over time (exponential, ``colour_smooth_s``), and resized into the
frame; the template's edges are soft ramps evaluated at the exact (sub-pixel) box
coordinates, so the mask glides with the box instead of stepping.

Long videos
-----------
Two passes, both chunked: pass 1 feeds chunks to ``FaceTracker.update`` (detections and
colour statistics only, nothing is kept but boxes), ``FaceTracker.finish`` returns the
smoothed ``FaceTrack`` of the whole clip (a few numbers per frame); pass 2 renders the
mask chunk by chunk with ``SkinMasker``. The result equals the whole-clip functions
exactly, whatever the chunk sizes. A later pass over the same clip can replay the masks
(``SkinMasker(track, record_bytes=...)``, then ``.replay()``) instead of rendering them.

Frames are float32 [T,H,W,3] RGB in 0..1; masks float32 [T,H,W] in 0..1; boxes are
(x0, y0, x1, y1) in pixel coordinates where pixel k covers [k, k+1).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import FaceNotFoundError, InputError
from ..video import LazyFrames, to_float

__all__ = [
    "CropInfo",
    "FaceTrack",
    "FaceTracker",
    "SkinMasker",
    "SkinModel",
    "composite",
    "crop_faces",
    "detect_faces",
    "face_mask",
    "mask_region",
    "skin_mask",
    "track_face",
    "uncrop_faces",
]

NO_FACE_ADVICE = "make sure the face is frontal and at least ~80 px wide, or pass a mask"

# --------------------------------------------------------------------------- detection

_CASCADE_FILES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
}
_cascades: dict[str, cv2.CascadeClassifier] = {}


def _cascade(name: str) -> cv2.CascadeClassifier:
    """The Haar cascade ``name`` ('default' or 'alt2'), loaded once per process."""
    if name not in _CASCADE_FILES:
        raise InputError(f"unknown face cascade {name!r}; use one of {sorted(_CASCADE_FILES)}.")
    if name not in _cascades:
        path = cv2.data.haarcascades + _CASCADE_FILES[name]
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise FaceNotFoundError(
                f"OpenCV's face detector could not be loaded from {path}; "
                "reinstall opencv-python-headless, or pass a mask."
            )
        _cascades[name] = cascade
    return _cascades[name]


def _as_float(frame: np.ndarray) -> np.ndarray:
    """uint8 [h,w,3] -> float32 0..1 as the video reader converts it (float: as given), so
    a clip tracks the same whether it arrives as uint8 or float. The tracker converts only
    the frames it searches, about one in eight."""
    return to_float(np.asarray(frame)) if frame.dtype == np.uint8 else frame  # asarray: a video.LazyFrame converts


def _to_grey_u8(image: np.ndarray) -> np.ndarray:
    """[h,w,3] RGB float 0..1 or uint8 -> [h,w] uint8 grey."""
    if image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _detect_region(
    frame: np.ndarray,
    rect: tuple[int, int, int, int],
    scale: float,
    min_px: float,
    max_px: float | None,
    cascade: str,
    min_neighbors: int,
    scale_factor: float = 1.1,
) -> np.ndarray:
    """Run the cascade on frame[y0:y1, x0:x1] downscaled by ``scale``.

    rect: integer (x0, y0, x1, y1); min_px/max_px: face sizes in frame pixels.
    Returns [N,4] float boxes in frame pixels.
    """
    x0, y0, x1, y1 = rect
    grey = _to_grey_u8(frame[y0:y1, x0:x1])
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size[0] / (x1 - x0), size[1] / (y1 - y0)
    else:
        scale_x = scale_y = 1.0
    # No histogram equalisation: it makes the cascade fire on textured clothing.
    min_side = max(24, int(min_px * scale_x))
    max_side = (0, 0) if max_px is None else (int(max_px * scale_x),) * 2
    if min(grey.shape) < min_side:
        return np.zeros((0, 4))
    found = _cascade(cascade).detectMultiScale(
        grey, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_side, min_side), maxSize=max_side
    )
    if len(found) == 0:
        return np.zeros((0, 4))
    xywh = np.asarray(found, dtype=np.float64)
    boxes = np.stack(
        [
            xywh[:, 0] / scale_x + x0,
            xywh[:, 1] / scale_y + y0,
            (xywh[:, 0] + xywh[:, 2]) / scale_x + x0,
            (xywh[:, 1] + xywh[:, 3]) / scale_y + y0,
        ],
        axis=1,
    )
    return boxes


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]


def detect_faces(
    frame: np.ndarray,
    *,
    detect_size: int = 320,
    min_face_px: float = 40,
    cascade: str = "alt2",
    min_neighbors: int = 4,
) -> np.ndarray:
    """Detect frontal faces in one frame.

    Args:
        frame: [H,W,3] RGB, float 0..1 or uint8.
        detect_size: the frame is downscaled so its long side is at most this (speed).
        min_face_px: smallest face side searched, in frame pixels (at least 24 px
            after downscaling, the cascade's window).
        cascade: 'alt2' (default: fewer false faces, faster) or 'default' (OpenCV's
            frontal-face cascades).

    Returns:
        [N,4] float (x0, y0, x1, y1) boxes in frame pixels, largest first.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"detect_faces expects one RGB frame [H,W,3]; got shape {frame.shape}.")
    h, w = frame.shape[:2]
    scale = min(1.0, detect_size / max(h, w))
    boxes = _detect_region(frame, (0, 0, w, h), scale, min_face_px, None, cascade, min_neighbors)
    return _largest_first(boxes) if len(boxes) else boxes


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of [N,4] boxes with one [4] box -> [N]."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area0 = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + area0 - inter, 1e-9)


# --------------------------------------------------------------------------- skin colour model


@dataclass
class SkinModel:
    """Per-clip skin colour model in YCrCb (float, 0..1 per channel).

    mean: [3]; inv_cov: [3,3]; threshold: Mahalanobis distance at which the skin
    probability is 0.5; softness: width of the logistic transition (distance units).
    """

    mean: np.ndarray
    inv_cov: np.ndarray
    threshold: float
    softness: float = 0.6

    @classmethod
    def fit(cls, samples: np.ndarray) -> SkinModel:
        """Fit to [N,3] YCrCb samples from the face centre (robust to stray pixels)."""
        samples = np.asarray(samples, dtype=np.float64)
        # Floors: a flat synthetic face has ~zero spread.
        floor = np.diag(np.array([0.03, 0.01, 0.01]) ** 2)
        mean, cov = np.median(samples, axis=0), np.cov(samples.T) + floor
        for _ in range(3):  # trim outliers (hair, glasses, shadow) and refit
            d = _mahalanobis(samples, mean, np.linalg.inv(cov))
            keep = d < 3.0
            if keep.sum() < 10:
                keep = d <= np.median(d)
            mean, cov = samples[keep].mean(axis=0), np.cov(samples[keep].T) + floor
        # Brightness (Y) varies with shading across the face far more than chroma:
        # allow it twice the spread seen on the cheeks.
        cov[0, :] *= 2.0
        cov[:, 0] *= 2.0
        inv = np.linalg.inv(cov)
        d = _mahalanobis(samples, mean, inv)
        threshold = float(max(3.0, 1.25 * np.quantile(d, 0.9)))
        return cls(mean=mean, inv_cov=inv, threshold=threshold)

    def probability(self, ycrcb: np.ndarray) -> np.ndarray:
        """[...,3] YCrCb -> [...] skin probability 0..1."""
        d = _mahalanobis(ycrcb, self.mean, self.inv_cov)
        z = np.clip((d - self.threshold) / self.softness, -50.0, 50.0)  # no overflow far from skin
        return (1.0 / (1.0 + np.exp(z))).astype(np.float32)


def _mahalanobis(x: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    diff = x - mean
    return np.sqrt(np.maximum(((diff @ inv_cov) * diff).sum(axis=-1), 0.0))


# Cheek/nose patch of a Haar box (u0, v0, u1, v1): below the eyes, above the mouth.
_COLOUR_PATCH = (0.22, 0.5, 0.78, 0.72)


def _colour_samples(frame: np.ndarray, box: np.ndarray, n: int = 8) -> np.ndarray:
    """[n*n, 3] YCrCb samples (area-averaged) from the cheek patch of ``box``."""
    h, w = frame.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0 = int(np.clip(round(box[0] + _COLOUR_PATCH[0] * bw), 0, w - 1))
    x1 = int(np.clip(round(box[0] + _COLOUR_PATCH[2] * bw), x0 + 1, w))
    y0 = int(np.clip(round(box[1] + _COLOUR_PATCH[1] * bh), 0, h - 1))
    y1 = int(np.clip(round(box[1] + _COLOUR_PATCH[3] * bh), y0 + 1, h))
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1], dtype=np.float32)
    if frame.dtype == np.uint8:
        patch = patch / 255.0
    patch = cv2.resize(patch, (n, n), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2YCrCb).reshape(-1, 3)


# --------------------------------------------------------------------------- tracking

_PATCH = 64  # side of the grey face patch used for sub-pixel registration
_ECC_STOP = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)


def _face_patch(frame: np.ndarray, centre: np.ndarray, side: float) -> np.ndarray:
    """[_PATCH,_PATCH] float32 grey patch of the square ``side`` around ``centre`` (sub-pixel).

    One exact affine resampling (anti-aliased by a blur first), so that patches of the
    same face taken at nearby centres differ only by the shift.
    """
    h, w = frame.shape[:2]
    step = side / _PATCH  # frame pixels per patch pixel
    pad = int(2 + 2 * step)
    x0, y0 = max(0, math.floor(centre[0] - side / 2) - pad), max(0, math.floor(centre[1] - side / 2) - pad)
    x1, y1 = min(w, math.ceil(centre[0] + side / 2) + pad), min(h, math.ceil(centre[1] + side / 2) + pad)
    grey = _to_grey_u8(frame[y0:y1, x0:x1]).astype(np.float32)
    if step > 1:
        grey = cv2.GaussianBlur(grey, (0, 0), 0.5 * math.sqrt(step**2 - 1))
    # Patch pixel i's centre sits at x = centre - side/2 + (i + 0.5) step, i.e. at crop
    # pixel index x - x0 - 0.5 (pixel k's centre is k + 0.5).
    m = np.array([[step, 0.0, centre[0] - side / 2 + 0.5 * step - x0 - 0.5],
                  [0.0, step, centre[1] - side / 2 + 0.5 * step - y0 - 0.5]])
    return cv2.warpAffine(grey, m, (_PATCH, _PATCH), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


@dataclass
class FaceTrack:
    """The tracked face of a clip.

    boxes: [T,4] float64 (x0, y0, x1, y1) pixels, smoothed over time.
    found: [T] bool, False inside gaps of more than two keyframe intervals without a
        detection (see the module docstring).
    fps: frame rate the track was made at.
    frame_size: (H, W) of the frames.
    skin_model: per-clip skin colour model (None: geometry-only mask).
    raw_boxes: [T,4] boxes before smoothing (detections, interpolated between).
    """

    boxes: np.ndarray
    found: np.ndarray
    fps: float = 30.0
    frame_size: tuple[int, int] | None = None
    skin_model: SkinModel | None = None
    raw_boxes: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.boxes)

    def slice(self, start: int, stop: int) -> FaceTrack:
        """The track of frames start..stop-1 (for chunked processing)."""
        raw = None if self.raw_boxes is None else self.raw_boxes[start:stop]
        return FaceTrack(self.boxes[start:stop], self.found[start:stop], self.fps, self.frame_size,
                         self.skin_model, raw)


class FaceTracker:
    """Streaming face tracker: feed consecutive chunks, then ``finish()``.

    >>> tracker = FaceTracker(fps)
    >>> for chunk in chunks:          # chunk: [t,H,W,3] float 0..1
    ...     tracker.update(chunk)     # provisional boxes [t,4] (last detection held)
    >>> track = tracker.finish()      # FaceTrack of the whole clip, smoothed

    Only boxes and a few colour samples per keyframe are kept, plus copies of the last
    ``detect_every - 1`` frames (to search them when a keyframe is unreliable). The
    result does not depend on how the clip is cut into chunks.

    Args:
        fps: frame rate of the clip.
        detect_every: frames between keyframe detections (default round(0.25 * fps)).
        smooth_s: Savitzky-Golay window for the boxes, seconds (0: no smoothing).
        lost_s: after this long without the tracked face, take the largest face again.
        min_face_px: smallest face searched, in frame pixels.
        detect_size: long side of the downscaled frame for whole-frame searches.
        cascade: 'alt2' or 'default' (OpenCV Haar frontal-face cascades).
        min_neighbors: Haar ``minNeighbors`` (higher: fewer false faces, more misses).
    """

    def __init__(
        self,
        fps: float,
        *,
        detect_every: int | None = None,
        smooth_s: float = 1.0,
        lost_s: float = 1.0,
        min_face_px: float = 40,
        detect_size: int = 320,
        cascade: str = "alt2",
        min_neighbors: int = 4,
    ):
        fps = float(fps)
        if not math.isfinite(fps) or fps <= 0:
            raise InputError(f"fps must be a positive number; got {fps}. Pass the video's frame rate.")
        self.fps = fps
        self.detect_every = max(1, round(0.25 * fps)) if detect_every is None else int(detect_every)
        if self.detect_every < 1:
            raise InputError(f"detect_every must be >= 1; got {detect_every}.")
        if not smooth_s >= 0:
            raise InputError(f"smooth_s must be >= 0 seconds; got {smooth_s}.")
        self.smooth_s = float(smooth_s)
        _cascade(cascade)  # fail now on a bad name, not at the first keyframe
        self.lost_frames = max(1, round(lost_s * fps))
        self.min_face_px = float(min_face_px)
        self.detect_size = int(detect_size)
        self.cascade = cascade
        self.min_neighbors = int(min_neighbors)
        self.frame_size: tuple[int, int] | None = None
        self.detections: dict[int, np.ndarray] = {}  # frame index -> accepted box [4]
        self.detect_calls = 0  # number of frames searched (for diagnostics and tests)
        self._t = 0
        self._last_box: np.ndarray | None = None
        self._last_t = -(10**9)
        self._last_key_box: np.ndarray | None = None
        self._recent: deque[tuple[int, np.ndarray]] = deque(maxlen=max(0, self.detect_every - 1))
        self._colour: list[np.ndarray] = []
        self._ref: np.ndarray | None = None  # reference face patch for sub-pixel registration
        self._ref_side = 0.0  # its size in frame pixels

    # -- detection with association
    def _candidates(self, frame: np.ndarray) -> np.ndarray:
        """Detections [N,4] in one frame: near the last box first, then the whole frame."""
        self.detect_calls += 1
        h, w = frame.shape[:2]
        if self._last_box is not None:
            x0, y0, x1, y1 = self._last_box
            side = max(x1 - x0, y1 - y0)
            pad = 0.6 * side
            rect = (
                int(max(0, math.floor(x0 - pad))),
                int(max(0, math.floor(y0 - pad))),
                int(min(w, math.ceil(x1 + pad))),
                int(min(h, math.ceil(y1 + pad))),
            )
            if rect[2] - rect[0] >= 24 and rect[3] - rect[1] >= 24:
                # Downscale so the face is ~80 px: the cost no longer depends on resolution.
                scale = min(1.0, 80.0 / side)
                near = _detect_region(frame, rect, scale, max(self.min_face_px, 0.65 * side), 1.5 * side,
                                      self.cascade, self.min_neighbors, scale_factor=1.15)
                if len(near):
                    return near
        return detect_faces(frame, detect_size=self.detect_size, min_face_px=self.min_face_px,
                            cascade=self.cascade, min_neighbors=self.min_neighbors)

    def _associate(self, boxes: np.ndarray, t: int) -> np.ndarray | None:
        """Pick the tracked face among the detections (policy in the module docstring)."""
        if len(boxes) == 0:
            return None
        if self._last_box is None or t - self._last_t > self.lost_frames:
            return _largest_first(boxes)[0]
        iou = _iou(boxes, self._last_box)
        best = int(np.argmax(iou))
        return boxes[best] if iou[best] >= 0.1 else None

    def _detect(self, frame: np.ndarray, t: int) -> tuple[np.ndarray | None, bool]:
        """(associated box or None, whether any face was seen)."""
        boxes = self._candidates(frame)
        return self._associate(boxes, t), len(boxes) > 0

    def _accept(self, t: int, box: np.ndarray, frame: np.ndarray) -> None:
        box = self._register(box, frame)
        self.detections[t] = box
        self._last_box, self._last_t = box, t

    def _register(self, box: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Refine a detection to sub-pixel position and sub-percent size.

        Haar boxes snap to a coarse grid: 2-3 px of position and ~5 % of size jitter at
        keyframes, enough to wobble the mask at pulse frequencies. ECC image alignment
        (OpenCV ``findTransformECC``, affine) of the face patch against the patch of an
        earlier detection measures where the face really is and how big it is. The
        reference is renewed when the alignment fails or gets weak (new pose, new face).
        """
        side = max(box[2] - box[0], box[3] - box[1])
        centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        if self._ref is not None and abs(side / self._ref_side - 1) < 0.2:
            # Sample at the reference's scale; ECC measures the remaining scale change.
            patch = _face_patch(frame, centre, self._ref_side)
            warp = np.eye(2, 3, dtype=np.float32)
            try:
                score, warp = cv2.findTransformECC(self._ref, patch, warp, cv2.MOTION_AFFINE, _ECC_STOP, None, 3)
            except cv2.error:  # did not converge
                score = 0.0
            if score >= 0.8:
                scale = math.sqrt(abs(np.linalg.det(warp[:, :2])))
                mid = np.full(2, (_PATCH - 1) / 2)
                # Where the reference's centre lands in this patch, in frame pixels.
                offset = (warp[:, :2] @ mid + warp[:, 2] - mid) * self._ref_side / _PATCH
                new_side = self._ref_side * scale
                if abs(new_side / side - 1) < 0.2 and np.all(np.abs(offset) < 0.25 * side):
                    c = centre + offset
                    return np.array([c[0] - new_side / 2, c[1] - new_side / 2, c[0] + new_side / 2, c[1] + new_side / 2])
        self._ref = _face_patch(frame, centre, side)
        self._ref_side = side
        return box

    def _keyframe(self, t: int, frame: np.ndarray) -> None:
        frame = _as_float(frame)
        box, seen = self._detect(frame, t)
        prev = self._last_key_box
        unreliable = (box is None and seen) or (
            box is not None and (prev is None or _iou(box[None], prev)[0] < 0.5)
        )
        if unreliable and self._recent:
            # Search the frames since the previous keyframe to follow the motion step by step.
            for ti, fi in self._recent:
                fi = _as_float(fi)
                b, _ = self._detect(fi, ti)
                if b is not None:
                    self._accept(ti, b, fi)
            box, _ = self._detect(frame, t)
        if box is not None:
            self._accept(t, box, frame)
            self._colour.append(_colour_samples(frame, box))
        self._last_key_box = box
        self._recent.clear()

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Track one chunk [t,H,W,3] of consecutive frames (float 0..1, uint8, or
        ``video.LazyFrames``, whose frames are converted to RGB only where searched).

        Returns provisional boxes [t,4]: the latest accepted detection held (NaN before
        the first). Final, smoothed boxes come from ``finish()``.
        """
        if not isinstance(chunk, LazyFrames):  # those convert the frames searched, as they are searched
            chunk = _check_frames(chunk, "chunk")
        if self.frame_size is None:
            self.frame_size = chunk.shape[1:3]
        elif chunk.shape[1:3] != self.frame_size:
            raise InputError(
                f"chunk frame size {chunk.shape[1:3]} differs from earlier chunks {self.frame_size}; "
                "all chunks of a clip must have the same size."
            )
        out = np.full((len(chunk), 4), np.nan)
        for i, frame in enumerate(chunk):
            t = self._t + i
            if t % self.detect_every == 0:
                self._keyframe(t, frame)
            elif self._recent.maxlen:
                self._recent.append((t, frame))
            if self._last_box is not None:
                out[i] = self._last_box
        self._t += len(chunk)
        # The caller may reuse its chunk buffer: keep our own copies of buffered frames.
        self._recent = deque(((ti, fi.copy()) for ti, fi in self._recent), maxlen=self._recent.maxlen)
        return out

    def finish(self) -> FaceTrack:
        """Interpolate, smooth and return the whole clip's ``FaceTrack``.

        Raises FaceNotFoundError if no face was found in any frame.
        """
        n = self._t
        if n == 0:
            raise InputError("FaceTracker.finish() called before any frames were given to update().")
        if self._recent:
            # Detect on the clip's last frame too, so the end is not held at the last keyframe.
            t_last, f_last = self._recent.pop()
            self._keyframe(t_last, f_last)
        if not self.detections:
            raise FaceNotFoundError(f"no face found in {n} frames; {NO_FACE_ADVICE}.")
        det_t = np.array(sorted(self.detections))
        det = np.stack([self.detections[t] for t in det_t])
        t_all = np.arange(n)
        # Interpolate centre and size (not corners) so the size never goes negative.
        cxcywh = np.stack(
            [(det[:, 0] + det[:, 2]) / 2, (det[:, 1] + det[:, 3]) / 2, det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]],
            axis=1,
        )
        raw = np.stack([np.interp(t_all, det_t, cxcywh[:, k]) for k in range(4)], axis=1)
        smooth = _smooth(raw, round(self.smooth_s * self.fps))
        # found: within one keyframe interval of a detection, or between two detections
        # at most two intervals apart.
        gap = 2 * self.detect_every
        nxt = np.searchsorted(det_t, t_all)  # first detection >= t
        after = np.where(nxt < len(det_t), det_t[np.minimum(nxt, len(det_t) - 1)] - t_all, 10**9)
        prv = np.searchsorted(det_t, t_all, side="right") - 1
        before = np.where(prv >= 0, t_all - det_t[np.maximum(prv, 0)], 10**9)
        found = (np.minimum(before, after) == 0) | ((before + after) <= gap) | (np.minimum(before, after) <= gap // 2)
        skin = SkinModel.fit(np.concatenate(self._colour)) if self._colour else None
        return FaceTrack(
            boxes=_cxcywh_to_xyxy(smooth),
            found=found,
            fps=self.fps,
            frame_size=tuple(int(s) for s in self.frame_size),
            skin_model=skin,
            raw_boxes=_cxcywh_to_xyxy(raw),
        )


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)


def _smooth(x: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay along axis 0 over ``window`` frames; short clips get shorter windows."""
    from scipy.signal import savgol_filter  # lazy: scipy.signal takes seconds to import

    window = min(window, len(x))
    window -= 1 - window % 2  # odd
    if window < order + 3:
        return x.copy()
    return savgol_filter(x, window, polyorder=order, axis=0, mode="interp")


def track_face(
    frames: np.ndarray,
    fps: float,
    detect_every: int | None = None,
    smooth_s: float = 1.0,
    **kwargs,
) -> FaceTrack:
    """Track the (largest) face through a clip.

    Args:
        frames: [T,H,W,3] float 0..1 (or uint8).
        fps: frame rate; sets the keyframe interval (~0.25 s) and the smoothing window.
        detect_every: frames between detections (default round(0.25 * fps)).
        smooth_s: Savitzky-Golay window in seconds for the boxes.
        **kwargs: more ``FaceTracker`` options (lost_s, min_face_px, cascade, ...).

    Returns:
        FaceTrack with boxes [T,4] and found [T]. Raises FaceNotFoundError if no face.
    """
    tracker = FaceTracker(fps, detect_every=detect_every, smooth_s=smooth_s, **kwargs)
    tracker.update(frames)
    return tracker.finish()


# --------------------------------------------------------------------------- skin mask

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
        for i, frame in enumerate(chunk):
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
        mouth, hair and background, and everywhere outside ``mask_region(track.boxes)``.
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


# --------------------------------------------------------------------------- crop / uncrop


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


def _crop_squares(track: FaceTrack, margin: float, fixed: bool) -> np.ndarray:
    """[T,4] square crop boxes around the face boxes, ``margin`` x box size on each side."""
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
    size = int(size)
    if size < 8:
        raise InputError(f"crop size must be at least 8 px; got {size}.")
    if not (0 <= margin <= 4):
        raise InputError(f"margin must be between 0 and 4 (a fraction of the face size); got {margin}.")
    squares = _crop_squares(track, float(margin), bool(fixed))
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


# --------------------------------------------------------------------------- input checks


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
