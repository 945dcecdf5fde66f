"""Synthetic Subject: a face clip with a known pulse, so the pack can be tried with no footage."""

from __future__ import annotations

from ._common import check_fps, numpy_to_image, numpy_to_mask

CATEGORY = "PhysioLatent/Input"
PHOTO_TONE = "as photographed (~5)"
SKIN_TONES = [PHOTO_TONE, "6", "7", "8", "9", "10"]  # Monk Skin Tone scale


class SyntheticSubject:
    """Renders a talking-head-like clip from a real face photo with a ground-truth pulse."""

    DESCRIPTION = (
        "Renders a short face clip (a real face photo shipped with scikit-image) whose skin "
        "carries a known heart-rate pulse. Use it to try the pack without footage: its true "
        "bpm output is the ground truth an estimator should read."
    )
    CATEGORY = CATEGORY
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE", "FLOAT", "FLOAT", "MASK")
    RETURN_NAMES = ("images", "fps", "true_hr_bpm", "skin_mask")
    OUTPUT_TOOLTIPS = (
        "The frames [T,H,W,3].",
        "Frame rate of the clip (connect it wherever fps is asked).",
        "Mean heart rate rendered into the skin, in beats per minute.",
        "Ground-truth skin mask of the rendered face.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "duration_s": ("FLOAT", {"default": 10.0, "min": 2.0, "max": 60.0, "step": 0.5,
                                         "tooltip": "Clip length in seconds (HR needs several beats: 8 s or more reads well)."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 5.0, "max": 120.0, "step": 0.5,
                                  "tooltip": "Frame rate of the rendered clip."}),
                "hr_bpm": ("FLOAT", {"default": 72.0, "min": 40.0, "max": 180.0, "step": 1.0,
                                     "tooltip": "Heart rate rendered into the skin (beats per minute)."}),
                "width": ("INT", {"default": 320, "min": 64, "max": 1024, "step": 8,
                                  "tooltip": "Frame width in pixels."}),
                "height": ("INT", {"default": 240, "min": 64, "max": 1024, "step": 8,
                                   "tooltip": "Frame height in pixels."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True,
                                 "tooltip": "Seed for head motion, noise and heart-rate variability."}),
            },
            "optional": {
                "skin_tone": (SKIN_TONES, {"default": PHOTO_TONE,
                                           "tooltip": "Monk Skin Tone scale tone of the face, ears and neck (darker "
                                                      "skin: the same relative pulse is fewer grey levels)."}),
            },
        }

    def render(self, duration_s, fps, hr_bpm, width, height, seed, skin_tone=PHOTO_TONE):
        from physiolatent_core.errors import InputError
        from physiolatent_core.synth import synth_subject

        if skin_tone not in SKIN_TONES:
            raise InputError(f"skin_tone must be one of {SKIN_TONES}, got {skin_tone!r}.")
        fps = check_fps(fps)
        clip = synth_subject(duration_s=float(duration_s), fps=fps, hr_bpm=float(hr_bpm),
                             size=(int(height), int(width)), seed=int(seed),
                             skin_tone=None if skin_tone == PHOTO_TONE else int(skin_tone))
        return (numpy_to_image(clip.frames), float(clip.fps), float(clip.hr_bpm),
                numpy_to_mask(clip.skin_mask))


NODE_CLASS_MAPPINGS = {"PhysioLatentSyntheticSubject": SyntheticSubject}
NODE_DISPLAY_NAME_MAPPINGS = {"PhysioLatentSyntheticSubject": "Synthetic Subject (PhysioLatent)"}
