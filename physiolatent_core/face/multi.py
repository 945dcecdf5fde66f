"""Track every face of a clip: identities, association, gaps, faces entering and leaving.

Policy (what the tracker does, and why)
---------------------------------------
* **One follower per face.** Each face is followed by its own ``FaceTracker`` (``track.py``:
  keyframe detection near its last box, sub-pixel registration, smoothing), so a clip with
  one face is tracked exactly as the single-face tracker tracks it, at the same cost plus
  one whole-frame search a second. A follower keeps only the detection that overlaps its
  last box most (IoU >= 0.1); unlike the single-face tracker it never jumps to the largest
  face after a loss: that face has a follower of its own.
* **New faces.** The first follower finds the first face as ``FaceTracker`` does (the
  largest in the first frame with any face). In that frame, and from then on every
  ``search_s`` (1 s), the whole frame is searched as well; a detection that overlaps no follower's current box (IoU < 0.1, centre
  outside it) starts a new follower there. A face that enters is thus found within about
  ``search_s``, and its track starts where it was found.
* **Identities** are numbered 1, 2, ... by first appearance (the keyframe interval of the
  first detection; faces first seen in the same one left to right), once the clip is
  tracked, so the numbering does not depend on the order followers were started.
* **Gaps.** A follower that finds nothing keeps searching near its last box (then the
  whole frame, and keeps only a detection overlapping the last box) for ``keep_id_s``
  (2 s): a face back at about the same place within that keeps its id (a hand in front of
  it, a turn of the head). Past that the follower stops; if the face comes back it is a
  new face with a new id (nothing says it is the same person).
* **Presence.** Each face's ``FaceTrack`` has a ``span``: from one keyframe interval before
  its first detection to one after its last (clipped to the clip). Outside it the face is
  absent: ``found`` is False and its skin mask is zero, so an edit never paints a face that
  has left.
* **Duplicates and false faces.** Two followers on one face (IoU > 0.5 at a search): the
  later one is dropped. A follower with fewer than ``min_detections`` (3) detections is
  dropped when the clip ends (Haar fires now and then on textured clothing), unless no
  face has more.

``track_faces`` returns the ``FaceTrack`` of every face, by id. Cost: the followers', plus
a whole-frame Haar search every ``search_s``.
"""

from __future__ import annotations

import numpy as np

from ..errors import FaceNotFoundError, InputError
from ..video import LazyFrames
from ._checks import _check_frames
from .detect import _detect_region, _iou, _largest_first
from .skin import _colour_samples
from .track import NO_FACE_ADVICE, FaceTrack, FaceTracker, _as_float

__all__ = ["MultiFaceTracker", "largest_face", "track_faces"]

SEARCH_SCALE_FACTOR = 1.3  # Haar scale step of the whole-frame search for new faces


class _Follower(FaceTracker):
    """A ``FaceTracker`` that follows one face and, once it has one, never takes another."""

    def __init__(self, fps: float, order: int, **kwargs):
        super().__init__(fps, **kwargs)
        self.order = order  # when it was started, for dropping duplicates
        self.stopped = False
        self.keyframe: tuple[int, np.ndarray] | None = None  # (t, RGB float frame) of its last keyframe

    def _keyframe(self, t: int, frame: np.ndarray) -> None:
        frame = _as_float(frame)
        self.keyframe = (t, frame)  # converted once: the new-face search looks at it too
        super()._keyframe(t, frame)

    def _associate(self, boxes: np.ndarray, t: int) -> np.ndarray | None:
        if len(boxes) == 0:
            return None
        if self._last_box is None:
            return _largest_first(boxes)[0]
        iou = _iou(boxes, self._last_box)
        best = int(np.argmax(iou))
        return boxes[best] if iou[best] >= 0.1 else None

    def start_at(self, t: int, frame: np.ndarray, box: np.ndarray, frame_size) -> None:
        """Begin following the face ``box`` [4] detected in ``frame`` (clip frame ``t``, a keyframe)."""
        self.frame_size = tuple(frame_size)
        frame = _as_float(frame)
        self._accept(t, box, frame)
        self._colour.append(_colour_samples(frame, box))
        self._last_key_box = self._last_box
        self._t = t + 1


