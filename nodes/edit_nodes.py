"""Training-free pulse editing: set the heart rate a video shows, or remove it.

Thin shells over ``physiolatent_core.editor`` (no weights, CPU). The editor works on
the pooled skin colour, so it needs the whole clip (it plans the edit from all frames).
"""

from __future__ import annotations

import json

from physiolatent_core.errors import InputError

from ._common import (Progress, check_duration, check_fps, image_to_numpy, json_summary, mask_to_numpy,
                      numpy_to_image)

CATEGORY = "PhysioLatent/Edit"

_FPS = ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                  "tooltip": "Frame rate of the clip (connect Get Video Components' fps). The pulse is timed with it."})
_ROBUST = (["h264", "lossless"], {"default": "h264",
                                  "tooltip": "h264: make the edit strong enough to survive 8-bit H.264 saving (core "
                                             "SaveVideo); lossless: smallest change (kept at >= 52 dB PSNR), only for "
                                             "FFV1/PNG saving. Both make a change under one grey level in whole "
                                             "levels, which core SaveVideo's 8-bit truncation keeps."})
# h264 is tuned to the path most workflows end in: core SaveVideo (truncation, crf 23); an
# output that will be truncated gets a sub-level change in whole levels (editor.WHOLE_LEVEL_BELOW).
_SAVE_VIDEO = dict(codec_crf=23, codec_quantize="truncate")
_MASK = ("MASK", {"tooltip": "Optional skin mask [T,H,W] of one face (Face Mask, Face Select); without it every "
                            "face is found and edited, each with its own pulse."})
_AMPLITUDE = ("FLOAT", {"default": 0.0, "min": 0.0, "max": 0.03, "step": 0.0005,
                        "tooltip": "0 = automatic: chosen for robust_to and raised where estimators would still "
                                   "misread (see info's injected_rms). Otherwise the fixed RMS of the injected "
                                   "pulse as a fraction of the skin's green value, e.g. 0.0035 = 0.35 %."})
_SEED = ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True,
                 "tooltip": "Seed for heart-rate variability and dithering (same seed, same output)."})


def _run_editor(make, frames, mask, fps, extra: dict, target=None):
    """Run the editor ``make()`` builds over the clip with the library's chunked loops, the
    ones the command line's pipeline also uses. With a mask (Face Mask, Face Select): that
    face, over the frames where its mask is not empty (``editors.run_editor``); without one,
    every face the tracker finds, each with its own editor (``faces.run_faces``; ``target``:
    what every face gets, for the info; default a removal).
    frames [T,H,W,3], mask [T,H,W] or None. Returns (IMAGE, info JSON)."""
    from physiolatent_core.editors import chunk_starts, run_editor
    from physiolatent_core.faces import SpanEditor, mask_span, run_faces

    if mask is None:
        from physiolatent_core.face import track_faces
        from physiolatent_core.pulse import REMOVE

        tracks = track_faces(frames, fps)
        progress = Progress(2 * len(chunk_starts(frames.shape[0], make())) + 2)
        progress.update(1)
        out, editor = run_faces(lambda _: make(), frames, fps, REMOVE if target is None else target, tracks=tracks,
                                step=lambda: progress.update(1))  # one editor per face, as made here
        faces = [{"id": f.face_id, "frames": list(f.frames), "edited": f.editor is not None,
                  **({"note": f.note} if f.note else {}), **({} if f.editor is None else json_summary(f.editor.info))}
                 for f in editor.faces]
        info = {**extra, **json_summary(editor.info), "faces": faces}
        return numpy_to_image(out), json.dumps(info, indent=1, default=str)
    editor = make()
    span = mask_span(mask)
    if hasattr(editor, "follow"):  # a removal whose grid follows the face: the masked face's track
        track = _track_of_mask(frames, fps, mask)
        editor.follow(track.slice(span[0], span[1] + 1) if span else track)
    progress = Progress(2 * len(chunk_starts(frames.shape[0], editor)) + 2)
    progress.update(1)
    out = run_editor(SpanEditor(editor, span) if span else editor, frames, mask, None,
                     step=lambda: progress.update(1))
    info = {**extra, **json_summary(editor.info), **({"frames": list(span)} if span else {})}
    return numpy_to_image(out), json.dumps(info, indent=1, default=str)


class PulseEdit:
    DESCRIPTION = ("Training-free: replaces the pulse hidden in the face's skin colour with one at the "
                   "target heart rate, while the video looks unchanged. Optional trajectory for a "
                   "changing rate.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = ("Edited frames.", "JSON: what the editor did (target, source HR, gains).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The face video frames."}),
                "fps": _FPS,
                "target_hr_bpm": ("FLOAT", {"default": 90.0, "min": 30.0, "max": 240.0, "step": 1.0,
                                            "tooltip": "Heart rate the edited video should show (beats per minute)."}),
                "robust_to": _ROBUST,
                "seed": _SEED,
            },
            "optional": {
                "mask": _MASK,
                "hr_trajectory": ("STRING", {"default": "", "multiline": False,
                                             "tooltip": "Optional changing rate instead of the fixed target: "
                                                        "'70:120' ramps linearly over the clip; "
                                                        "'0s=70, 10s=110' gives (time : bpm) points. Empty = fixed target."}),
                # Last: saved workflows list widget values by position.
                "amplitude": _AMPLITUDE,
                "hrv_rmssd_ms": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 200.0, "step": 1.0,
                                           "tooltip": "0 = mild fixed variability. Otherwise the heart-rate "
                                                      "variability of the injected pulse as RMSSD in ms (resting "
                                                      "adults ~10-100), beat by beat with respiratory sinus "
                                                      "arrhythmia. Reads back within 20 % from ~30 s of video."}),
                "resp_rate": ("STRING", {"default": "", "multiline": False,
                                         "tooltip": "Empty = default shallow breathing at 15/min. Otherwise the "
                                                    "breathing rate the pulse carries, breaths/min (4-40): '14', a "
                                                    "ramp '12:18' or points '0s=12, 30s=18'."}),
            },
        }

    def run(self, images, fps, target_hr_bpm, robust_to, seed, mask=None, hr_trajectory="", amplitude=0.0,
            hrv_rmssd_ms=0.0, resp_rate=""):
        from physiolatent_core.editor import PulseEditor

        fps = check_fps(fps)
        frames = image_to_numpy(images)
        check_duration(frames, fps, "Pulse Edit")
        m = mask_to_numpy(mask, frames)
        target = _target_spec(target_hr_bpm, hr_trajectory)
        rmssd = float(hrv_rmssd_ms) if hrv_rmssd_ms and hrv_rmssd_ms > 0 else None
        resp = (resp_rate or "").strip() or None
        def make():
            return PulseEditor(fps, "edit", target=target, robust_to=robust_to, amplitude=_fixed(amplitude),
                               seed=int(seed), hrv_rmssd_ms=rmssd, resp_rate=resp, **_SAVE_VIDEO)

        return _run_editor(make, frames, m, fps, {"node": "Pulse Edit", "target": str(target), "fps": fps,
                                                  "hrv_rmssd_ms": rmssd, "resp_rate": resp}, target)


