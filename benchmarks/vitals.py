"""Vital-signs benchmark (issue 19): HRV and breathing, read back and set.

Two parts, each printing one JSON line per case and writing them to ``--out``:

* ``synth``: the readers (``rppg.vitals``) on synthetic subjects with known beat times
  (``synth.synth_subject(rmssd_ms=..., resp_rate=...)``), through the skin mask, lossless
  (8-bit, as rendered) and after H.264 crf 23 (dithered, our writer), at 30 fps over clip
  lengths, plus the RMSSD timing floor (a subject with RMSSD 0) with and without sub-frame
  peak interpolation, at 30 and 60 fps.
* ``real``: every clip in ``../shared/data`` (whole, at most ``--max-s`` seconds) through
  the whole job (``pipeline.run_job``, POS readings): a plain HR edit, the same edit with
  an RMSSD and breathing target saved lossless (.mkv) and as H.264 crf 23 (.mp4), and a
  removal (.mkv); the saved file is read back.

    python benchmarks/vitals.py --only synth --out out/vitals_synth
    python benchmarks/vitals.py --only real --out out/vitals_real
    python benchmarks/vitals.py --summarise out/vitals_synth/cases.jsonl out/vitals_real/cases.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physiolatent_core.rppg import extract_rgb  # noqa: E402
from physiolatent_core.rppg.beats import detect_beats, hrv_metrics  # noqa: E402
from physiolatent_core.rppg.vitals import vital_signs  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SYNTH_CASES = [(45.0, 14.0), (25.0, 10.0), (70.0, 18.0)]  # (RMSSD ms, breaths/min)
REAL_TARGET = dict(hr=72.0, rmssd=45.0, resp=14.0)


def _emit(out: Path, case: dict) -> None:
    print(json.dumps(case), flush=True)
    with open(out / "cases.jsonl", "a") as f:
        f.write(json.dumps(case) + "\n")


def synth(out: Path, lengths, seeds: int) -> None:
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import encode_decode

    for duration in lengths:
        for seed in range(seeds):
            rmssd, resp = SYNTH_CASES[seed % len(SYNTH_CASES)]
            clip = synth_subject(duration_s=duration, fps=30.0, hr_bpm=72.0, size=(120, 160), seed=100 + seed,
                                 rmssd_ms=rmssd, resp_rate=resp, motion_px=1.0)
            truth = hrv_metrics(clip.beat_times_s)["rmssd_ms"]
            for path in ("lossless", "h264_crf23"):
                frames = clip.frames if path == "lossless" else encode_decode(clip.frames, 30.0, crf=23,
                                                                              quantize="dither")
                v = vital_signs(extract_rgb(frames, clip.skin_mask), 30.0)
                _emit(out, {"part": "synth", "duration_s": duration, "seed": seed, "path": path,
                            "rmssd_target_ms": rmssd, "rmssd_true_ms": truth, "resp_target_bpm": resp,
                            **v.as_dict()})
    floor(out)


def floor(out: Path) -> None:
    """Timing floor: perfectly regular beats (RMSSD 0), read from the pulse itself, at rates
    whose period is no whole number of frames (at 72 bpm and 30 fps every beat would fall at
    the same place between frames and hide the rounding)."""
    from physiolatent_core.pulse import synth_pulse

    for fps in (30.0, 60.0):
        for interpolate in (True, False):
            floors = []
            for seed in range(5):
                p = synth_pulse(int(60 * fps), fps, 63.7 + 4.3 * seed, rmssd_ms=0.0, resp_rate=14.0, resp_depth=0.0,
                                seed=seed)
                beats = detect_beats(p.wave, fps, interpolate=interpolate)
                floors.append(hrv_metrics(beats.times_s)["rmssd_ms"])
            _emit(out, {"part": "floor", "fps": fps, "interpolate": interpolate, "rmssd_ms": floors})


def real(out: Path, max_s: float, cases=None) -> None:
    from physiolatent_core.pipeline import JobRequest, run_job
    from physiolatent_core.video import probe_video, read_video, write_video

    work = out / "videos"
    work.mkdir(parents=True, exist_ok=True)
    for video in sorted(DATA.glob("*.mp4")):
        info = probe_video(video)
        source = video
        if info.duration_s > max_s + 1:  # cut long clips (lossless) to keep runs short
            frames, fps = read_video(video, max_frames=int(max_s * info.fps))
            source = work / f"{video.stem}_cut.mkv"
            if not source.exists():
                write_video(source, frames, fps)
            del frames
        t = REAL_TARGET
        jobs = {
            "plain_lossless": dict(mode="edit", output=work / f"{video.stem}_plain.mkv", target=t["hr"]),
            "vitals_lossless": dict(mode="edit", output=work / f"{video.stem}_vitals.mkv", target=t["hr"],
                                    hrv_rmssd_ms=t["rmssd"], resp_rate_bpm=t["resp"]),
            "vitals_h264_crf23": dict(mode="edit", output=work / f"{video.stem}_vitals.mp4", target=t["hr"], crf=23,
                                      hrv_rmssd_ms=t["rmssd"], resp_rate_bpm=t["resp"]),
            "remove_lossless": dict(mode="remove", output=work / f"{video.stem}_removed.mkv"),
        }
        for name, job in jobs.items():
            if cases and name not in cases:
                continue
            t0 = time.perf_counter()
            report = run_job(JobRequest(input=source, methods=("pos",), figure=False, overwrite=True, quiet=True,
                                        **job))
            v, vit = report["verify"], report["vitals"]
            _emit(out, {"part": "real", "clip": video.stem, "case": name, "seconds": report["input"]["duration_s"],
                        "hr_after": v["hr_bpm"]["pos"], "hr_before": v["hr_bpm_before"]["pos"],
                        "psnr_db": v["psnr_db"], "vitals": vit, "run_s": round(time.perf_counter() - t0, 1)})


def summarise(paths) -> None:
    cases = [json.loads(line) for p in paths for line in open(p)]
    rows = [c for c in cases if c["part"] == "synth"]
    if rows:
        print("| clip | path | RMSSD within 20 % | median RMSSD error | breathing within 1.5/min | median error "
              "(breaths/min) | HRV quality good | breathing quality good |")
        print("|---|---|---|---|---|---|---|---|")
        for duration in sorted({c["duration_s"] for c in rows}):
            for path in ("lossless", "h264_crf23"):
                sel = [c for c in rows if c["duration_s"] == duration and c["path"] == path]
                rm = [None if c["hrv"]["rmssd_ms"] is None else c["hrv"]["rmssd_ms"] / c["rmssd_true_ms"] - 1
                      for c in sel]
                br = [None if c["breathing"]["rate_bpm"] is None else c["breathing"]["rate_bpm"] - c["resp_target_bpm"]
                      for c in sel]
                ok_r = sum(e is not None and abs(e) <= 0.2 for e in rm)
                ok_b = sum(e is not None and abs(e) <= 1.5 for e in br)
                med = lambda es, f: "-" if not [e for e in es if e is not None] else f(  # noqa: E731
                    np.median([abs(e) for e in es if e is not None]))
                print(f"| {duration:g} s | {path} | {ok_r}/{len(sel)} | {med(rm, lambda v: f'{100 * v:.0f} %')} | "
                      f"{ok_b}/{len(sel)} | {med(br, lambda v: f'{v:.2f}')} | "
                      f"{sum(c['hrv']['quality'] == 'good' for c in sel)}/{len(sel)} | "
                      f"{sum(c['breathing']['quality'] == 'good' for c in sel)}/{len(sel)} |")
    floors = [c for c in cases if c["part"] == "floor"]
    if floors:
        print("\n| fps | sub-frame interpolation | RMSSD read from regular beats (ms), 5 clips of 60 s at 64-81 bpm |")
        print("|---|---|---|")
        for c in floors:
            print(f"| {c['fps']:g} | {'yes' if c['interpolate'] else 'no'} | "
                  + ", ".join(f"{v:.1f}" for v in c["rmssd_ms"]) + " |")
    reals = [c for c in cases if c["part"] == "real"]
    if reals:
        print("\n| clip | s | case | HR after (target 72) | PSNR dB | RMSSD after (target 45) | breathing after "
              "(target 14) | HRV / breathing quality | breathing before |")
        print("|---|---|---|---|---|---|---|---|---|")
        for c in reals:
            after, before = c["vitals"]["after"], c["vitals"].get("before") or {}
            f = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
            rem = ""
            if c["case"].startswith("remove"):
                removed = c["vitals"].get("breathing_removed")
                rem = "" if removed is None else (" (removed)" if removed else " (still read)")
            print(f"| {c['clip']} | {c['seconds']:.0f} | {c['case']} | {f(c['hr_after'], '.1f')} | "
                  f"{f(c['psnr_db'], '.1f')} | {f(after['hrv']['rmssd_ms'], '.0f')} | "
                  f"{f(after['breathing']['rate_bpm'], '.1f')}{rem} | {after['hrv']['quality']} / "
                  f"{after['breathing']['quality']} | {f(before.get('breathing', {}).get('rate_bpm'), '.1f')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out/vitals")
    parser.add_argument("--only", choices=("synth", "real", "floor"))
    parser.add_argument("--lengths", type=float, nargs="+", default=[15.0, 30.0, 60.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-s", type=float, default=45.0, help="real clips are cut to this many seconds")
    parser.add_argument("--cases", nargs="+", help="real: only these cases (plain_lossless vitals_lossless "
                                                   "vitals_h264_crf23 remove_lossless)")
    parser.add_argument("--summarise", nargs="+", metavar="CASES_JSONL")
    args = parser.parse_args()
    if args.summarise:
        return summarise(args.summarise)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "synth"):
        synth(out, args.lengths, args.seeds)
    if args.only == "floor":
        floor(out)
    if args.only in (None, "real"):
        real(out, args.max_s, args.cases)
    summarise([out / "cases.jsonl"])


if __name__ == "__main__":
    main()
