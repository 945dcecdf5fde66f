"""Saving edited clips without erasing the pulse.

The edited pulse is 0.1-1 % of the pixel value, often below one 8-bit level. Core
SaveVideo converts with ``(frame*255).clamp(0,255).byte()`` (truncation, i.e. a
-0.5 level bias and no dithering) and then libx264 crf 23 yuv420p. Pulse Edit and Pulse
Remove make their change for that path themselves (whole levels where it is under one,
``editor.WHOLE_LEVEL_BELOW``). For other frames, two remedies:

* Save Video (pulse-safe): writes with physiolatent_core.video (temporal dithering,
  crf of your choice, or FFV1 lossless .mkv) into ComfyUI's output folder.
* Pre-quantise for SaveVideo: dithers to k/255 and adds half a level, so core
  SaveVideo's truncation lands exactly on the dithered level k.
"""

from __future__ import annotations

import os

import numpy as np

from ._common import Progress, host_module, check_fps, image_to_numpy, numpy_to_image, output_directory

CATEGORY = "PhysioLatent/Output"
CHUNK_FRAMES = 64
FORMATS = {"mp4 (H.264, dithered)": ".mp4", "mkv (FFV1 lossless)": ".mkv"}


def _save_path(prefix: str, width: int, height: int, ext: str) -> tuple[str, str, str]:
    """(full path, file name, subfolder) of the next free ``prefix_00001_.ext`` in the output folder."""
    out_dir = output_directory()
    folder_paths = host_module("folder_paths")
    if folder_paths is not None:
        folder, name, counter, subfolder, _prefix = folder_paths.get_save_image_path(prefix, out_dir, width, height)
    else:  # host-less: same naming scheme, simplified
        subfolder, name = os.path.split(os.path.normpath(prefix))
        folder = os.path.join(out_dir, subfolder)
        os.makedirs(folder, exist_ok=True)
        counter = 1 + sum(1 for f in os.listdir(folder) if f.startswith(name + "_"))
    os.makedirs(folder, exist_ok=True)
    file = f"{name}_{counter:05}_{ext}"
    return os.path.join(folder, file), file, subfolder


def _audio_track(audio) -> tuple | None:
    """ComfyUI's AUDIO ({"waveform": [B, C, S], "sample_rate": int}) as (waveform [C, S], rate);
    None when there is none (a video without sound gives None or an empty waveform)."""
    if audio is None:
        return None
    wave = audio["waveform"]
    wave = wave.detach().float().cpu().numpy() if hasattr(wave, "detach") else np.asarray(wave, np.float32)
    if wave.ndim == 3:  # a batch: the first clip (Load Video gives one)
        wave = wave[0]
    return None if wave.size == 0 else (wave, int(audio["sample_rate"]))


class SaveVideoPulseSafe:
    DESCRIPTION = ("Saves frames as a video that keeps the edited pulse: temporal dithering instead of "
                   "truncation, H.264 at a crf you choose or FFV1 lossless, into ComfyUI's output folder.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Full path of the written file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames to save."}),
            "fps": ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                              "tooltip": "Frame rate to write (keep the source's, or the pulse changes speed)."}),
            "filename_prefix": ("STRING", {"default": "PhysioLatent/edited",
                                           "tooltip": "Name prefix inside ComfyUI's output folder (may include a subfolder)."}),
            "format": (list(FORMATS), {"default": "mp4 (H.264, dithered)",
                                       "tooltip": "mp4: small, plays everywhere; mkv FFV1: lossless, large, the pulse is exact."}),
            "crf": ("INT", {"default": 18, "min": 0, "max": 51, "step": 1,
                            "tooltip": "H.264 quality (lower = better; 18 keeps an h264-robust edit, 23 is core SaveVideo's). Ignored for mkv."}),
            "dither": ("BOOLEAN", {"default": True,
                                   "tooltip": "Temporal dithering to 8 bit (keeps sub-level pulse changes). Leave on."}),
        }, "optional": {
            "audio": ("AUDIO", {"tooltip": "Sound to keep with the video (e.g. Get Video Components' audio): "
                                           "AAC in mp4, FLAC in mkv."}),
        }}

    def save(self, images, fps, filename_prefix, format, crf, dither, audio=None):
        from physiolatent_core.keys import level_codes
        from physiolatent_core.video import VideoWriter

        fps = check_fps(fps)
        frames = image_to_numpy(images)
        path, file, subfolder = _save_path(filename_prefix, frames.shape[2], frames.shape[1], FORMATS[format])
        starts = range(0, frames.shape[0], CHUNK_FRAMES)
        progress = Progress(len(starts))
        # Frames on 8-bit levels (a loaded video's, Pulse Remove (reversible)'s) are written as
        # those levels: dithering adds nothing to them but moves a few by float rounding,
        # which a restore key would refuse.
        levels = level_codes(frames)
        frames = frames if levels is None else levels
        # Atomic writer: an interrupt (raised by progress.update) leaves no partial file.
        with VideoWriter(path, fps, crf=int(crf), overwrite=False, dither=bool(dither),
                         audio=_audio_track(audio)) as writer:
            for s in starts:
                writer.write(frames[s:s + CHUNK_FRAMES])
                progress.update(1)
        written = writer.path
        return {"ui": {"images": [{"filename": file, "subfolder": subfolder, "type": "output"}],
                       "animated": (True,)},
                "result": (str(written),)}


class PreQuantizeForSaveVideo:
    DESCRIPTION = ("Makes frames survive core SaveVideo's 8-bit truncation: dithers each pixel to a level "
                   "k/255 over time and adds half a level, so (frame*255).byte() gives exactly k. "
                   "Put it right before Create Video, for frames that do not come straight from Pulse Edit / "
                   "Pulse Remove (those already make their change for truncation).")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Frames on (k + 0.5)/255 levels.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Edited frames about to go to Create Video / Save Video."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": True,
                             "tooltip": "Seed of the dither pattern."}),
        }}

    def run(self, images, seed):
        frames = image_to_numpy(images)
        from physiolatent_core.video import prequantize_for_truncation

        return (numpy_to_image(prequantize_for_truncation(frames, seed=int(seed))),)


NODE_CLASS_MAPPINGS = {
    "PhysioLatentSaveVideo": SaveVideoPulseSafe,
    "PhysioLatentPreQuantize": PreQuantizeForSaveVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PhysioLatentSaveVideo": "Save Video (pulse-safe, PhysioLatent)",
    "PhysioLatentPreQuantize": "Pre-quantise for SaveVideo (PhysioLatent)",
}
