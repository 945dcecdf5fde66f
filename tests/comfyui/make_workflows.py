"""Builds workflows/*.json (UI format) and records the core node list.

    python tests/comfyui/make_workflows.py                 # rewrite workflows/*.json
    python tests/comfyui/make_workflows.py --record-core http://127.0.0.1:8188
        # refresh tests/data/core_object_info.json from a running ComfyUI

Widget values are given by input name; the builder lays them out in the order the
frontend expects (from /object_info), so the JSON stays consistent with the nodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workflow_tools import (CORE_OBJECT_INFO, REPO, Workflow, check_workflow, core_object_info,  # noqa: E402
                            pack_object_info, trim_core_info)

WORKFLOWS = REPO / "workflows"
# Core node types the workflows use; recorded from the host's /object_info.
CORE_NODES = ["LoadVideo", "GetVideoComponents", "CreateVideo", "SaveVideo", "CLIPLoader", "UNETLoader",
              "VAELoader", "CLIPTextEncode", "KSampler", "ModelSamplingSD3", "Wan22ImageToVideoLatent",
              "VAEDecode", "PreviewImage", "PreviewAny", "LoadImage"]
VIDEO_FILE = "face.mp4"  # the file name LoadVideo shows; users upload their own clip

COL = 380  # horizontal spacing of node columns


def _verify_tail(w: Workflow, x: float, y: float, images, fps, reference=None, target=0.0, title="After",
                 **widgets):
    """Estimate Heart Rate + previews of its report and plot."""
    est = w.add("PhysioLatentEstimateHR", (x, y), title=f"Estimate Heart Rate ({title})",
                target_hr_bpm=float(target), **widgets)
    w.link(images[0], images[1], est, "images")
    w.link(fps[0], fps[1], est, "fps")
    if reference is not None:
        w.link(reference[0], reference[1], est, "reference")
    rep = w.add("PreviewAny", (x + COL, y), title=f"Report ({title})")
    w.link(est, "report", rep, "source")
    plot = w.add("PreviewImage", (x + COL, y + 300), title=f"Pulse plot ({title})")
    w.link(est, "plot", plot, "images")
    return est


def _load_video(w: Workflow, x: float, y: float):
    load = w.add("LoadVideo", (x, y), file=VIDEO_FILE)
    comps = w.add("GetVideoComponents", (x, y + 340))
    w.link(load, "VIDEO", comps, "video")
    return comps


def _save_core(w: Workflow, x: float, y: float, images, fps, prefix: str, prequantize: bool = False, audio=None):
    """[Pre-quantise ->] Create Video -> core Save Video. *Pulse Edit* / *Pulse Remove* with
    robust_to h264 already make their change for core SaveVideo's truncation (whole levels
    where it is under a level), and Pre-quantise after them measured slightly worse on light
    skin (BENCHMARKS run U); other frames (the network's) get Pre-quantise. ``audio``: the
    loaded video's sound, kept in the saved file."""
    if prequantize:
        pre = w.add("PhysioLatentPreQuantize", (x, y))
        w.link(images[0], images[1], pre, "images")
        images = (pre, "images")
    create = w.add("CreateVideo", (x, y + 160))
    w.link(images[0], images[1], create, "images")
    w.link(fps[0], fps[1], create, "fps")
    if audio is not None:
        w.link(audio[0], audio[1], create, "audio")
    save = w.add("SaveVideo", (x, y + 320), filename_prefix=prefix)
    w.link(create, "VIDEO", save, "video")


NOTE_SAVE = ("**Saving.** The edit is a sub-1 % colour change. *Save Video (pulse-safe)* writes a "
             "dithered H.264 (crf 18) or lossless FFV1 file. Core *Save Video* (8-bit truncation, crf 23) "
             "keeps it too when *Pulse Edit* / *Pulse Remove* use robust_to **h264** and nothing changes "
             "the frames in between.")
NOTE_SAVE_NETWORK = ("**Saving.** The edit is a sub-1 % colour change. *Save Video (pulse-safe)* writes a "
                     "dithered H.264 (crf 18) or lossless FFV1 file. If you use core *Save Video*, keep "
                     "*Pre-quantise for SaveVideo* right before *Create Video*, or 8-bit truncation eats the pulse.")


def synthetic_edit_verify(info) -> dict:
    w = Workflow(info)
    w.note((0, -380), "# Synthetic subject -> edit -> verify\n\nNeeds **no files**: a face with a known "
           "72 bpm pulse is rendered, its pulse is replaced by **100 bpm** (training-free), and *Estimate "
           "Heart Rate* reads it before and after.\n\nChange *target_hr_bpm* in *Pulse Edit* and queue again; "
           "the 'After' report should read your target.\n\n" + NOTE_SAVE, size=(520, 320))
    syn = w.add("PhysioLatentSyntheticSubject", (0, 40), duration_s=10.0, fps=30.0, hr_bpm=72.0, width=320,
                height=240, seed=0)
    _verify_tail(w, COL, 40, (syn, "images"), (syn, "fps"), title="Before")
    edit = w.add("PhysioLatentPulseEdit", (COL, 420), target_hr_bpm=100.0)
    w.link(syn, "images", edit, "images")
    w.link(syn, "fps", edit, "fps")
    w.link(syn, "skin_mask", edit, "mask")
    info_node = w.add("PreviewAny", (COL, 760), title="Edit info")
    w.link(edit, "info", info_node, "source")
    _verify_tail(w, 3 * COL, 420, (edit, "images"), (syn, "fps"), reference=(syn, "images"), target=100.0)
    safe = w.add("PhysioLatentSaveVideo", (3 * COL, 40), filename_prefix="PhysioLatent/synthetic_100bpm")
    w.link(edit, "images", safe, "images")
    w.link(syn, "fps", safe, "fps")
    _save_core(w, 5 * COL, 40, (edit, "images"), (syn, "fps"), "PhysioLatent/synthetic_100bpm_core")
    return w.to_json()


def training_free_edit(info) -> dict:
    w = Workflow(info)
    w.note((0, -340), "# Training-free heart-rate edit\n\n1. *Load Video*: upload a face video (a few "
           "seconds or more, one main face, little motion).\n2. *Pulse Edit*: set **target_hr_bpm** (or a "
           "trajectory like `70:120`).\n3. Queue. The reports show the rate before and after.\n\nNo model "
           "files needed (CPU).\n\n" + NOTE_SAVE, size=(520, 320))
    comps = _load_video(w, 0, 0)
    mask = w.add("PhysioLatentFaceMask", (COL, 0))
    w.link(comps, "images", mask, "images")
    w.link(comps, "fps", mask, "fps")
    edit = w.add("PhysioLatentPulseEdit", (2 * COL, 0), target_hr_bpm=90.0)
    w.link(comps, "images", edit, "images")
    w.link(comps, "fps", edit, "fps")
    w.link(mask, "mask", edit, "mask")
    _verify_tail(w, COL, 420, (comps, "images"), (comps, "fps"), title="Before")
    _verify_tail(w, 3 * COL, 0, (edit, "images"), (comps, "fps"), reference=(comps, "images"), target=90.0)
    safe = w.add("PhysioLatentSaveVideo", (3 * COL, 700), filename_prefix="PhysioLatent/edited")
    w.link(edit, "images", safe, "images")
    w.link(comps, "fps", safe, "fps")
    w.link(comps, "audio", safe, "audio")
    _save_core(w, 5 * COL, 0, (edit, "images"), (comps, "fps"), "PhysioLatent/edited_core", audio=(comps, "audio"))
    return w.to_json()


def hr_removal(info) -> dict:
    w = Workflow(info)
    w.note((0, -340), "# Remove the heart-rate signal\n\nUpload a face video in *Load Video* and queue. "
           "*Pulse Remove* suppresses the pulse in the skin colour (optionally leaving a faint **decoy** rate); "
           "the report compares the SNR of the pulse before and after (lower after = removed).\n\nNo model "
           "files needed.\n\n" + NOTE_SAVE, size=(520, 300))
    comps = _load_video(w, 0, 0)
    rem = w.add("PhysioLatentPulseRemove", (COL, 0))
    w.link(comps, "images", rem, "images")
    w.link(comps, "fps", rem, "fps")
    _verify_tail(w, 2 * COL, 0, (rem, "images"), (comps, "fps"), reference=(comps, "images"))
    safe = w.add("PhysioLatentSaveVideo", (2 * COL, 700), filename_prefix="PhysioLatent/removed")
    w.link(rem, "images", safe, "images")
    w.link(comps, "fps", safe, "fps")
    w.link(comps, "audio", safe, "audio")
    return w.to_json()


def verify_video(info) -> dict:
    w = Workflow(info)
    w.note((0, -300), "# Verify a video's heart rate\n\nUpload a face video in *Load Video* and queue. "
           "*Estimate Heart Rate* finds the face, extracts the remote-PPG pulse with several estimators "
           "(*report_methods*, or `all`) and shows the rate, the SNR and a waveform/spectrum plot.\n\n"
           "Needs at least ~4 s of video; 10 s or more reads better.", size=(520, 260))
    comps = _load_video(w, 0, 0)
    est = _verify_tail(w, COL, 0, (comps, "images"), (comps, "fps"), title="Video", report_methods="all")
    bpm = w.add("PreviewAny", (COL, 420), title="Heart rate (bpm)")
    w.link(est, "hr_bpm", bpm, "source")
    return w.to_json()


def paper_pipeline(info) -> dict:
    w = Workflow(info)
    w.note((0, -520), "# PhysioLatent network (paper pipeline)\n\nNeeds three model files:\n\n"
           "- `ComfyUI/models/vae/cogvideox_vae.safetensors`: the CogVideoX 3D causal VAE (its "
           "`vae/diffusion_pytorch_model.safetensors`, renamed)\n"
           "- `ComfyUI/models/physiolatent/physiolatent_adapter.safetensors`: the trained adapter "
           "(`python -m physiolatent_core.train`, see docs/COMFYUI.md)\n"
           "- `ComfyUI/models/text_encoders/clip_l.safetensors`: CLIP-L text encoder (*Load CLIP*, type "
           "`stable_diffusion`); or delete *Load CLIP* to use the numeric HR condition\n\n"
           "Upload a face video, set **target_hr_bpm** in *Heart-Rate Prompt* (the paper trains 60-120) and "
           "queue. A GPU is strongly advised.\n\n" + NOTE_SAVE_NETWORK, size=(620, 440))
    comps = _load_video(w, 0, 0)
    crop = w.add("PhysioLatentFaceCrop", (COL, 0), size=256)
    w.link(comps, "images", crop, "images")
    w.link(comps, "fps", crop, "fps")
    vae = w.add("PhysioLatentLoadVAE", (COL, 380), vae_name="cogvideox_vae.safetensors")
    adapter = w.add("PhysioLatentLoadAdapter", (COL, 600), adapter_name="physiolatent_adapter.safetensors")
    w.link(vae, "vae", adapter, "vae")
    clip = w.add("CLIPLoader", (0, 760), clip_name="clip_l.safetensors", type="stable_diffusion")
    prompt = w.add("PhysioLatentHRPrompt", (COL, 800), target_hr_bpm=90.0)
    w.link(clip, "CLIP", prompt, "clip")
    enc = w.add("PhysioLatentVAEEncode", (2 * COL, 0))
    w.link(crop, "crops", enc, "images")
    w.link(vae, "vae", enc, "vae")
    fuse = w.add("PhysioLatentFusion", (2 * COL, 200))
    w.link(enc, "latent", fuse, "latent")
    w.link(prompt, "condition", fuse, "condition")
    w.link(adapter, "adapter", fuse, "adapter")
    dec = w.add("PhysioLatentFiLMDecode", (2 * COL, 420))
    w.link(fuse, "latent", dec, "latent")
    w.link(prompt, "condition", dec, "condition")
    w.link(adapter, "adapter", dec, "adapter")
    w.link(vae, "vae", dec, "vae")
    unc = w.add("PhysioLatentFaceUncrop", (3 * COL, 0))
    w.link(dec, "images", unc, "crops")
    w.link(crop, "crop", unc, "crop")
    w.link(comps, "images", unc, "original")
    comp = w.add("PhysioLatentFaceComposite", (3 * COL, 220))
    w.link(comps, "images", comp, "original")
    w.link(unc, "images", comp, "edited")
    w.link(crop, "mask", comp, "mask")
    _verify_tail(w, 4 * COL, -420, (comps, "images"), (comps, "fps"), title="Before")
    _verify_tail(w, 4 * COL, 200, (comp, "images"), (comps, "fps"), reference=(comps, "images"), target=90.0)
    _save_core(w, 3 * COL, 520, (comp, "images"), (comps, "fps"), "PhysioLatent/network_90bpm", prequantize=True,
               audio=(comps, "audio"))
    return w.to_json()


WAN_PROMPT = ("Close-up portrait video of a calm woman looking straight into the camera, face fully visible, "
              "soft even studio light, neutral background, she breathes slowly and blinks, the camera is static.")
WAN_NEGATIVE = ("blurry, low quality, jpeg artifacts, distorted face, deformed, extra limbs, subtitles, "
                "static image, overexposed, fast motion, camera shake")


def wan_t2v_then_edit(info) -> dict:
    w = Workflow(info)
    w.note((0, -560), "# Text-to-video (Wan 2.2 TI2V 5B) -> pulse edit -> verify\n\nThe generation part is "
           "ComfyUI's own Wan 2.2 5B text-to-video layout. Model files (as in ComfyUI's Wan 2.2 template):\n\n"
           "- `models/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors`\n"
           "- `models/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors`\n"
           "- `models/vae/wan2.2_vae.safetensors`\n\n"
           "Wan 2.2 5B renders 24 fps; *fps* on the PhysioLatent nodes and *Create Video* is set to 24 "
           "(change all together if you change it). 121 frames = 5 s, enough for a heart rate. Keep a face "
           "in the prompt. Generated faces carry little or no pulse; *Pulse Edit* gives them one at "
           "**target_hr_bpm**.\n\n" + NOTE_SAVE, size=(620, 480))
    unet = w.add("UNETLoader", (0, 0), unet_name="wan2.2_ti2v_5B_fp16.safetensors")
    clip = w.add("CLIPLoader", (0, 160), clip_name="umt5_xxl_fp8_e4m3fn_scaled.safetensors", type="wan")
    vae = w.add("VAELoader", (0, 340), vae_name="wan2.2_vae.safetensors")
    shift = w.add("ModelSamplingSD3", (COL, 0), shift=8.0)
    w.link(unet, "MODEL", shift, "model")
    pos = w.add("CLIPTextEncode", (COL, 140), title="Positive prompt", text=WAN_PROMPT)
    neg = w.add("CLIPTextEncode", (COL, 380), title="Negative prompt", text=WAN_NEGATIVE)
    w.link(clip, "CLIP", pos, "clip")
    w.link(clip, "CLIP", neg, "clip")
    lat = w.add("Wan22ImageToVideoLatent", (COL, 620), width=1280, height=704, length=121, batch_size=1)
    w.link(vae, "VAE", lat, "vae")
    ks = w.add("KSampler", (2 * COL, 0), seed=42, steps=20, cfg=5.0, sampler_name="uni_pc", scheduler="simple",
               denoise=1.0)
    w.link(shift, "MODEL", ks, "model")
    w.link(pos, "CONDITIONING", ks, "positive")
    w.link(neg, "CONDITIONING", ks, "negative")
    w.link(lat, "LATENT", ks, "latent_image")
    dec = w.add("VAEDecode", (2 * COL, 340))
    w.link(ks, "LATENT", dec, "samples")
    w.link(vae, "VAE", dec, "vae")
    edit = w.add("PhysioLatentPulseEdit", (3 * COL, 0), fps=24.0, target_hr_bpm=80.0)
    w.link(dec, "IMAGE", edit, "images")
    est = w.add("PhysioLatentEstimateHR", (4 * COL, 0), title="Estimate Heart Rate (After)", fps=24.0,
                target_hr_bpm=80.0)
    w.link(edit, "images", est, "images")
    w.link(dec, "IMAGE", est, "reference")
    rep = w.add("PreviewAny", (5 * COL, 0), title="Report (After)")
    w.link(est, "report", rep, "source")
    plot = w.add("PreviewImage", (5 * COL, 300), title="Pulse plot (After)")
    w.link(est, "plot", plot, "images")
    create = w.add("CreateVideo", (3 * COL, 420), fps=24.0)
    w.link(edit, "images", create, "images")
    save = w.add("SaveVideo", (3 * COL, 580), filename_prefix="PhysioLatent/wan_80bpm")
    w.link(create, "VIDEO", save, "video")
    return w.to_json()


def hrv_breathing_edit(info) -> dict:
    w = Workflow(info)
    w.note((0, -380), "# Set heart rate, HRV and breathing\n\nNeeds **no files**: a 40 s synthetic face is "
           "rendered, and *Pulse Edit* gives it a pulse at **72 bpm** whose beats vary with an RMSSD of **45 ms** "
           "(respiratory sinus arrhythmia plus a slower rhythm) and carry breathing at **14 breaths/min** "
           "(beat rate, amplitude and baseline). *Estimate Vital Signs* reads the beats and the breathing "
           "before and after, with a plot of the inter-beat intervals and the breathing signal.\n\nRMSSD "
           "needs about 30 s of video to read within 20 %; LF/HF 50 s.\n\n" + NOTE_SAVE, size=(520, 360))
    syn = w.add("PhysioLatentSyntheticSubject", (0, 40), duration_s=40.0, fps=30.0, hr_bpm=64.0, width=256,
                height=192, seed=0)
    before = w.add("PhysioLatentEstimateVitals", (COL, 40), title="Estimate Vital Signs (Before)")
    w.link(syn, "images", before, "images")
    w.link(syn, "fps", before, "fps")
    w.link(syn, "skin_mask", before, "mask")
    rep = w.add("PreviewAny", (2 * COL, 40), title="Vital signs (Before)")
    w.link(before, "report", rep, "source")
    edit = w.add("PhysioLatentPulseEdit", (COL, 420), target_hr_bpm=72.0, hrv_rmssd_ms=45.0, resp_rate="14")
    w.link(syn, "images", edit, "images")
    w.link(syn, "fps", edit, "fps")
    w.link(syn, "skin_mask", edit, "mask")
    after = w.add("PhysioLatentEstimateVitals", (3 * COL, 420), title="Estimate Vital Signs (After)",
                  target_rmssd_ms=45.0, target_resp_rate=14.0)
    w.link(edit, "images", after, "images")
    w.link(syn, "fps", after, "fps")
    w.link(syn, "skin_mask", after, "mask")
    w.link(syn, "images", after, "reference")
    rep = w.add("PreviewAny", (4 * COL, 420), title="Vital signs (After)")
    w.link(after, "report", rep, "source")
    plot = w.add("PreviewImage", (4 * COL, 720), title="Beats and breathing (before grey, after red)")
    w.link(after, "plot", plot, "images")
    safe = w.add("PhysioLatentSaveVideo", (3 * COL, 40), filename_prefix="PhysioLatent/hrv_breathing")
    w.link(edit, "images", safe, "images")
    w.link(syn, "fps", safe, "fps")
    return w.to_json()


def reversible_removal(info) -> dict:
    w = Workflow(info)
    w.note((0, -420), "# Reversible removal: remove the pulse, keep a key, restore it\n\nNeeds **no files**: a "
           "synthetic face (72 bpm) stands in for your video (use *Load Video* -> *Get Video Components* "
           "instead). *Pulse Remove (reversible)* removes the pulse and writes a **restore key** "
           "(`PhysioLatent/pulse_key_*.json` in the output folder: what was removed, compressed and "
           "AES-GCM encrypted). *Save Video (pulse-safe)* saves the removed frames as lossless **mkv**; "
           "*Pulse Restore* turns them, with the key, back into the original frames (bit-exactly), and the "
           "reports read the pulse after removal and after restoring.\n\nTo restore later: load the saved "
           "mkv and give *Pulse Restore* the key's file name. An H.264 save changes the frames and the key "
           "refuses them. **Keep the key private: it holds the original pulse.**", size=(560, 400))
    syn = w.add("PhysioLatentSyntheticSubject", (0, 40), duration_s=10.0, fps=30.0, hr_bpm=72.0, width=320,
                height=240, seed=0)
    rem = w.add("PhysioLatentPulseRemoveReversible", (COL, 40))
    w.link(syn, "images", rem, "images")
    w.link(syn, "fps", rem, "fps")
    w.link(syn, "skin_mask", rem, "mask")
    safe = w.add("PhysioLatentSaveVideo", (COL, 480), filename_prefix="PhysioLatent/removed_reversible",
                 format="mkv (FFV1 lossless)")
    w.link(rem, "images", safe, "images")
    w.link(syn, "fps", safe, "fps")
    _verify_tail(w, 2 * COL, 40, (rem, "images"), (syn, "fps"), reference=(syn, "images"), title="Removed")
    restore = w.add("PhysioLatentPulseRestore", (2 * COL, 480))
    w.link(rem, "images", restore, "images")
    w.link(rem, "key", restore, "key")
    info_node = w.add("PreviewAny", (2 * COL, 700), title="Key")
    w.link(restore, "info", info_node, "source")
    _verify_tail(w, 4 * COL, 40, (restore, "images"), (syn, "fps"), reference=(syn, "images"), target=72.0,
                 title="Restored")
    return w.to_json()


BUILDERS = {
    "synthetic_edit_verify": synthetic_edit_verify,
    "training_free_edit": training_free_edit,
    "hr_removal": hr_removal,
    "verify_video": verify_video,
    "paper_pipeline": paper_pipeline,
    "wan_t2v_then_edit": wan_t2v_then_edit,
    "hrv_breathing_edit": hrv_breathing_edit,
    "reversible_removal": reversible_removal,
}


def object_info() -> dict:
    return {**core_object_info(), **pack_object_info()}


def build_all() -> None:
    info = object_info()
    WORKFLOWS.mkdir(exist_ok=True)
    for name, build in BUILDERS.items():
        ui = build(info)
        problems = check_workflow(ui, info)
        if problems:
            raise SystemExit(f"{name}: " + "\n".join(problems))
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=1, ensure_ascii=False) + "\n")
        print("wrote", WORKFLOWS / f"{name}.json")


def record_core(url: str) -> None:
    with urllib.request.urlopen(url.rstrip("/") + "/object_info", timeout=60) as r:
        full = json.load(r)
    missing = [n for n in CORE_NODES if n not in full]
    if missing:
        raise SystemExit(f"host lacks {missing}")
    trimmed = {n: trim_core_info(full[n]) for n in CORE_NODES}
    CORE_OBJECT_INFO.write_text(json.dumps(trimmed, indent=1) + "\n")
    print("wrote", CORE_OBJECT_INFO)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record-core", metavar="URL", help="record core nodes from a running ComfyUI")
    args = ap.parse_args()
    if args.record_core:
        record_core(args.record_core)
    else:
        build_all()