class PulseRemove:
    DESCRIPTION = ("Training-free: removes the pulse from the face's skin colour so rPPG reads no "
                   "heart rate (or, with a decoy rate, reads that false rate instead).")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = ("Frames with the pulse removed.", "JSON: what the editor did.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The face video frames."}),
                "fps": _FPS,
                "decoy_hr_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0,
                                           "tooltip": "0 = pure removal (pulse-band noise replaces the pulse). Otherwise a "
                                                      "realistic pulse at this rate replaces it; at least 10 bpm from the true rate."}),
                "robust_to": _ROBUST,
                "seed": _SEED,
            },
            "optional": {"mask": _MASK, "amplitude": _AMPLITUDE, "strength": _STRENGTH},
        }

    def run(self, images, fps, decoy_hr_bpm, robust_to, seed, mask=None, amplitude=0.0, strength="max"):
        fps = check_fps(fps)
        frames = image_to_numpy(images)
        check_duration(frames, fps, "Pulse Remove")
        m = mask_to_numpy(mask, frames)
        decoy = _decoy(decoy_hr_bpm)

        def make():
            return _remover(fps, strength, decoy_hr_bpm=decoy, robust_to=robust_to, amplitude=_fixed(amplitude),
                            seed=int(seed), **_SAVE_VIDEO)

        return _run_editor(make, frames, m, fps, {"node": "Pulse Remove", "decoy_hr_bpm": decoy, "fps": fps,
                                                  "strength": strength})


_STRENGTH = (["max", "strong", "standard"], {
    "default": "max",
    "tooltip": "What removal takes out. standard: the pulse pooled skin colour shows. strong / max: also every small "
               "pulse-band colour change of the skin at every scale, in a grid that follows the face, and the head's "
               "sub-pixel pulse-band motion (max leaves less as content). PSNR >= 45 dB."})


def _track_of_mask(frames, fps: float, mask):
    """The face track (``face.track_faces``) whose boxes hold most of ``mask`` [T,H,W]: the face
    a connected mask (Face Mask, Face Select) is of."""
    import numpy as np

    from physiolatent_core.face import track_faces

    def held(track):
        total = 0.0
        for t, (x0, y0, x1, y1) in enumerate(np.round(track.boxes).astype(int)):
            total += float(mask[t, max(0, y0):max(0, y1), max(0, x0):max(0, x1)].sum())
        return total

    return max(track_faces(frames, fps), key=held)


def _remover(fps: float, strength: str, **pulse_kwargs):
    """The removal editor for ``strength`` (``removal.py``): the pooled editor, alone or after the
    aligned band-stop."""
    from physiolatent_core.editor import PulseEditor
    from physiolatent_core.removal import PrivacyRemover, check_strength

    pooled = PulseEditor(fps, "remove", **pulse_kwargs)
    return pooled if check_strength(strength) == "standard" else PrivacyRemover(fps, pooled, strength)


def _decoy(decoy_hr_bpm: float) -> float | None:
    """The decoy widget: 0 means pure removal (None for the editor)."""
    decoy = float(decoy_hr_bpm) if decoy_hr_bpm > 0 else None
    if decoy is not None and decoy < 30:
        raise InputError(f"decoy_hr_bpm must be 0 (off) or 30..240 bpm; got {decoy_hr_bpm}.")
    return decoy


def _fixed(amplitude: float) -> float | None:
    """The amplitude widget: 0 means automatic (None for the editor)."""
    return float(amplitude) if amplitude and amplitude > 0 else None


def _target_spec(target_hr_bpm: float, trajectory: str):
    """The editor's target as a pulse.HRTarget: the trajectory text read by
    ``pulse.parse_hr_target`` ("70:120" ramp, "0s=70, 5s=120" knots), or the fixed bpm when
    the trajectory is empty."""
    from physiolatent_core.pulse import parse_hr_target

    text = (trajectory or "").strip()
    return parse_hr_target(text if text else float(target_hr_bpm))


NODE_CLASS_MAPPINGS = {"PhysioLatentPulseEdit": PulseEdit, "PhysioLatentPulseRemove": PulseRemove}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PhysioLatentPulseEdit": "Pulse Edit (training-free, PhysioLatent)",
    "PhysioLatentPulseRemove": "Pulse Remove (training-free, PhysioLatent)",
}
