"""Speed and memory of the training-free path (issue: foundation acceptance).

* editor core: ``PulseEditor.observe + plan + apply`` on 640x480 frames with a given mask
  (target >= 100 fps on 2 cores), for ``robust_to="lossless"`` (the edit itself) and
  ``"h264"`` (which also encodes a 3-4 s sample of the face region twice to measure the
  codec);
* face mask: tracking + skin mask on the same clip;
* the face-tracking pass of a job (pipeline pass 1) on the 640x480 file: the single-face
  tracker against the every-face tracker that edit jobs use;
* end to end: the CLI's ``edit`` on a 640x480 H.264 file, decode + face + edit + encode
  (target >= 30 fps), whole process, median of ``--repeats`` runs: as it runs by default
  (x264 preset medium, then the saved file is read back and verified), and with
  ``--preset veryfast --no-verify``;
* peak memory of ``edit`` on a long 1080p file (target < 3 GB), measured as the child
  process's max RSS (``/usr/bin/time``).

    python benchmarks/speed.py                 # 640x480 figures
    python benchmarks/speed.py --long-1080p 300  # + a 5-minute 1080p memory run (slow)
    python benchmarks/speed.py --only-long --long-1080p 60   # only a memory run
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from physiolatent_core import editor, face, pipeline, video  # noqa: E402
from physiolatent_core.editors import run_editor  # noqa: E402
from physiolatent_core.synth import synth_subject  # noqa: E402


def median_time(fn, repeats):
    """Median wall time and median CPU time (all threads of this process) of ``fn()``.
    On a shared machine the CPU time is the steadier figure; both are printed."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def run_cli(args):
    """Run the CLI in a child process; return (wall seconds, its max RSS in MB).

    The RSS comes from ``/usr/bin/time``: ``RUSAGE_CHILDREN`` would also count this
    process's pages that the child holds between fork and exec.
    """
    t0 = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", sys.executable, "-m", "physiolatent_core",
                           *args, "--quiet"], cwd=ROOT, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    kb = [line for line in done.stderr.splitlines() if line.startswith("maxrss_kb=")][-1]
    return wall, int(kb.split("=")[1]) / 1024.0


def cli_fps(label: str, cli_args: list[str], n_frames: int, repeats: int) -> None:
    """Print the median end-to-end fps of ``python -m physiolatent_core *cli_args`` on a 640x480 clip."""
    walls, rss = [], 0.0
    for _ in range(repeats):
        wall, rss = run_cli(cli_args)
        walls.append(wall)
    wall = statistics.median(walls)
    print(f"end to end ({label}) 640x480: {n_frames / wall:.1f} fps, {wall:.1f} s for {n_frames} frames, "
          f"max RSS {rss:.0f} MB", flush=True)


def make_file(path, seconds, size, fps=30.0):
    """A synthetic subject written chunk by chunk (the 1080p clip never sits in memory whole)."""
    h, w = size
    # Rendered at most 480x640 and scaled up per chunk: a 10 s 1080p tile would be 7.5 GB.
    scale = max(1, int(np.ceil(max(h / 480, w / 640))))
    tile = synth_subject(duration_s=min(seconds, 10.0), fps=fps, size=(h // scale, w // scale), seed=3)
    n = int(seconds * fps)
    with video.VideoWriter(path, fps, crf=18, overwrite=True) as writer:
        for start in range(0, n, 30):
            idx = np.arange(start, min(start + 30, n)) % len(tile.frames)
            chunk = tile.frames[idx]
            if scale > 1:
                chunk = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in chunk])
            writer.write(chunk)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--long-1080p", type=float, default=0.0, help="seconds of 1080p for the memory run (0: skip)")
    ap.add_argument("--only-long", action="store_true", help="only the 1080p memory run (it needs no idle machine)")
    args = ap.parse_args()
    if not args.only_long:
        speed_640(args)
    if args.long_1080p:
        memory_1080p(args.long_1080p)


def memory_1080p(seconds: float):
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mp4"
        make_file(src, seconds, (1080, 1920))
        wall, rss = run_cli(["edit", str(src), "-o", str(Path(tmp) / "long_out.mp4"), "--target-hr", "80",
                             "--overwrite", "--no-figure"])  # default settings: medium, verify
        m = int(seconds * 30)
        print(f"1080p {seconds:.0f} s ({m} frames), CLI edit with default settings: {m / wall:.2f} fps, "
              f"peak RSS {rss:.0f} MB", flush=True)
        report = json.loads((Path(tmp) / "long_out.mp4.report.json").read_text())
        print("  peak memory so far at the end of each stage (MB):", report.get("peak_memory_mb"), flush=True)


def speed_640(args):

    clip = synth_subject(duration_s=args.seconds, fps=30.0, size=(480, 640), seed=1)
    frames, fps, n = clip.frames, clip.fps, len(clip.frames)
    mask, _ = face.face_mask(frames, fps)

    work = frames.copy()

    def core(robust_to):
        # As the pipeline streams it: chunks edited in place (the decoder's fresh chunks).
        np.copyto(work, frames)
        run_editor(editor.PulseEditor(fps, "edit", target=100, robust_to=robust_to), work, mask, inplace=True)

    for robust_to in ("lossless", "h264"):
        (t_core, c_core) = median_time(lambda: core(robust_to), args.repeats)
        print(f"editor core 640x480, robust_to={robust_to}: {n / t_core:.0f} fps wall "
              f"({t_core / n * 1e3:.2f} ms/frame), {c_core / n * 1e3:.2f} ms/frame CPU")
    (t_face, c_face) = median_time(lambda: face.face_mask(frames, fps), args.repeats)
    print(f"face track + mask 640x480: {n / t_face:.0f} fps wall ({t_face / n * 1e3:.2f} ms/frame), "
          f"{c_face / n * 1e3:.2f} ms/frame CPU")

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        make_file(src, args.seconds, (480, 640))
        # Pass 1 of a job on the file (decode + face search), one face: the single-face
        # tracker against the every-face tracker the edit jobs use (its extra cost is one
        # whole-frame search a second).
        info = video.probe_video(src)
        for label, track in (("largest face, FaceTracker", pipeline.track_pass),
                             ("every face, MultiFaceTracker", pipeline.faces_pass)):
            (t_pass, c_pass) = median_time(lambda: track(pipeline.Source(src, info)), args.repeats)
            print(f"face-tracking pass 640x480 file ({label}): {t_pass:.2f} s wall, {c_pass:.2f} s CPU "
                  f"for {n} frames", flush=True)
        for label, extra in (("default: preset medium, verify", []),
                             ("--preset veryfast --no-verify", ["--preset", "veryfast", "--no-verify"])):
            cli_fps(f"CLI edit; {label}", ["edit", str(src), "-o", str(Path(tmp) / "out.mp4"), "--target-hr", "100",
                                          "--overwrite", "--no-figure", *extra], n, args.repeats)


if __name__ == "__main__":
    main()
