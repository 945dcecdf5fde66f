"""Several faces in one clip: each its own mask, its own editor, over its own span.

``face.track_faces`` numbers the faces of a clip and gives each a ``FaceTrack`` with the
span of frames where it is present. Here each face gets what one face gets in a
single-face job:

* :class:`FacesMasker`: one skin mask per face, chunk by chunk, made exclusive (where two
  faces' masks overlap, the pixel belongs to the face whose mask is stronger there), so no
  pixel is edited twice and each face's colour is read from its own skin only;
* :class:`FacesEditor`: one ``editors.ChunkEditor`` per face that has a target
  (``pulse.FaceTargets``), each seeing only the frames of its face's span (:class:`SpanEditor`),
  so its own-pulse estimate and its injected pulse cover the span where the face is;
  faces not named, and faces present for less than ``rppg.MIN_DURATION_S``, are left
  untouched (a face named explicitly that is too short is an error).

Both take and give per-face lists of masks ``[t,H,W]``, in face order. The file pipeline
(``pipeline.py``) and the in-memory :func:`edit_faces` drive them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import InputError
from .pulse import REMOVE, HRTarget, parse_face_targets
from .rppg.hr import MIN_DURATION_S

__all__ = ["FaceEdit", "FacesEditor", "FacesMasker", "SpanEditor", "edit_faces", "exclusive", "mask_span", "run_faces"]


def exclusive(masks: list[np.ndarray]) -> list[np.ndarray]:
    """Per-face masks [t,H,W] with overlaps resolved in place: a pixel covered by several
    faces keeps only the largest value (ties: the lower face)."""
    if len(masks) < 2:
        return masks
    stack = np.stack(masks)
    overlap = (stack > 0).sum(axis=0) > 1
    if overlap.any():
        winner = np.argmax(stack, axis=0)
        for f, mask in enumerate(masks):
            mask[overlap & (winner != f)] = 0.0
    return masks


class FacesMasker:
    """Every face's skin mask, chunk by chunk from frame 0: ``masker(chunk) -> [mask [t,H,W]]``."""

    def __init__(self, tracks, record_bytes: int = 0):
        from .face import SkinMasker

        self.tracks = list(tracks)
        share = record_bytes // max(len(self.tracks), 1)
        self._maskers = [SkinMasker(track, record_bytes=share) for track in self.tracks]

    def __call__(self, chunk: np.ndarray) -> list[np.ndarray]:
        return exclusive([masker(chunk) for masker in self._maskers])

    def again(self) -> FacesMasker:
        """The same masks for a later pass over the clip: replayed if recorded, else rendered again."""
        from .face import SkinMasker

        again = FacesMasker.__new__(FacesMasker)
        again.tracks = self.tracks
        again._maskers = [m.replay() if m.recording else SkinMasker(m.track) for m in self._maskers]
        return again


def chunk_part(span: tuple[int, int] | None, start: int, length: int) -> slice:
    """The frames of a chunk (clip frames ``start .. start+length-1``) inside ``span``
    (first, last; None: the whole clip), as a slice of the chunk (empty: none)."""
    if span is None:
        return slice(0, length)
    a = min(max(span[0] - start, 0), length)
    return slice(a, max(min(span[1] + 1 - start, length), a))


def from_span_start(target, first: int, fps: float):
    """A face's target as its editor sees it: time knots are clip times, its editor counts
    from the face's first frame, so knots are moved back by ``first / fps`` seconds (the HR
    at the span's start becomes the first knot). Other targets are returned as they are."""
    if not isinstance(target, HRTarget) or target.kind != "knots" or first == 0:
        return target
    offset = first / fps
    times, bpm = np.asarray(target.times_s), np.asarray(target.bpm)
    later = times > offset
    knots = [(0.0, float(np.interp(offset, times, bpm)))] + [(t - offset, b) for t, b in zip(times[later], bpm[later])]
    return HRTarget("knots", tuple(b for _, b in knots), tuple(t for t, _ in knots), target.unit)


