"""Reversible removal: *Pulse Remove (reversible)* writes a restore key into ComfyUI's
output folder, *Pulse Restore* gives the original frames back from it.

Thin shells over ``physiolatent_core.keys`` (the same key format as the command line's
``--key-out``). A key is bound to exact 8-bit frames: the removal returns frames on
8-bit levels, and they restore only as saved losslessly (*Save Video (pulse-safe)*,
mkv) and loaded again, or passed on directly. An H.264 save changes them and the key
then refuses them; the command line (``remove -o OUT.mp4 --key-out``) makes keys for
H.264 files.
"""

from __future__ import annotations

import json
import os

from physiolatent_core.errors import InputError

from ._common import check_duration, check_fps, image_to_numpy, mask_to_numpy, numpy_to_image, output_directory
from .edit_nodes import _AMPLITUDE, _FPS, _MASK, _SEED, _STRENGTH, _decoy, _fixed, _remover, _run_editor

CATEGORY = "PhysioLatent/Edit"
KEY_PREFIX = "PhysioLatent/pulse_key"


def key_file(name: str) -> str:
    """Full path of a key named relative to ComfyUI's output folder; keys are read from
    there only (a node must not open arbitrary files on the server)."""
    root = os.path.realpath(output_directory())
    text = (name or "").strip()
    if not text:
        raise InputError("No key given: connect Pulse Remove (reversible)'s 'key' output, or type the key's file "
                         "name inside ComfyUI's output folder (e.g. PhysioLatent/pulse_key_00001_.json).")
    path = os.path.realpath(os.path.join(root, text))
    if os.path.commonpath([root, path]) != root:
        raise InputError(f"key '{name}' is outside ComfyUI's output folder; keys are read from there only.")
    if not os.path.isfile(path):
        raise InputError(f"key '{name}' was not found in ComfyUI's output folder ({root}).")
    return path


class PulseRemoveReversible:
    DESCRIPTION = ("Removes the pulse like Pulse Remove and writes a restore key (what was removed, compressed "
                   "and AES-GCM encrypted) into ComfyUI's output folder; Pulse Restore gives the original frames "
                   "back from it. Save losslessly (Save Video (pulse-safe), mkv) to restore later. The key is as "
                   "private as the original video: it holds its pulse.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("images", "key", "info")
    OUTPUT_TOOLTIPS = ("Frames with the pulse removed, on 8-bit levels (save them losslessly to restore).",
                       "The key's file name inside the output folder (connect Pulse Restore's key).",
                       "JSON: what the editor did, and the key.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The face video frames."}),
                "fps": _FPS,
                "decoy_hr_bpm": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 240.0, "step": 1.0,
                                           "tooltip": "0 = pure removal; otherwise a realistic pulse at this rate "
                                                      "replaces it (at least 10 bpm from the true rate)."}),
                "robust_to": (["lossless", "h264"], {"default": "lossless",
                                                     "tooltip": "Removal strength: lossless (the key restores "
                                                                "frames saved losslessly) or h264 (stronger)."}),
                "seed": _SEED,
                "key_prefix": ("STRING", {"default": KEY_PREFIX,
                                          "tooltip": "Key file name prefix inside ComfyUI's output folder."}),
            },
            "optional": {"mask": _MASK, "amplitude": _AMPLITUDE, "strength": _STRENGTH},
        }

    def run(self, images, fps, decoy_hr_bpm, robust_to, seed, key_prefix=KEY_PREFIX, mask=None, amplitude=0.0,
            strength="max"):
        from physiolatent_core.keys import write_key_frames
        from physiolatent_core.video import quantize_to_uint8, to_float

        from .save_nodes import _save_path

        fps = check_fps(fps)
        frames = image_to_numpy(images)
        check_duration(frames, fps, "Pulse Remove (reversible)")
        m = mask_to_numpy(mask, frames)
        decoy = _decoy(decoy_hr_bpm)
        # The original as 8-bit levels: exactly the frames when they came from a video.
        original = quantize_to_uint8(frames, "round")
        def make():
            return _remover(fps, strength, decoy_hr_bpm=decoy, robust_to=robust_to, amplitude=_fixed(amplitude),
                            seed=int(seed), codec_crf=23, codec_quantize="dither")

        edited, info = _run_editor(make, frames, m, fps, {"node": "Pulse Remove (reversible)",
                                                            "decoy_hr_bpm": decoy, "fps": fps})
        # Dithered to levels here, so the frames a lossless save writes are the ones the key is bound to.
        removed = quantize_to_uint8(image_to_numpy(edited), "dither", seed=int(seed))
        path, file, subfolder = _save_path(key_prefix, frames.shape[2], frames.shape[1], ".json")
        key = write_key_frames(path, original, removed, meta={"mode": "remove", "fps": fps,
                                                              "decoy_hr": decoy, "made_by": "Pulse Remove (reversible)"})
        name = os.path.join(subfolder, file) if subfolder else file
        info = {**json.loads(info), "key": name, "key_bytes": key["bytes"]}
        return {"ui": {"text": [f"restore key: {name}"]},
                "result": (numpy_to_image(to_float(removed)), name, json.dumps(info, indent=1, default=str))}


class PulseRestore:
    DESCRIPTION = ("Gives back the original frames of a Pulse Remove (reversible) (or of a command-line "
                   "--key-out job whose output was lossless) from its key. The frames must be exactly as the "
                   "removal returned them: passed on directly, or saved losslessly and loaded again.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "info")
    OUTPUT_TOOLTIPS = ("The original frames (8-bit).", "JSON: the key's description.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The removed frames, exactly as the removal returned or saved them."}),
            "key": ("STRING", {"default": "", "tooltip": "The key's file name inside ComfyUI's output folder "
                                                         "(connect Pulse Remove (reversible)'s key)."}),
        }}

    def run(self, images, key):
        from physiolatent_core.keys import on_levels, restore_frames
        from physiolatent_core.video import to_float

        codes = on_levels(image_to_numpy(images), "the images")
        original, header = restore_frames(codes, key_file(key), video="the images")
        info = {"node": "Pulse Restore", "key": key, "frames": len(original), **header}
        return numpy_to_image(to_float(original)), json.dumps(info, indent=1, default=str)


NODE_CLASS_MAPPINGS = {"PhysioLatentPulseRemoveReversible": PulseRemoveReversible,
                       "PhysioLatentPulseRestore": PulseRestore}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PhysioLatentPulseRemoveReversible": "Pulse Remove (reversible, PhysioLatent)",
    "PhysioLatentPulseRestore": "Pulse Restore (PhysioLatent)",
}
