"""Long and large videos (issue 17, item 6): speed, peak memory and resume of ``edit``.

Makes its own test clips in a work folder (default /tmp/physiolatent-long; never committed):
a real face clip from ``../shared/data`` (or, where that is absent, a synthetic subject)
scaled up to the size asked for, played forward then backward (no cut at the loop) and
repeated by copying its H.264 packets, so a 10-minute 1080p file costs one loop's encode.
The files get a stereo AAC track (a quiet tone) so the joined output's audio is checked too.

Then, for each clip:

1. ``python -m physiolatent_core edit IN -o OUT.mp4 --target-hr 90`` uninterrupted, under
   ``/usr/bin/time -v``: wall time, fps, peak RSS, and the report's seconds per stage;
2. the same with ``--resume`` support exercised: started, killed with SIGKILL once about half
   of pass 3's segments are on disk, then run again with ``--resume``; prints both runs'
   wall times and peak RSS, the segments the second run found and wrote, and whether the
   resumed output decodes to the same frames (md5 of the decoded frames) as the
   uninterrupted one.

    python benchmarks/long_video.py --size 3840x2160 --seconds 60
    python benchmarks/long_video.py --size 1920x1080 --seconds 600
    python benchmarks/long_video.py --size 1920x1080 --seconds 30 --no-resume   # memory only
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCE = ROOT.parent / "shared" / "data" / "liveportrait_d10_woman_512.mp4"


# ----------------------------------------------------------------------------- the clips


def _loop_frames(width: int, height: int):
    """(one loop of uint8 RGB frames at width x height, made as iterated: the source forward,
    then backward; its length; fps)."""
    if SOURCE.exists():
        from physiolatent_core.video import iter_frames, probe_video

        fps = probe_video(SOURCE).fps
        small = [f for chunk in iter_frames(SOURCE, chunk_frames=64, raw=True) for f in chunk]
    else:
        from physiolatent_core.synth import synth_subject

        fps = 30.0
        clip = synth_subject(duration_s=10.0, fps=fps, size=(360, 360), seed=3)
        small = [np.round(f * 255).astype(np.uint8) for f in clip.frames]
    side = height  # the square face clip scaled to the frame's height, the sides filled by reflection
    pad = (width - side) // 2

    def fit(frame):
        big = cv2.resize(frame, (side, side), interpolation=cv2.INTER_CUBIC)
        return cv2.copyMakeBorder(big, 0, 0, pad, width - side - pad, cv2.BORDER_REFLECT_101)

    loop = small + small[-2:0:-1]
    return (fit(f) for f in loop), len(loop), fps


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    """An H.264 (+ AAC) file of ``seconds`` at ``width`` x ``height``; kept between runs."""
    if path.exists():
        return path
    frames, loop_len, fps = _loop_frames(width, height)
    rate = Fraction(fps).limit_denominator(1001)
    n_frames = int(round(seconds * fps))
    loop_len = min(loop_len, n_frames)
    frames = itertools.islice(frames, loop_len)
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "20", "preset": "ultrafast", "bf": "0"}
        audio = out.add_stream("aac", rate=44100, layout="stereo")
        loop_packets = []  # one loop encoded; repeats copy its packets with shifted timestamps
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i  # in frames: the encoder's time base is 1 / rate
            for packet in video.encode(frame):
                loop_packets.append((bytes(packet), packet.pts, packet.dts, packet.is_keyframe))
        for packet in video.encode(None):
            loop_packets.append((bytes(packet), packet.pts, packet.dts, packet.is_keyframe))
        for k in range(0, n_frames, loop_len):
            for data, pts, dts, key in loop_packets:
                if k + pts >= n_frames:
                    continue
                packet = av.Packet(data)
                packet.pts, packet.dts, packet.is_keyframe = k + pts, k + dts, key
                packet.time_base, packet.stream = 1 / rate, video
                out.mux(packet)
        samples = int(seconds * 44100)
        t = np.arange(samples) / 44100
        tone = (0.05 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for start in range(0, samples, 1024):
            block = np.ascontiguousarray(np.stack([tone[start:start + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = 44100, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- the runs


def _cli(extra: list[str] | None = None) -> list[str]:
    """The command line (segment length as the library's, or ``--segment-s`` for the run)."""
    return [sys.executable, "-c", "import sys; from physiolatent_core import cli, resume; "
            f"resume.SEGMENT_S = {ARGS.segment_s!r}; sys.exit(cli.main())", *(extra or [])]


def edit_command(src: Path, out: Path) -> list[str]:
    return _cli(["edit", str(src), "-o", str(out), "--target-hr", "90", "--quiet"])


def timed(command: list[str]) -> dict:
    """Run under ``/usr/bin/time -v``: wall seconds and peak RSS (MB) of the child."""
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024}


def report_of(out: Path) -> dict:
    return json.loads(Path(str(out) + ".report.json").read_text())


