"""Quality benchmark of the training-free editor (issue: foundation acceptance).

For synthetic subjects (ground truth known) and the real videos in ../shared/data, edit to
55, 75, 100, 130 bpm and a 70->120 ramp, remove the pulse, then judge every output after
each save path a user takes:

* ``lossless``  temporal-dither to 8 bit (what our .mkv / PNG writer stores)
* ``h264_crf18`` dither + libx264 crf 18 yuv420p (our default .mp4)
* ``h264_crf23`` dither + libx264 crf 23
* ``comfy_save`` ComfyUI's core SaveVideo: truncation to 8 bit + libx264 crf 23 yuv420p
* ``comfy_prequant`` the shipped workflows' path: *Pre-quantise for SaveVideo*
  (``video.prequantize_for_truncation``), then core SaveVideo

The editor is told the path (``robust_to='lossless'`` for lossless, ``'h264'`` otherwise).
Estimators see the saved video through two regions of interest: our skin mask, and a plain
face box enlarged 1.5x as rPPG-Toolbox crops it (no knowledge of our mask). The eight
estimators of ``rppg.ESTIMATORS`` read the ROI's mean colour; SSR (``rppg.ssr``) reads its
pixels' colour distribution, through the skin mask and through the box's skin-coloured
pixels (a fixed Y'CbCr rule, as SSR's paper segments skin), since a box's background and
hair would dominate a pixel distribution.

Prints one JSON line per case and a summary table; writes everything to --out.

    python benchmarks/quality.py --out out/quality            # full run (~15-25 min on 2 cores)
    python benchmarks/quality.py --quick --out out/quality    # 2 synthetic clips, 1 real video
    python benchmarks/quality.py --only synth --out out/q_synth & python benchmarks/quality.py --only real --out out/q_real
    python benchmarks/quality.py --summarise out/q_synth/cases.jsonl out/q_real/cases.jsonl
    python benchmarks/quality.py --only synth --skin-tones 8 10 --out out/q_tones   # darker skin (Monk scale)
    python benchmarks/quality.py --only real --exposure 0.4 --out out/q_dim          # dim recordings
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physiolatent_core import editor, face, rppg, video  # noqa: E402
from physiolatent_core.pulse import hr_curve, parse_hr_target  # noqa: E402
from physiolatent_core.rppg.hr import estimate_hr, snr_db  # noqa: E402
from physiolatent_core.rppg.ssr import colour_moments  # noqa: E402
from physiolatent_core.synth import synth_subject  # noqa: E402
from physiolatent_core.verify import psnr_db, ssim  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = [55, 75, 100, 130, "70:120"]
PATHS = {
    "lossless": dict(robust_to="lossless", codec=None, quantize="dither"),
    "h264_crf18": dict(robust_to="h264", codec="h264", crf=18, quantize="dither"),
    "h264_crf23": dict(robust_to="h264", codec="h264", crf=23, quantize="dither"),
    "comfy_save": dict(robust_to="h264", codec="h264", crf=23, quantize="truncate"),
    "comfy_prequant": dict(robust_to="h264", codec="h264", crf=23, quantize="truncate", prequantize=True),
}


def save_path(frames, fps, path):
    """What the user's file holds, read back as float frames."""
    spec = PATHS[path]
    if spec.get("prequantize"):
        frames = video.prequantize_for_truncation(frames)
    if spec["codec"] is None:
        return video.quantize_to_uint8(frames, method=spec["quantize"]).astype(np.float32) / 255.0
    return video.encode_decode(frames, fps, codec=spec["codec"], crf=spec["crf"], quantize=spec["quantize"])


def box_mask(frames, fps, scale=1.5):
    """rPPG-Toolbox-style ROI: the tracked face box enlarged 1.5x, as a hard mask."""
    track = face.track_face(frames, fps)
    t, h, w = frames.shape[:3]
    mask = np.zeros((t, h, w), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(track.boxes):
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0) / 2
        mask[i, max(0, int(cy - half)) : int(cy + half), max(0, int(cx - half)) : int(cx + half)] = 1.0
    return mask


def skin_colour(frames):
    """[T,H,W] 1 where a pixel's Y'CbCr lies in the classic skin range (Chai & Ngan 1999:
    Cr 133-173, Cb 77-127), else 0: skin as a reader that knows no face model segments it."""
    out = np.zeros(frames.shape[:3], np.float32)
    for i, frame in enumerate(frames):
        ycrcb = cv2.cvtColor(np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2YCrCb)
        cr, cb = ycrcb[..., 1], ycrcb[..., 2]
        out[i] = (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)
    return out


