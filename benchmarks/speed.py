"""Speed and memory of the training-free path (issue: foundation acceptance).

* editor core: ``PulseEditor.observe + plan + apply`` on 640x480 frames with a given mask
  (target >= 100 fps on 2 cores);
* face mask: tracking + skin mask on the same clip;
* end to end: the CLI's ``edit`` on a 640x480 H.264 file, decode + face + edit + encode
  (target >= 30 fps), whole process, median of ``--repeats`` runs;
* peak memory of ``edit`` on a long 1080p file (target < 3 GB), measured as the child
  process's max RSS.

    python benchmarks/speed.py                 # 640x480 figures
    python benchmarks/speed.py --long-1080p 300  # + a 5-minute 1080p memory run (slow: ~15 min)
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physiolatent_core import editor, face, video  # noqa: E402
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
    """Run the CLI in a child process; return (wall seconds, max RSS in MB)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "physiolatent_core", *args, "--quiet"], cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return wall, rss_mb


def make_file(path, seconds, size, fps=30.0):
    """A synthetic subject written chunk by chunk (the 1080p clip never sits in memory whole)."""
    h, w = size
    tile = synth_subject(duration_s=min(seconds, 10.0), fps=fps, size=(h, w), seed=3)
    n = int(seconds * fps)
    with video.VideoWriter(path, fps, crf=18, overwrite=True) as writer:
        for start in range(0, n, 60):
            idx = np.arange(start, min(start + 60, n)) % len(tile.frames)
            writer.write(tile.frames[idx])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--long-1080p", type=float, default=0.0, help="seconds of 1080p for the memory run (0: skip)")
    args = ap.parse_args()

    clip = synth_subject(duration_s=args.seconds, fps=30.0, size=(480, 640), seed=1)
    frames, fps, n = clip.frames, clip.fps, len(clip.frames)
    mask, _ = face.face_mask(frames, fps)

    work = frames.copy()

    def core():
        # As the CLI streams it: 64-frame chunks, edited in place (the decoder's fresh chunks).
        ed = editor.PulseEditor(fps, "edit", target=100)
        for s in range(0, n, 64):
            ed.observe(frames[s : s + 64], mask[s : s + 64])
        ed.plan()
        for s in range(0, n, 64):
            np.copyto(work[s : s + 64], frames[s : s + 64])  # a fresh chunk, as decoded
            ed.apply(work[s : s + 64], mask[s : s + 64], s, inplace=True)

    (t_core, c_core) = median_time(core, args.repeats)
    (t_face, c_face) = median_time(lambda: face.face_mask(frames, fps), args.repeats)
    print(f"editor core 640x480: {n / t_core:.0f} fps wall ({t_core / n * 1e3:.2f} ms/frame), "
          f"{c_core / n * 1e3:.2f} ms/frame CPU")
    print(f"face track + mask 640x480: {n / t_face:.0f} fps wall ({t_face / n * 1e3:.2f} ms/frame), "
          f"{c_face / n * 1e3:.2f} ms/frame CPU")

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        make_file(src, args.seconds, (480, 640))
        walls = []
        for _ in range(args.repeats):
            wall, rss = run_cli(["edit", str(src), "-o", str(Path(tmp) / "out.mp4"), "--target-hr", "100",
                                 "--overwrite", "--no-figure"])
            walls.append(wall)
        wall = statistics.median(walls)
        print(f"end to end (CLI edit, decode+face+edit+encode+verify) 640x480: {n / wall:.1f} fps, "
              f"{wall:.1f} s for {n} frames, max RSS {rss:.0f} MB")

        if args.long_1080p:
            src = Path(tmp) / "long.mp4"
            make_file(src, args.long_1080p, (1080, 1920))
            wall, rss = run_cli(["edit", str(src), "-o", str(Path(tmp) / "long_out.mp4"), "--target-hr", "80",
                                 "--overwrite", "--no-figure"])
            m = int(args.long_1080p * 30)
            print(f"1080p {args.long_1080p:.0f} s ({m} frames): {m / wall:.1f} fps, peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
