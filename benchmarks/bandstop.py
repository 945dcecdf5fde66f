"""Issue 21, item 1: does a brute-force temporal band-stop of the face box take the pulse
from every reader?

Every pixel of the face box (the union of the tracked face boxes over the clip, plus a
margin) is filtered over time with a zero-phase band-stop (scipy.signal Butterworth,
``sosfiltfilt``) over the heart-rate band; then all readers (``rppg.METHODS``) read the
clip again through our skin mask (rendered on the original frames, so both readings
look at the same pixels). If colour is what the readers follow, nothing should remain
within 5 bpm of the original reading and the SNR at the original HR should fall. The
frames are filtered in memory (not saved): this measures the colour, not a codec.

    python benchmarks/bandstop.py                      # every clip of ../shared/data
    python benchmarks/bandstop.py a.mp4 --band 0.7 3.0 --out rows.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physiolatent_core.face import SkinMasker  # noqa: E402
from physiolatent_core.pipeline import Source, track_pass  # noqa: E402
from physiolatent_core.rppg import METHODS, ColourTraces, read_traces  # noqa: E402
from physiolatent_core.verify import FidelityMeter, verify_traces  # noqa: E402
from physiolatent_core.video import probe_video  # noqa: E402

ROWS_PER_BLOCK = 16  # box rows filtered at once: sosfiltfilt's float64 copy stays small


def face_box(track, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The union of the track's boxes, grown by ``margin`` of its size, inside the frame."""
    boxes = np.asarray(track.boxes, float)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    return (max(0, int(x0 - dx)), max(0, int(y0 - dy)), min(width, int(math.ceil(x1 + dx))),
            min(height, int(math.ceil(y1 + dy))))


def band_stop(box_frames: np.ndarray, fps: float, band_hz: tuple[float, float], order: int) -> np.ndarray:
    """Zero-phase Butterworth band-stop over time of every pixel; float32 [T, h, w, 3] in place."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(order, band_hz, btype="bandstop", fs=fps, output="sos")
    for r in range(0, box_frames.shape[1], ROWS_PER_BLOCK):
        block = box_frames[:, r : r + ROWS_PER_BLOCK]
        block[...] = sosfiltfilt(sos, block, axis=0)
    return box_frames


def measure(clip: Path, band_hz, order: int, margin: float, fixed_mask: bool = False) -> dict:
    t0 = time.perf_counter()
    info = probe_video(clip)
    source = Source(clip, info)
    track = track_pass(source)
    x0, y0, x1, y1 = face_box(track, info.width, info.height, margin)
    masker, before, crops, mask_sum = SkinMasker(track), [], [], 0.0
    for chunk in source.chunks("reading"):
        mask = masker(chunk)
        before.append(read_traces(chunk, mask, METHODS))
        crops.append(chunk[:, y0:y1, x0:x1].copy())
        mask_sum = mask_sum + mask.sum(axis=0)
    inside = float(mask_sum[y0:y1, x0:x1].sum() / max(mask_sum.sum(), 1e-9))  # the mask's weight in the box
    if fixed_mask:  # one mask for every frame (the clip's mean): no motion of the mask itself
        mean_mask, before = (mask_sum / sum(len(c) for c in crops)).astype(np.float32), []
    fps = info.fps
    filtered = band_stop(np.concatenate(crops), fps, band_hz, order)
    del crops
    masker, after, at = SkinMasker(track), [], 0
    meter = FidelityMeter(len(filtered))
    for chunk in source.chunks("reading again"):
        mask = masker(chunk)  # rendered on the original frames: the same pixels as before
        if fixed_mask:
            mask = np.broadcast_to(mean_mask, mask.shape)
            before.append(read_traces(chunk, mask, METHODS))
        edited = chunk.copy()
        edited[:, y0:y1, x0:x1] = np.clip(filtered[at : at + len(chunk)], 0, 1)
        after.append(read_traces(edited, mask, METHODS))
        meter.update(edited, chunk)
        at += len(chunk)
    checked = verify_traces(ColourTraces.join(after), fps, methods=list(METHODS),
                            traces_before=ColourTraces.join(before))
    hr_b, hr_a = checked["hr_bpm_before"], checked["hr_bpm"]
    snr_b, snr_a = checked["snr_db_before"], checked["snr_db_after"]
    return {
        "clip": clip.name, "size": f"{info.width}x{info.height}", "fps": round(fps, 3), "frames": len(filtered),
        "box": [x0, y0, x1, y1], "band_hz": list(band_hz), "order": order, "fixed_mask": fixed_mask,
        "mask_weight_in_box": inside,
        "hr_before": hr_b, "hr_after": hr_a, "snr_before_db": snr_b, "snr_after_db": snr_a,
        "within_5bpm": [n for n in METHODS if math.isfinite(hr_a[n]) and abs(hr_a[n] - hr_b[n]) <= 5.0],
        "psnr_db": meter.psnr_db, "ssim": meter.ssim, "seconds": round(time.perf_counter() - t0, 1),
    }


def table(rows: list[dict]) -> str:
    head = "| clip | PSNR / SSIM | " + " | ".join(METHODS) + " |"
    lines = [head, "|---|---|" + "---|" * len(METHODS)]
    for r in rows:
        cells = []
        for n in METHODS:
            drop = (None if r["snr_before_db"][n] is None or r["snr_after_db"][n] is None
                    else r["snr_after_db"][n] - r["snr_before_db"][n])
            mark = " **(within 5)**" if n in r["within_5bpm"] else ""
            cells.append(f"{r['hr_before'][n]:.0f} → {r['hr_after'][n]:.0f}{mark}"
                         + ("" if drop is None else f", {drop:+.1f} dB"))
        lines.append(f"| {r['clip']} | {r['psnr_db']:.1f} dB / {r['ssim']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", type=Path, help="videos (default: ../shared/data/*.mp4)")
    ap.add_argument("--band", nargs=2, type=float, default=(0.6, 3.3), metavar=("LOW_HZ", "HIGH_HZ"),
                    help="the band stopped (default 0.6-3.3 Hz: 36-198 bpm, the readers' 40-180 with room "
                         "for the filter's edges)")
    ap.add_argument("--order", type=int, default=4, help="Butterworth order (default 4; zero-phase doubles it)")
    ap.add_argument("--margin", type=float, default=0.15, help="face box margin, fraction of its size")
    ap.add_argument("--fixed-mask", action="store_true",
                    help="read through one mask for every frame (the clip's mean skin mask) instead of the "
                         "tracked one: tells what the mask's own motion adds")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    clips = args.clips or sorted((ROOT.parent / "shared" / "data").glob("*.mp4"))
    if not clips:
        raise SystemExit("no clips: give video files, or put them in ../shared/data")
    rows = []
    for clip in clips:
        rows.append(measure(clip, tuple(args.band), args.order, args.margin, args.fixed_mask))
        print(json.dumps({k: rows[-1][k] for k in ("clip", "within_5bpm", "psnr_db", "seconds")}), file=sys.stderr)
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
