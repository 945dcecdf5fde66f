"""The protocol both editing methods share, and the one loop that drives it.

An editor sees a clip three times, chunk by chunk, so that no pass needs the whole clip
in memory::

    for chunk, mask in clip: editor.observe(chunk, mask)      # pass 1: learn the clip
    editor.plan(track)                                        # once: decide the edit
    for chunk, mask in clip: out = editor.apply(chunk, mask, start)   # pass 2: edit

``editor.PulseEditor`` (training-free) and ``network_editor.NetworkEditor`` (the paper's
network) both implement it; the file pipeline (``pipeline.py``), the ComfyUI nodes and
the benchmarks drive them through it, so every caller gets the same frames for the same
clip and settings. An editor that needs its chunks cut a particular way (the network
edits fixed temporal windows) says so in ``chunk_frames``; callers cut the clip that way.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from .errors import InputError

#: Frames per chunk where the editor has no preference: small enough for progress and
#: interrupts between steps, large enough that per-chunk overhead does not show.
DEFAULT_CHUNK_FRAMES = 64


class ChunkEditor(Protocol):
    """What the pipeline, the nodes and the benchmarks need of an editor."""

    #: Frames per ``apply`` call the editor needs (None: any length). Every chunk but the
    #: last must have exactly this many frames, in order.
    chunk_frames: int | None

    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        """frames [t,H,W,3] float32 0..1, face_mask [t,H,W] 0..1; chunks in clip order."""

    def plan(self, track=None) -> None:
        """Decide the edit from everything observed. ``track``: the clip's ``face.FaceTrack``
        (the network crops the face with it; the training-free editor works on the masks)."""

    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        """Edit frames ``start .. start+t`` of the clip; returns [t,H,W,3] float32."""

    @property
    def info(self) -> dict:
        """JSON-able facts about the edit (method, strength, HRs), for reports."""

    # Optional: ``follow(track)``, called with the clip's face track before the first observe by
    # editors that need it while observing (removal.PrivacyRemover's grid follows the face).


def chunk_starts(num_frames: int, editor: ChunkEditor) -> range:
    """Where the chunks of an ``num_frames``-frame clip start, cut as ``editor`` needs."""
    return range(0, num_frames, getattr(editor, "chunk_frames", None) or DEFAULT_CHUNK_FRAMES)


def run_editor(editor: ChunkEditor, frames: np.ndarray, face_mask: np.ndarray, track=None,
               step: Callable[[], None] | None = None, inplace: bool = False) -> np.ndarray:
    """Observe, plan and apply ``editor`` over an in-memory clip, chunk by chunk.

    frames [T,H,W,3] float32 0..1, face_mask [T,H,W] -> edited frames [T,H,W,3] float32
    (a new array, or ``frames`` itself edited when ``inplace``). ``step`` is called after every chunk of each pass and after the plan
    (``2 * len(chunk_starts(T, editor)) + 1`` calls): progress bars and interrupts.
    """
    if face_mask.shape != frames.shape[:3]:
        raise InputError(f"face mask shape {face_mask.shape} does not match frames {frames.shape[:3]}: "
                         "make the mask from these frames.")
    tick = step or (lambda: None)
    if track is not None and hasattr(editor, "follow"):  # it follows the face while observing (removal.py)
        editor.follow(track)
    starts = chunk_starts(len(frames), editor)
    size = starts.step
    for s in starts:
        editor.observe(frames[s:s + size], face_mask[s:s + size])
        tick()
    editor.plan(track)
    tick()
    out = frames if inplace else np.empty(frames.shape, np.float32)
    for s in starts:
        chunk = frames[s:s + size]
        edited = editor.apply(chunk, face_mask[s:s + size], s, inplace=inplace)
        if edited is not chunk:  # an editor that edited in place has nothing to copy
            out[s:s + size] = edited
        tick()
    return out
