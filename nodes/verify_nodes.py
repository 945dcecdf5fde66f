"""Estimate Heart Rate: read the pulse a video shows, with a JSON report and a plot.

The bpm output comes from one estimator (the ``method`` choice); the report runs
``physiolatent_core.verify.verify`` over every estimator asked for, before and after when
a reference clip is connected.
"""

from __future__ import annotations

import json

import numpy as np

from physiolatent_core import rppg
from physiolatent_core.errors import InputError

from ._common import (Progress, check_duration, check_fps, check_same_shape, image_to_numpy, mask_to_numpy,
                      numpy_to_image, parse_methods)

CATEGORY = "PhysioLatent/Verify"
# The dropdown: every reader of rppg.METHODS, the default (POS) first.
ESTIMATOR_NAMES = ["pos", *(name for name in rppg.METHODS if name != "pos")]


class EstimateHeartRate:
    DESCRIPTION = ("Estimates the heart rate a face video shows (remote PPG), optionally before/after "
                   "against a reference clip, with a JSON report and a waveform + spectrum plot.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("FLOAT", "STRING", "IMAGE")
    RETURN_NAMES = ("hr_bpm", "report", "plot")
    OUTPUT_TOOLTIPS = ("Heart rate read by the chosen estimator (bpm).",
                       "JSON report: HR and SNR per estimator (and for the reference, if given).",
                       "Plot of the pulse waveform and its spectrum.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The face video frames to read."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                                  "tooltip": "Frame rate of the clip (connect Get Video Components' fps)."}),
                "method": (ESTIMATOR_NAMES, {"default": "pos",
                                             "tooltip": "rPPG estimator whose reading goes to the hr_bpm output."}),
                "report_methods": ("STRING", {"default": "pos, chrom, green",
                                              "tooltip": "Estimators for the report: comma-separated names "
                                                         f"({', '.join(ESTIMATOR_NAMES)}), or 'all'."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional skin mask; without it the face is found automatically."}),
                "reference": ("IMAGE", {"tooltip": "Optional unedited clip for a before/after report (same length and size)."}),
                "target_hr_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0,
                                            "tooltip": "Optional: the rate you asked for (0 = none); the report gives the error."}),
            },
        }

    def run(self, images, fps, method, report_methods, mask=None, reference=None, target_hr_bpm=0.0):
        from physiolatent_core.verify import figure_to_image, plot_pulse, verify

        fps = check_fps(fps)
        frames = image_to_numpy(images)
        check_duration(frames, fps, "Estimate Heart Rate")
        methods = parse_methods(report_methods)
        if method not in methods:
            methods = [method] + methods
        ref = None
        if reference is not None:
            ref = image_to_numpy(reference, "reference")
            check_same_shape(ref, frames, "reference", "images")
        m = mask_to_numpy(mask, frames)
        progress = Progress(3)
        if m is None:  # the face of the clip read (the reference shares it: same shape, same scene)
            from physiolatent_core.face import face_mask

            m, _track = face_mask(frames, fps)
        progress.update(1)
        target = float(target_hr_bpm) if target_hr_bpm and target_hr_bpm > 0 else None
        report = verify(frames, fps, mask=m, methods=methods, reference_frames=ref, target_hr_bpm=target)
        hr_bpm = report["hr_bpm"][method]
        if hr_bpm is None:
            raise InputError(f"{method} could not read a heart rate (the skin colour does not change at all): "
                             "check that the mask covers the face and the clip is not a still image.")
        report = {"method": method, "hr_bpm_method": hr_bpm, **report}
        progress.update(1)
        fig = plot_pulse(frames, fps, before=ref, mask=m, method=method, target_hr_bpm=target)
        plot = figure_to_image(fig)[None]
        progress.update(1)
        text = json.dumps(report, indent=1, default=_json_default)
        summary = f"{method}: {hr_bpm:.1f} bpm"
        if ref is not None and report["hr_bpm_before"].get(method) is not None:
            summary += f" (before {report['hr_bpm_before'][method]:.1f} bpm)"
        return {"ui": {"text": [summary]}, "result": (float(hr_bpm), text, numpy_to_image(plot))}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


NODE_CLASS_MAPPINGS = {"PhysioLatentEstimateHR": EstimateHeartRate}
NODE_DISPLAY_NAME_MAPPINGS = {"PhysioLatentEstimateHR": "Estimate Heart Rate (PhysioLatent)"}