def read_hrs(frames, fps, masks):
    """HR (whole clip), pulse and traces per reader per ROI: {roi: {method: (hr, pulse, traces)}},
    ``traces`` the ROI's ``rppg.ColourTraces`` (mean colour; colour moments for SSR)."""
    out = {}
    for roi, mask in masks.items():
        pixels = mask if roi == "skin" else mask * skin_colour(frames)
        traces = rppg.ColourTraces(rppg.extract_rgb(frames, mask), colour_moments(frames, pixels))
        out[roi] = {}
        for name in rppg.METHODS:
            pulse = rppg.pulse_of(name, traces, fps)
            out[roi][name] = (estimate_hr(pulse, fps), pulse, traces)
    return out


def target_error(method, traces, pulse, fps, target, window_s=6.0):
    """|HR read - target|: whole clip for a constant target. For a ramp, the estimator runs
    on each 6 s window of the colour trace (how time-varying HR is read; PCA and ICA choose
    their component per window) and the error is the mean over windows."""
    spec = parse_hr_target(target)
    curve = hr_curve(spec, len(pulse), fps)
    if np.ptp(curve) < 1e-6:
        return abs(estimate_hr(pulse, fps) - curve[0])
    n, step = int(window_s * fps), int(fps)
    errors = []
    for start in range(0, len(traces) - n + 1, step):
        hr = estimate_hr(rppg.pulse_of(method, traces[start : start + n], fps), fps)
        errors.append(abs(hr - curve[start : start + n].mean()))
    return float(np.mean(errors))


def clips(quick: bool, only: str | None = None, real_seconds: float = 12.0, skin_tones=(None,)):
    """(name, frames, fps, true_hr or None). ``skin_tones``: render each synthetic subject
    with each of these Monk scale tones (None: the photo's own, about tone 5); names of
    darkened subjects end in ``_mst<tone>``."""
    configs = [
        dict(seed=s, hr_bpm=hr, motion_px=mo, pulse_amplitude=amp)
        for s, (hr, mo, amp) in enumerate(
            [(62, 1.0, 0.003), (70, 2.0, 0.004), (84, 3.0, 0.002), (95, 1.5, 0.005),
             (58, 4.0, 0.003), (110, 2.0, 0.004), (76, 0.5, 0.0015), (66, 2.5, 0.006)]
        )
    ]
    for cfg in configs[: 2 if quick else None] if only != "real" else []:
        for tone in skin_tones:
            clip = synth_subject(duration_s=12.0, fps=30.0, size=(240, 320), skin_tone=tone, **cfg)
            suffix = "" if tone is None else f"_mst{tone}"
            yield f"synth_s{cfg['seed']}_hr{cfg['hr_bpm']}{suffix}", clip.frames, clip.fps, clip.hr_bpm
    if SHARED.is_dir() and only != "synth":
        for path in sorted(SHARED.glob("*.mp4"))[: 1 if quick else None]:
            frames, fps = video.read_video(path, max_frames=int(real_seconds * 30))  # first seconds (at 30 fps)
            yield path.stem, frames, fps, None


def skin_tone(text: str) -> int | None:
    """``--skin-tones`` value: "photo" (None) or a Monk scale tone."""
    return None if text == "photo" else int(text)


def run(out_dir: Path, quick: bool, only: str | None = None, names=None, real_seconds: float = 12.0, paths=None,
        skin_tones=(None,), exposure: float = 1.0):
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    log = open(out_dir / "cases.jsonl", "w")
    for name, frames, fps, true_hr in clips(quick, only, real_seconds, skin_tones):
        if names and not any(n in name for n in names):
            continue
        if exposure != 1.0:  # a dimmer recording of the same scene: fewer grey levels, same 8-bit camera
            frames = video.quantize_to_uint8(frames * exposure, "round").astype(np.float32) / 255.0
            name = f"{name}_exp{exposure:g}"
        t0 = time.time()
        skin, _ = face.face_mask(frames, fps)
        masks_in = {"skin": skin, "box": box_mask(frames, fps)}
        before = read_hrs(frames, fps, masks_in)
        if true_hr is None:  # real video: the consensus of the eight mean-colour estimators on our skin ROI
            true_hr = float(np.median([before["skin"][method][0] for method in rppg.ESTIMATORS]))
        for path, spec in PATHS.items():
            if paths and path not in paths:
                continue
            reference = save_path(frames, fps, path)  # the original through the same path
            cases = [("edit", t) for t in TARGETS] + [("remove", None)]
            for mode, target in cases:
                codec = dict(codec_crf=spec.get("crf", 23), codec_quantize=spec["quantize"])
                if mode == "edit":
                    res = editor.edit_pulse(frames, fps, target, face_mask=skin, robust_to=spec["robust_to"], **codec)
                else:
                    res = editor.remove_pulse(frames, fps, face_mask=skin, robust_to=spec["robust_to"], **codec)
                saved = save_path(res.frames, fps, path)
                after = read_hrs(saved, fps, {"skin": skin, "box": masks_in["box"]})
                row = dict(clip=name, path=path, mode=mode, target=target, true_hr_bpm=true_hr,
                           psnr_db=psnr_db(saved, reference), ssim=ssim(saved, reference)[0],
                           injected_rms=res.info.get("injected_rms"), whole_levels=res.info.get("whole_levels"))
                for roi, reads in after.items():
                    for method, (hr, pulse, traces) in reads.items():
                        key = f"{roi}/{method}"
                        if mode == "edit":
                            row[key] = dict(hr=hr, err=target_error(method, traces, pulse, fps, target))
                        else:
                            orig_pulse = before[roi][method][1]
                            row[key] = dict(hr=hr, err_true=abs(hr - true_hr),
                                            snr_in=snr_db(orig_pulse, fps, true_hr),
                                            snr_out=snr_db(pulse, fps, true_hr))
                rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
    log.close()
    summary = summarise(rows)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