def _sub(chunk, start: int, stop: int):
    """Frames start..stop-1 of a chunk (an ndarray or ``video.LazyFrames``)."""
    if isinstance(chunk, LazyFrames):
        return LazyFrames(chunk[start:stop])
    return chunk[start:stop]


class MultiFaceTracker:
    """Streaming tracker of every face: feed consecutive chunks, then ``finish()``.

    >>> tracker = MultiFaceTracker(fps)
    >>> for chunk in chunks:          # [t,H,W,3] float 0..1, uint8 or video.LazyFrames
    ...     tracker.update(chunk)
    >>> tracks = tracker.finish()     # [FaceTrack] by face id (1, 2, ...), each with its span

    Args:
        fps: frame rate of the clip.
        search_s: seconds between whole-frame searches for new faces (rounded to whole
            keyframe intervals).
        keep_id_s: a face missing for longer than this loses its follower (and its id).
        min_detections: followers with fewer detections are dropped as false faces.
        **kwargs: ``FaceTracker`` options for every follower (detect_every, smooth_s,
            min_face_px, cascade, min_neighbors, detect_size).
    """

    def __init__(self, fps: float, *, search_s: float = 1.0, keep_id_s: float = 2.0, min_detections: int = 3,
                 **kwargs):
        if not (search_s > 0 and keep_id_s > 0):
            raise InputError(f"search_s and keep_id_s must be > 0 seconds; got {search_s}, {keep_id_s}.")
        self._kwargs = kwargs
        self._followers: list[_Follower] = [_Follower(fps, 0, **kwargs)]
        first = self._followers[0]
        self.fps, self.detect_every = first.fps, first.detect_every
        self.search_every = self.detect_every * max(1, round(search_s * first.fps / self.detect_every))
        self.keep_frames = max(1, round(keep_id_s * first.fps))
        self.min_detections = int(min_detections)
        self.searches = 0  # whole-frame searches for new faces (diagnostics, tests)
        self.frame_size: tuple[int, int] | None = None
        self._t = 0

    @property
    def detect_calls(self) -> int:
        """Frames searched by all followers and the new-face search."""
        return sum(f.detect_calls for f in self._followers) + self.searches

    def update(self, chunk) -> None:
        """Track one chunk [t,H,W,3] of consecutive frames (as ``FaceTracker.update``)."""
        if not isinstance(chunk, LazyFrames):
            chunk = _check_frames(chunk, "chunk")
        if self.frame_size is None:
            self.frame_size = tuple(chunk.shape[1:3])
        elif tuple(chunk.shape[1:3]) != self.frame_size:
            raise InputError(
                f"chunk frame size {chunk.shape[1:3]} differs from earlier chunks {self.frame_size}; "
                "all chunks of a clip must have the same size."
            )
        # Cut the chunk after each search frame, where followers are up to date; until the
        # first face is found, after each keyframe, so that the first search runs in the
        # frame where it was found and faces found together are numbered left to right.
        start = 0
        while start < len(chunk):
            t0 = self._t + start
            step = self.search_every if self.searches else self.detect_every
            search_t = t0 + (-t0) % step
            stop = min(len(chunk), search_t - self._t + 1)
            part = _sub(chunk, start, stop)
            for follower in self._active():
                follower.update(part)
            end_t = self._t + stop - 1
            if end_t == search_t and self._followers[0].detections:
                self._search(search_t, chunk[stop - 1])
            self._retire(end_t)
            start = stop
        self._t += len(chunk)

    def _active(self) -> list[_Follower]:
        return [f for f in self._followers if not f.stopped]

    def _search(self, t: int, frame) -> None:
        """Whole-frame search at keyframe ``t``: start a follower for each face nobody follows."""
        self.searches += 1
        first = self._followers[0]
        seen = [f.keyframe[1] for f in self._active() if f.keyframe is not None and f.keyframe[0] == t]
        frame = seen[0] if seen else _as_float(frame)
        h, w = frame.shape[:2]
        # Coarser scale steps than a follower's search (1.3, not 1.1): a third of the cost,
        # and a face missed now is found at the next search.
        boxes = _detect_region(frame, (0, 0, w, h), min(1.0, first.detect_size / max(h, w)), first.min_face_px,
                               None, first.cascade, first.min_neighbors, scale_factor=SEARCH_SCALE_FACTOR)
        followed = [f._last_box for f in self._active() if f._last_box is not None]
        new = [b for b in boxes if not any(_overlaps(b, k) for k in followed)]
        for box in sorted(new, key=lambda b: b[0]):  # left to right
            follower = _Follower(self.fps, len(self._followers), **self._kwargs)
            follower.start_at(t, frame, box, self.frame_size)
            self._followers.append(follower)
            followed.append(follower._last_box)
        self._drop_duplicates(t)

    def _drop_duplicates(self, t: int) -> None:
        seen = [f for f in self._active() if f._last_t == t]
        for i, a in enumerate(seen):
            for b in seen[i + 1:]:
                if not (a.stopped or b.stopped) and _iou(a._last_box[None], b._last_box)[0] > 0.5:
                    later = max(a, b, key=lambda f: f.order)
                    later.stopped, later.detections = True, {}

    def _retire(self, t: int) -> None:
        """Stop followers whose face has been missing for longer than ``keep_frames``."""
        for f in self._active():
            if f.detections and t - f._last_t > self.keep_frames:
                f.stopped = True
                f._recent.clear()

    def finish(self) -> list[FaceTrack]:
        """Interpolate, smooth and return every face's ``FaceTrack``, by id (see the policy).

        Raises FaceNotFoundError if no face was found in any frame.
        """
        n = self._t
        if n == 0:
            raise InputError("MultiFaceTracker.finish() called before any frames were given to update().")
        found = [f for f in self._followers if f.detections]
        if not found:
            raise FaceNotFoundError(f"no face found in {n} frames; {NO_FACE_ADVICE}.")
        most = max(len(f.detections) for f in found)
        kept = [f for f in found if len(f.detections) >= min(self.min_detections, most)]
        tracks = []
        for f in kept:
            if f.stopped:
                f._t = n  # boxes are held after its last detection; the span ends there
            track = f.finish()
            det_t = np.array(sorted(f.detections))
            first = max(0, int(det_t[0]) - self.detect_every)
            last = min(n - 1, int(det_t[-1]) + self.detect_every)
            track.span = (first, last)
            track.found &= track.present(0, n)
            # First appearance counted in keyframes: a face found in the frames before a keyframe
            # (the first follower searches them) ties with those found at the keyframe.
            keyframe = -(-int(det_t[0]) // self.detect_every)
            tracks.append((keyframe, float(track.boxes[det_t[0], 0]), track))
        tracks.sort(key=lambda k: k[:2])  # first appearance, then left to right
        for face_id, (_, _, track) in enumerate(tracks, start=1):
            track.face_id = face_id
            if track.span == (0, n - 1):
                track.span = None  # present throughout: the whole clip, as a single-face track
        return [track for _, _, track in tracks]


def _overlaps(box: np.ndarray, followed: np.ndarray) -> bool:
    """Whether a detection is (near) a followed face: IoU >= 0.1 or its centre inside."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = followed[0] <= cx <= followed[2] and followed[1] <= cy <= followed[3]
    return inside or _iou(box[None], followed)[0] >= 0.1


def track_faces(frames: np.ndarray, fps: float, **kwargs) -> list[FaceTrack]:
    """Track every face of an in-memory clip: [FaceTrack] by face id (``MultiFaceTracker``).

    Args:
        frames: [T,H,W,3] float 0..1 (or uint8).
        fps: frame rate.
        **kwargs: ``MultiFaceTracker`` / ``FaceTracker`` options.
    """
    tracker = MultiFaceTracker(fps, **kwargs)
    tracker.update(frames)
    return tracker.finish()


def largest_face(tracks: list[FaceTrack]) -> FaceTrack:
    """The face whose median box is largest (ties: the lower id)."""
    def area(track):
        b = np.median(track.boxes[track.found] if track.found.any() else track.boxes, axis=0)
        return (b[2] - b[0]) * (b[3] - b[1])

    return max(tracks, key=lambda tr: (area(tr), -(tr.face_id or 0)))