def per_pass(report: dict) -> str:
    n = report["face"]["frames"]
    laps = report["timings_s"]
    parts = [f"{name} {laps[name]:.0f} s ({n / laps[name]:.2f} fps)" for name in
             ("face_track", "analyse", "edit_write", "verify") if laps.get(name)]
    parts.append(f"plan {laps.get('plan', 0):.0f} s")
    return ", ".join(parts)


def frames_md5(path: Path) -> str:
    from physiolatent_core.video import iter_frames

    digest = hashlib.md5()
    for chunk in iter_frames(path, chunk_frames=8, raw=True):
        digest.update(chunk.tobytes())
    return digest.hexdigest()


def uninterrupted(src: Path, out: Path) -> dict:
    for p in (out, Path(str(out) + ".report.json"), Path(str(out) + ".png")):
        p.unlink(missing_ok=True)
    run = timed(edit_command(src, out))
    report = report_of(out)
    n = report["face"]["frames"]
    print(f"  uninterrupted: {run['wall_s']:.0f} s wall, {n / run['wall_s']:.2f} fps end to end, "
          f"peak RSS {run['peak_rss_mb']:.0f} MB", flush=True)
    print(f"    per pass: {per_pass(report)}", flush=True)
    print(f"    peak RSS so far at the end of each stage (MB): {report.get('peak_memory_mb')}", flush=True)
    return {**run, "frames": n, "report": report}


def killed_and_resumed(src: Path, out: Path, n_frames: int, fps: float) -> dict:
    """Start the job, SIGKILL it once half of its segments are finished, then ``--resume``."""
    from physiolatent_core.video.segments import read_segment

    for p in (out, Path(str(out) + ".report.json"), Path(str(out) + ".png")):
        p.unlink(missing_ok=True)
    work = out.with_name(out.name + ".partial")
    segment_frames = max(1, round(ARGS.segment_s * fps))
    n_segments = -(-n_frames // segment_frames)
    half = max(1, n_segments // 2)
    t0 = time.perf_counter()
    child = subprocess.Popen(edit_command(src, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while read_segment(work, half - 1) is None and child.poll() is None:
        time.sleep(0.5)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    killed_s = time.perf_counter() - t0
    # the killed child is the only one waited for so far in this process when run with
    # --no-uninterrupted; otherwise this is the larger of it and the uninterrupted run
    killed_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finished = sum(read_segment(work, k) is not None for k in range(n_segments))
    print(f"  killed (SIGKILL) after {killed_s:.0f} s with {finished} of {n_segments} segments finished "
          f"({segment_frames} frames each); peak RSS of the children so far {killed_rss_mb:.0f} MB", flush=True)
    run = timed(edit_command(src, out) + ["--resume"])
    report = report_of(out)
    print(f"  resumed: {run['wall_s']:.0f} s wall, peak RSS {run['peak_rss_mb']:.0f} MB; report: {report['resume']}",
          flush=True)
    print(f"    per pass: {per_pass(report)}", flush=True)
    return {"killed_s": killed_s, "finished": finished, "n_segments": n_segments, **run, "report": report}


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1920x1080", help="WIDTHxHEIGHT of the test clip")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/physiolatent-long"))
    ap.add_argument("--no-uninterrupted", action="store_true", help="only the killed-and-resumed run")
    ap.add_argument("--no-resume", action="store_true", help="only the uninterrupted run")
    ap.add_argument("--segment-s", type=float, default=None,
                    help="seconds per segment (default: the library's resume.SEGMENT_S)")
    ARGS = ap.parse_args()
    from physiolatent_core import resume
    from physiolatent_core.video import probe_video

    ARGS.segment_s = ARGS.segment_s or resume.SEGMENT_S
    width, height = (int(v) for v in ARGS.size.lower().split("x"))
    ARGS.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    src = make_clip(ARGS.work / f"src_{width}x{height}_{ARGS.seconds:g}s.mp4", width, height, ARGS.seconds)
    info = probe_video(src)
    print(f"{width}x{height}, {ARGS.seconds:g} s ({info.num_frames} frames at {info.fps:g} fps), source ready in "
          f"{time.perf_counter() - t0:.0f} s; load average before: {os.getloadavg()}", flush=True)
    whole = resumed = None
    if not ARGS.no_uninterrupted:
        whole = uninterrupted(src, ARGS.work / "whole.mp4")
    if not ARGS.no_resume:
        resumed = killed_and_resumed(src, ARGS.work / "resumed.mp4", info.num_frames, info.fps)
        total = resumed["killed_s"] + resumed["wall_s"]
        line = f"  killed + resumed: {total:.0f} s in all"
        if whole is not None:
            line += f" vs {whole['wall_s']:.0f} s uninterrupted ({total / whole['wall_s'] - 1:+.0%})"
            same = frames_md5(ARGS.work / "whole.mp4") == frames_md5(ARGS.work / "resumed.mp4")
            line += f"; decoded frames identical to the uninterrupted output: {same}"
        print(line, flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)


ARGS = None

if __name__ == "__main__":
    main()
