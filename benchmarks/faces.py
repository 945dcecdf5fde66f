"""Several faces (issue 17, item 4): does each face read its own target after saving?

Two synthetic subjects side by side (``synth_faces``, own HRs 90 and 72 bpm), optionally
the second entering mid-clip, edited by the command line's job with per-face targets and
saved as H.264 (our writer, crf 18) and as lossless FFV1; and in memory (``faces.edit_faces``,
robust_to h264, tuned for core SaveVideo) then through core SaveVideo's path (8-bit
truncation, libx264 crf 23). Every reader is run on each face's true skin mask over the
frames where the face is present; a reading counts within 3 bpm of the face's target.

    python benchmarks/faces.py                   # 2 x 240x320 tiles, 10 s at 30 fps
    python benchmarks/faces.py --seconds 12 --enter 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physiolatent_core import rppg, video  # noqa: E402
from physiolatent_core.faces import edit_faces  # noqa: E402
from physiolatent_core.pipeline import JobRequest, run_job  # noqa: E402
from physiolatent_core.rppg import ESTIMATORS  # noqa: E402
from physiolatent_core.rppg.hr import estimate_hr  # noqa: E402
from physiolatent_core.synth_faces import synth_faces  # noqa: E402

OWN_HR = (90.0, 72.0)
TARGETS = {1: 60.0, 2: 110.0}
READERS = ("green", "chrom", "pos", "pca", "ica", "lgi", "pbv", "omit")


def readings(frames, clip, index, fps):
    """{reader: bpm} of subject ``index`` (0-based) over the frames where it is present."""
    present = clip.present[index]
    mask = clip.skin_mask(index)[present]
    rgb = rppg.extract_rgb(frames[present], mask)
    return {name: estimate_hr(ESTIMATORS[name](rgb, fps), fps) for name in READERS}


def line(label, clip, frames, fps, targets):
    hits, total, parts = 0, 0, []
    for index in range(len(OWN_HR)):
        want = targets.get(index + 1, OWN_HR[index])
        hr = readings(frames, clip, index, fps)
        ok = [abs(v - want) <= 3.0 for v in hr.values()]
        hits, total = hits + sum(ok), total + len(ok)
        parts.append(f"face {index + 1} (want {want:g}): {sum(ok)}/{len(ok)} "
                     f"[{', '.join(f'{k} {v:.1f}' for k, v in hr.items())}]")
    print(f"{label}: {hits}/{total} readings within 3 bpm", flush=True)
    for part in parts:
        print("   ", part, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--enter", type=float, default=0.0, help="second subject enters at this second (0: from the start)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    clip = synth_faces(OWN_HR, duration_s=args.seconds, fps=args.fps, size=(240, 320),
                       enter_s=(None, args.enter or None), seed=args.seed)
    fps = clip.fps
    spec = ", ".join(f"{k}={v:g}" for k, v in TARGETS.items())
    print(f"two subjects (own {OWN_HR[0]:g} and {OWN_HR[1]:g} bpm), {len(clip.frames)} frames of "
          f"{clip.frames.shape[2]}x{clip.frames.shape[1]} at {fps:g} fps; subject 2 enters at "
          f"{args.enter:g} s; targets {spec}", flush=True)
    line("input", clip, clip.frames, fps, {})
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mkv"
        video.write_video(str(src), clip.frames, fps)
        for suffix in (".mkv", ".mp4"):
            out = Path(tmp) / f"out{suffix}"
            report = run_job(JobRequest(input=src, mode="edit", output=out, target=spec, quiet=True, figure=False))
            saved, _ = video.read_video(str(out))
            line(f"CLI job, {'FFV1 lossless' if suffix == '.mkv' else 'H.264 crf 18 (our writer)'}", clip,
                 saved[:, : clip.frames.shape[1], : clip.frames.shape[2]], fps, TARGETS)
            faces = [{k: f[k] for k in ("id", "box", "frames", "target")} for f in report["faces"]]
            print("    report faces:", json.dumps(faces), f"PSNR {report['verify']['psnr_db']:.1f} dB",
                  f"tracking {report['timings_s']['face_track']:.2f} s", flush=True)
    edited, _ = edit_faces(clip.frames, fps, TARGETS, robust_to="h264", codec_crf=23, codec_quantize="truncate")
    saved = video.encode_decode(edited, fps, crf=23, quantize="truncate")
    line("in memory (h264, for core SaveVideo) -> truncate + crf 23", clip, saved, fps, TARGETS)


if __name__ == "__main__":
    main()