class SpanEditor:
    """A ``ChunkEditor`` that sees only frames ``span[0] .. span[1]`` of the clip it is given.

    ``observe`` takes the clip's chunks in order; ``apply`` edits the part of a chunk inside
    the span (in place when asked) and leaves the rest as it is.
    """

    def __init__(self, editor, span: tuple[int, int] | None):
        self.editor, self.span = editor, span
        self.chunk_frames = getattr(editor, "chunk_frames", None)
        self._seen = 0

    def _inside(self, start: int, length: int) -> tuple[int, int]:
        """The chunk's frames [a, b) inside the span (a == b: none)."""
        part = chunk_part(self.span, start, length)
        return part.start, part.stop

    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        a, b = self._inside(self._seen, len(frames))
        self._seen += len(frames)
        if b > a:
            self.editor.observe(frames[a:b], face_mask[a:b])

    def plan(self, track=None) -> None:
        if track is not None and self.span is not None:
            track = track.slice(self.span[0], self.span[1] + 1)
        self.editor.plan(track)

    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        a, b = self._inside(start, len(frames))
        if b <= a:
            return frames
        offset = start + a - (self.span[0] if self.span is not None else 0)
        if a == 0 and b == len(frames):
            return self.editor.apply(frames, face_mask, offset, inplace=inplace)
        out = frames if inplace else np.array(frames, dtype=np.float32, copy=True)
        part = self.editor.apply(out[a:b], face_mask[a:b], offset, inplace=True)
        if part is not out[a:b]:
            out[a:b] = part
        return out

    @property
    def info(self) -> dict:
        return self.editor.info


@dataclass(eq=False)  # faces are told apart by identity (their tracks hold arrays)
class FaceEdit:
    """One face of the clip: its track, what is asked of it, and its editor (None: untouched)."""

    track: object  # face.FaceTrack
    target: HRTarget | str | None  # HRTarget, REMOVE or None
    editor: SpanEditor | None = None
    note: str | None = None  # why it is untouched, if it is

    @property
    def face_id(self) -> int:
        return int(self.track.face_id or 1)

    @property
    def frames(self) -> tuple[int, int]:
        """(first, last) frame where the face is present."""
        return self.track.span if self.track.span is not None else (0, len(self.track) - 1)


class FacesEditor:
    """One editor per face with a target, driven together over per-face masks.

    ``make(target) -> ChunkEditor`` builds a face's editor: ``target`` is an HRTarget or
    ``pulse.REMOVE``. ``targets``: anything ``pulse.parse_face_targets`` reads. ``single``:
    the editor can edit one face only (the network): several faces with targets is an
    error saying what to do.
    """

    def __init__(self, tracks, targets, make: Callable, single: bool = False):
        targets = parse_face_targets(targets)
        targets.check_faces([t.face_id or 1 for t in tracks])
        self.targets = targets
        self.faces: list[FaceEdit] = []
        for track in tracks:
            face = FaceEdit(track, targets.for_face(track.face_id or 1))
            first, last = face.frames
            duration_s = (last - first + 1) / track.fps
            if face.target is None:
                face.note = "not named in the per-face targets: left untouched"
            elif duration_s < MIN_DURATION_S:
                if targets.per_face:
                    raise InputError(
                        f"face {face.face_id} is in the clip for {duration_s:.1f} s only (frames {first}-{last}); "
                        f"a pulse needs at least {MIN_DURATION_S:g} s. Leave it out of the per-face targets."
                    )
                face.note = f"present for {duration_s:.1f} s, under the {MIN_DURATION_S:g} s a pulse needs: left untouched"
            self.faces.append(face)
        edited = [f for f in self.faces if f.note is None]
        if not edited:
            raise InputError(f"no face is in the clip for the {MIN_DURATION_S:g} s a pulse needs; "
                             "use a longer clip with a face in view.")
        if single and len(edited) > 1:
            raise InputError(
                f"{len(edited)} faces would be edited, but the PhysioLatent network edits one face per clip: "
                f"name one face (e.g. --target-hr {edited[0].face_id}=75), or use the training-free method, "
                "which edits every face."
            )
        for face in edited:
            span = None if single else face.track.span  # the network edits one face, over the whole clip
            editor = make(from_span_start(face.target, span[0] if span else 0, face.track.fps))
            if hasattr(editor, "follow"):  # it follows the face while observing (removal.PrivacyRemover)
                editor.follow(face.track.slice(span[0], span[1] + 1) if span else face.track)
            face.editor = SpanEditor(editor, span)
        self.chunk_frames = next((f.editor.chunk_frames for f in edited if f.editor.chunk_frames), None)

    def parts(self, start: int, length: int) -> list[slice]:
        """Per face, the frames of a chunk (clip frames ``start``...) where it is present."""
        return [chunk_part(face.track.span, start, length) for face in self.faces]

    @property
    def edited(self) -> list[FaceEdit]:
        return [f for f in self.faces if f.editor is not None]

    def observe(self, frames: np.ndarray, masks: list[np.ndarray]) -> None:
        for face, mask in zip(self.faces, masks):
            if face.editor is not None:
                face.editor.observe(frames, mask)

    def plan(self, tracks=None) -> None:
        for face in self.edited:
            face.editor.plan(face.track)

    def apply(self, frames: np.ndarray, masks: list[np.ndarray], start: int, inplace: bool = False) -> np.ndarray:
        """Edit each face in its own (exclusive) mask region; every editor reads the input's pixels."""
        out = frames if inplace else np.array(frames, dtype=np.float32, copy=True)
        for face, mask in zip(self.faces, masks):
            if face.editor is not None:
                edited = face.editor.apply(out, mask, start, inplace=True)
                if edited is not out:
                    out[...] = edited
        return out

    @property
    def info(self) -> dict:
        """The first edited face's editor info (a single-face job's)."""
        return self.edited[0].editor.info


