"""Does an edited pulse survive ComfyUI's save paths? Prints a markdown table.

    .venv/bin/python tests/comfyui/measure_save_paths.py [--target 100] [--video PATH]

Edits a clip with the training-free editor (robust_to h264 and lossless), then emulates
each way a ComfyUI user can save it (physiolatent_core.video.encode_decode) and reads
the heart rate back with POS and CHROM inside the face mask:

    float            no saving (upper bound)
    SaveVideo        core CreateVideo -> SaveVideo: (x*255).byte() truncation, libx264 crf 23 yuv420p
    PreQ+SaveVideo   Pre-quantise for SaveVideo, then the same core path
    pulse-safe mp4   Save Video (pulse-safe): temporal dither, libx264 crf 18
    pulse-safe mkv   Save Video (pulse-safe): temporal dither, FFV1 lossless

The editor gets the nodes' settings (*Pulse Edit*: the codec measured on core SaveVideo's
path, truncation + crf 23). Clips: the synthetic subject (10 s, 30 fps, 72 bpm), the same
subject darkened to Monk Skin Tone 10 and, when present, the public
../shared/data/evm_face.mp4 (10 s, 53 bpm).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from physiolatent_core.editor import edit_pulse  # noqa: E402
from physiolatent_core.face import face_mask  # noqa: E402
from physiolatent_core.rppg import ESTIMATORS, extract_rgb  # noqa: E402
from physiolatent_core.rppg.hr import estimate_hr, snr_db  # noqa: E402
from physiolatent_core.video import encode_decode, prequantize_for_truncation, read_video  # noqa: E402

PATHS = {
    "float": lambda x, fps: x,
    "SaveVideo (truncate, crf 23)": lambda x, fps: encode_decode(x, fps, "h264", 23, "truncate"),
    "PreQ + SaveVideo (crf 23)": lambda x, fps: encode_decode(prequantize_for_truncation(x), fps, "h264", 23, "truncate"),
    "pulse-safe mp4 (dither, crf 18)": lambda x, fps: encode_decode(x, fps, "h264", 18, "dither"),
    "pulse-safe mkv (dither, FFV1)": lambda x, fps: encode_decode(x, fps, "ffv1", 0, "dither"),
}


def read_hr(frames, fps, mask, target):
    out = {}
    for m in ("pos", "chrom"):
        pulse = ESTIMATORS[m](extract_rgb(frames, mask), fps)
        out[m] = (estimate_hr(pulse, fps), snr_db(pulse, fps, target))
    return out


def clips(video: str | None):
    from physiolatent_core.synth import synth_subject

    c = synth_subject(duration_s=10.0, fps=30.0, hr_bpm=72.0, size=(240, 320), seed=0)
    yield "synthetic 72 bpm", c.frames, c.fps
    c = synth_subject(duration_s=10.0, fps=30.0, hr_bpm=72.0, size=(240, 320), seed=0, skin_tone=10)
    yield "synthetic 72 bpm, Monk tone 10", c.frames, c.fps
    path = Path(video) if video else REPO.parent / "shared" / "data" / "evm_face.mp4"
    if path.is_file():
        frames, fps = read_video(path, max_frames=300)
        yield f"{path.name}", frames, fps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=float, default=100.0)
    ap.add_argument("--video", default=None)
    args = ap.parse_args()
    print("| clip | edit robust_to | save path | POS bpm | CHROM bpm | POS SNR@target dB |")
    print("|---|---|---|---|---|---|")
    for name, frames, fps in clips(args.video):
        mask, _track = face_mask(frames, fps)
        for robust in ("h264", "lossless"):
            t = time.time()
            edited = edit_pulse(frames, fps, args.target, face_mask=mask, robust_to=robust, seed=0,
                                codec_crf=23, codec_quantize="truncate").frames  # as the nodes set it
            for label, path in PATHS.items():
                r = read_hr(path(edited, fps), fps, mask, args.target)
                print(f"| {name} | {robust} | {label} | {r['pos'][0]:.1f} | {r['chrom'][0]:.1f} | {r['pos'][1]:.1f} |")
            print(f"<!-- {name} {robust}: {time.time() - t:.0f} s -->", file=sys.stderr)


if __name__ == "__main__":
    main()
