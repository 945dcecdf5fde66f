"""Estimate Heart Rate and Estimate Vital Signs: read the pulse a video shows, with a JSON
report and a plot.

The bpm output comes from one estimator (the ``method`` choice); the report runs
``physiolatent_core.verify.verify`` over every estimator asked for, before and after when
a reference clip is connected. *Estimate Vital Signs* reads the beats, HRV and breathing
rate (``verify.verify_vitals``) and plots the inter-beat intervals and the breathing signal.
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


class EstimateVitalSigns:
    DESCRIPTION = ("Reads heart-rate variability (RMSSD, SDNN, pNN50, LF/HF) and the breathing rate from the "
                   "pulse of a face video, each with a quality flag, optionally before/after against a reference "
                   "clip, with a plot of the inter-beat intervals and the breathing signal. RMSSD needs ~30 s, "
                   "LF/HF 50 s and more.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("FLOAT", "FLOAT", "FLOAT", "STRING", "IMAGE")
    RETURN_NAMES = ("hr_bpm", "rmssd_ms", "resp_rate_bpm", "report", "plot")
    OUTPUT_TOOLTIPS = ("Heart rate from the mean inter-beat interval (bpm; 0 if no beats were found).",
                       "RMSSD of the inter-beat intervals (ms; 0 if unreadable).",
                       "Breathing rate (breaths/min; 0 if unreadable).",
                       "JSON report: HRV and breathing (with quality flags), before/after and against targets.",
                       "Plot of the inter-beat intervals and the fused breathing signal.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The face video frames to read."}),
                "fps": ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                                  "tooltip": "Frame rate of the clip (connect Get Video Components' fps)."}),
                "method": (["auto", *ESTIMATOR_NAMES], {"default": "auto",
                                                        "tooltip": "rPPG estimator whose pulse the beats are timed "
                                                                   "on; auto: the one that reads this clip with the "
                                                                   "highest SNR (the least timing jitter)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Optional skin mask; without it the face is found automatically."}),
                "reference": ("IMAGE", {"tooltip": "Optional unedited clip for a before/after report (same length and size)."}),
                "target_rmssd_ms": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 200.0, "step": 1.0,
                                              "tooltip": "Optional: the RMSSD you asked for (0 = none)."}),
                "target_resp_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 40.0, "step": 0.5,
                                               "tooltip": "Optional: the breathing rate you asked for, breaths/min "
                                                          "(0 = none)."}),
            },
        }

    def run(self, images, fps, method, mask=None, reference=None, target_rmssd_ms=0.0, target_resp_rate=0.0):
        from physiolatent_core.rppg.vitals import AUTO_METHODS, vital_signs
        from physiolatent_core.verify import figure_to_image, plot_vitals, verify_vitals

        fps = check_fps(fps)
        frames = image_to_numpy(images)
        check_duration(frames, fps, "Estimate Vital Signs")
        ref = None
        if reference is not None:
            ref = image_to_numpy(reference, "reference")
            check_same_shape(ref, frames, "reference", "images")
        m = mask_to_numpy(mask, frames)
        progress = Progress(3)
        if m is None:
            from physiolatent_core.face import face_mask

            m, _track = face_mask(frames, fps)
        progress.update(1)
        methods = list(AUTO_METHODS) if method == "auto" else [method]
        traces = rppg.read_traces(frames, m, methods)
        traces_ref = None if ref is None else rppg.read_traces(ref, m, methods)
        report = verify_vitals(traces, fps, traces_before=traces_ref, method=method,
                               rmssd_target_ms=target_rmssd_ms if target_rmssd_ms > 0 else None,
                               resp_target_bpm=target_resp_rate if target_resp_rate > 0 else None)
        progress.update(1)
        after = vital_signs(traces, fps, method=method)
        before = None if traces_ref is None else vital_signs(traces_ref, fps, method=method)
        plot = figure_to_image(plot_vitals(after, fps, before=before,
                                           title=f"{after.method.upper()}: beats and breathing"))
        progress.update(1)
        hrv, breathing = report["after"]["hrv"], report["after"]["breathing"]
        summary = (f"HR {hrv['hr_bpm'] or 0:.1f} bpm, RMSSD {hrv['rmssd_ms'] or 0:.0f} ms [{hrv['quality']}], "
                   f"breathing {breathing['rate_bpm'] or 0:.1f}/min [{breathing['quality']}]")
        text = json.dumps(report, indent=1, default=_json_default)
        result = (float(hrv["hr_bpm"] or 0.0), float(hrv["rmssd_ms"] or 0.0), float(breathing["rate_bpm"] or 0.0),
                  text, numpy_to_image(plot[None]))
        return {"ui": {"text": [summary]}, "result": result}


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


NODE_CLASS_MAPPINGS = {"PhysioLatentEstimateHR": EstimateHeartRate, "PhysioLatentEstimateVitals": EstimateVitalSigns}
NODE_DISPLAY_NAME_MAPPINGS = {"PhysioLatentEstimateHR": "Estimate Heart Rate (PhysioLatent)",
                              "PhysioLatentEstimateVitals": "Estimate Vital Signs (PhysioLatent)"}
