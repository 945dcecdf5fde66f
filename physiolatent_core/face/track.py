"""Track one face through a clip: keyframe detection, sub-pixel registration, smoothing.

Policy (what the tracker does, and why)
---------------------------------------
* **Which face.** Several faces: the largest face of the first frame in which any
  face is found is tracked; after that the detection that overlaps the previous box
  most (IoU) is kept, so a bigger face walking in does not steal the track. Only when
  the tracked face has been lost for longer than ``lost_s`` (1 s) does the tracker
  take the largest face again.
* **When to detect.** A whole-frame Haar search is far too slow for the budget (the
  whole editor must run >= 100 fps at 640x480; docs/ARCHITECTURE.md, Decisions, "Face
  tracking"). So detection runs on *keyframes* every ``detect_every`` frames (~0.25 s)
  and on the clip's last frame, near the last box only (a region of interest,
  downscaled so the face is ~80 px, with min/max face sizes around the last one); the
  whole frame is searched only when that fails. When a keyframe is unreliable (the face
  jumped, appeared, or was not associated) the frames since the previous keyframe are
  searched too, so fast motion is followed.
* **Lost frames.** Frames without a detection get a box linearly interpolated between
  the neighbouring detections (held at the ends of the clip). ``found`` is True within
  one keyframe interval of a detection and between detections at most two intervals
  apart, False inside longer gaps. The mask is still drawn at the held box there; the
  skin-colour model keeps it off a background that has no skin colour.
* **Never found.** ``FaceNotFoundError`` with advice.
* **Precision and smoothing.** Haar boxes jitter, and a jittering mask modulates the
  pooled skin colour and injects a false pulse (docs/ARCHITECTURE.md, Decisions, "Face
  tracking"). Each detection is refined to sub-pixel position and size by ECC alignment
  (``cv2.findTransformECC``) of its face patch with a reference patch; then boxes
  (centre and size) are smoothed with a Savitzky-Golay filter (order 2) over
  ``smooth_s`` (1 s), which follows steady head motion without lag.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import FaceNotFoundError, InputError
from ..video import LazyFrames, to_float
from ._checks import _check_frames
from .detect import _cascade, _detect_region, _iou, _largest_first, _to_grey_u8, detect_faces
from .skin import SkinModel, _colour_samples

__all__ = ["FaceTrack", "FaceTracker", "track_face"]

NO_FACE_ADVICE = "make sure the face is frontal and at least ~80 px wide, or pass a mask"


def _as_float(frame: np.ndarray) -> np.ndarray:
    """uint8 [h,w,3] -> float32 0..1 as the video reader converts it (float: as given), so
    a clip tracks the same whether it arrives as uint8 or float. The tracker converts only
    the frames it searches, about one in eight."""
    return to_float(np.asarray(frame)) if frame.dtype == np.uint8 else frame  # asarray: a video.LazyFrame converts


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
    face_id: the face's number among the clip's faces (``track_faces``: 1, 2, ... by first
        appearance), None for a single-face track.
    span: (first, last) frames in which the face is present, inclusive; None: the whole
        clip. Outside it the face is absent: ``found`` is False and the skin mask is zero
        (boxes are held there only so that every frame has one).
    """

    boxes: np.ndarray
    found: np.ndarray
    fps: float = 30.0
    frame_size: tuple[int, int] | None = None
    skin_model: SkinModel | None = None
    raw_boxes: np.ndarray | None = field(default=None, repr=False)
    face_id: int | None = None
    span: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def slice(self, start: int, stop: int) -> FaceTrack:
        """The track of frames start..stop-1 (for chunked processing)."""
        raw = None if self.raw_boxes is None else self.raw_boxes[start:stop]
        span = None if self.span is None else (self.span[0] - start, self.span[1] - start)
        return FaceTrack(self.boxes[start:stop], self.found[start:stop], self.fps, self.frame_size,
                         self.skin_model, raw, self.face_id, span)

    def present(self, start: int, stop: int) -> np.ndarray:
        """[stop-start] bool: whether the face is present (inside ``span``) in frames start..stop-1."""
        t = np.arange(start, stop)
        if self.span is None:
            return np.ones(len(t), bool)
        return (t >= self.span[0]) & (t <= self.span[1])


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

        Haar boxes snap to a coarse grid, and their jitter at keyframes would wobble the
        mask at pulse frequencies (docs/ARCHITECTURE.md, Decisions, "Face tracking"). ECC
        image alignment (OpenCV ``findTransformECC``, affine) of the face patch against the
        patch of an earlier detection measures where the face really is and how big it is.
        The reference is renewed when the alignment fails or gets weak (new pose, new face).
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