def summarise(rows):
    summary = {}
    for path in PATHS:
        edits = [r for r in rows if r["path"] == path and r["mode"] == "edit"]
        removes = [r for r in rows if r["path"] == path and r["mode"] == "remove"]
        if not edits and not removes:
            continue  # a path this run left out (--paths)
        keys = [k for k in edits[0] if "/" in k] if edits else []
        s = {"edit_cases": len(edits), "remove_cases": len(removes)}
        for roi in ("skin", "box"):
            every = [k for k in keys if k.startswith(roi)]
            # The aggregates count the eight mean-colour estimators (comparable with runs
            # before SSR was read); SSR has its own entries in the *_by_method tables.
            ks = [k for k in every if k.split("/")[1] in rppg.ESTIMATORS]
            ok = [r[k]["err"] <= 3.0 for r in edits for k in ks]
            s[f"edit_within_3bpm_{roi}"] = float(np.mean(ok)) if ok else None
            s[f"edit_worst_err_{roi}"] = max((r[k]["err"] for r in edits for k in ks), default=None)
            s[f"edit_within_3bpm_{roi}_by_method"] = {
                k.split("/")[1]: float(np.mean([r[k]["err"] <= 3.0 for r in edits])) for k in every
            }
            # [readings with SNR drop >= 15 dB, readings with a measurable pulse before]
            s[f"remove_snr_drop_ge_15db_{roi}_by_method"] = {
                k.split("/")[1]: [sum(r[k]["snr_in"] - r[k]["snr_out"] >= 15 for r in removes if r[k]["snr_in"] > 0),
                                  sum(r[k]["snr_in"] > 0 for r in removes)]
                for k in (every if removes else [])
            }
            # SNR drop only where the input has a measurable pulse at the true HR (SNR_in > 0 dB);
            # a clip whose pulse is already below the noise cannot lose 15 dB of it.
            drop = [r[k]["snr_in"] - r[k]["snr_out"] for r in removes for k in ks if r[k]["snr_in"] > 0]
            s[f"remove_min_snr_drop_db_{roi}"] = min(drop, default=None)
            s[f"remove_median_snr_drop_db_{roi}"] = float(np.median(drop)) if drop else None
            s[f"remove_cases_with_pulse_{roi}"] = len(drop)
            s[f"remove_snr_drop_ge_15db_{roi}"] = float(np.mean([d >= 15 for d in drop])) if drop else None
            near = [r[k]["err_true"] < 5.0 for r in removes for k in ks]
            s[f"remove_reads_true_within_5bpm_{roi}"] = float(np.mean(near)) if near else None
        s["psnr_min_db"] = min((r["psnr_db"] for r in edits + removes), default=None)
        s["ssim_min"] = min((r["ssim"] for r in edits + removes), default=None)
        summary[path] = s
    return summary


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/quality"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("synth", "real"), help="run one half (e.g. in two processes)")
    ap.add_argument("--clips", nargs="+", help="only clips whose name contains one of these")
    ap.add_argument("--summarise", nargs="+", type=Path, help="only merge cases.jsonl files into a summary")
    ap.add_argument("--paths", nargs="+", choices=list(PATHS), help="only these save paths (default: all)")
    ap.add_argument("--real-seconds", type=float, default=12.0, help="length read from each real video (default 12)")
    ap.add_argument("--skin-tones", nargs="+", default=[None], type=skin_tone,
                    help="render the synthetic subjects with these Monk Skin Tone scale tones (5-10; "
                         "'photo': as photographed, about tone 5; default: photo only)")
    ap.add_argument("--exposure", type=float, default=1.0,
                    help="scale every clip by this factor and round to 8 bit again (e.g. 0.4: a dim recording)")
    ap.add_argument("--no-codec-compensation", action="store_true",
                    help="ablation: the editor does not measure or compensate the codec's colour response")
    args = ap.parse_args()
    if args.no_codec_compensation:
        editor.PulseEditor._codec_gain = lambda self: np.ones(3)
    if args.summarise:
        rows = [json.loads(line) for f in args.summarise for line in open(f)]
        print(json.dumps(summarise(rows), indent=2))
    else:
        run(args.out, args.quick, args.only, args.clips, args.real_seconds, args.paths, args.skin_tones,
            args.exposure)