def run_faces(make: Callable, frames: np.ndarray, fps: float, targets, *, tracks=None, step=None):
    """Observe, plan and apply one editor per face over an in-memory clip, chunk by chunk
    (``editors.run_editor`` for several faces).

    ``make(target) -> ChunkEditor`` (target: an HRTarget or ``pulse.REMOVE``); ``targets``:
    anything ``pulse.parse_face_targets`` reads; ``tracks``: the faces' ``FaceTrack``
    (``face.track_faces(frames, fps)`` when None); ``step``: called after every chunk of each
    pass and after the plan. Returns (edited frames [T,H,W,3] float32, the FacesEditor).
    """
    from .editors import chunk_starts
    from .face import track_faces

    if tracks is None:
        tracks = track_faces(frames, fps)
    tick = step or (lambda: None)
    editor = FacesEditor(tracks, targets, make)
    masker = FacesMasker(tracks, record_bytes=1 << 62)  # the clip is in memory: its masks' grids are small
    starts = chunk_starts(len(frames), editor)
    for s in starts:
        editor.observe(frames[s:s + starts.step], masker(frames[s:s + starts.step]))
        tick()
    editor.plan()
    tick()
    replay, out = masker.again(), np.empty(frames.shape, np.float32)
    for s in starts:
        chunk = frames[s:s + starts.step]
        out[s:s + starts.step] = editor.apply(chunk, replay(chunk), s)
        tick()
    return out, editor


def edit_faces(frames: np.ndarray, fps: float, targets, *, tracks=None, robust_to: str = "h264", seed: int = 0,
               decoy_hr_bpm=None, **kwargs):
    """Edit every face of an in-memory clip, each to its own target (training-free editor).

    frames: float32 [T,H,W,3] 0..1; targets: anything ``pulse.parse_face_targets`` reads
    (``75`` for every face, ``"1=60, 2=remove"``, ``{1: 60}``); ``tracks``: the faces'
    ``FaceTrack`` (``face.track_faces``; tracked here when None); ``decoy_hr_bpm``: what
    removed faces show instead of chaff. Extra keyword arguments go to ``editor.PulseEditor``.

    Returns (edited frames [T,H,W,3], FacesEditor: per face its track, target, editor info).
    """
    from .editor import PulseEditor, _as_frames

    def make(target):
        if target == REMOVE:
            return PulseEditor(fps, "remove", decoy_hr_bpm=decoy_hr_bpm, robust_to=robust_to, seed=seed, **kwargs)
        return PulseEditor(fps, "edit", target=target, robust_to=robust_to, seed=seed, **kwargs)

    return run_faces(make, _as_frames(frames), fps, targets, tracks=tracks)


def mask_span(mask: np.ndarray) -> tuple[int, int] | None:
    """(first, last) frame where a mask [T,H,W] is not empty; None when that is every frame
    (or none): a mask made for one face (``face.skin_mask``, Face Select) is empty where
    the face is absent."""
    on = np.flatnonzero(mask.reshape(len(mask), -1).max(axis=1) > 0)
    if len(on) == 0 or (on[0] == 0 and on[-1] == len(mask) - 1):
        return None
    return int(on[0]), int(on[-1])
