"""Speed of removal at each strength on 640x480 (issue 21: >= 30 fps end to end on 2 cores
with the default mode, ``max``).

* core: the removal editor's observe + plan + apply over frames in memory, with the mask
  and track given (``standard``: the pooled editor; ``strong`` / ``max``: the aligned
  band-stop and head steadying first, ``removal.PrivacyRemover``);
* end to end: ``python -m physiolatent_core remove IN.mp4 -o OUT.mp4`` on a 640x480 H.264 file
  (decode, face, remove, encode), default settings, ``--no-verify``, and ``--preset veryfast --no-verify``.

    python benchmarks/removal_speed.py [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import cli_fps, make_file, median_time  # noqa: E402

from physiolatent_core import face  # noqa: E402
from physiolatent_core.editor import PulseEditor  # noqa: E402
from physiolatent_core.editors import run_editor  # noqa: E402
from physiolatent_core.removal import STRENGTHS, PrivacyRemover  # noqa: E402
from physiolatent_core.synth import synth_subject  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    clip = synth_subject(duration_s=args.seconds, fps=30.0, size=(480, 640), seed=1)
    frames, fps, n = clip.frames, clip.fps, len(clip.frames)
    mask, track = face.face_mask(frames, fps)
    work = frames.copy()

    def core(strength):
        np.copyto(work, frames)
        pooled = PulseEditor(fps, "remove", robust_to="lossless")
        remover = pooled if strength == "standard" else PrivacyRemover(fps, pooled, strength)
        run_editor(remover, work, mask, track, inplace=True)

    for strength in STRENGTHS:
        wall, cpu = median_time(lambda: core(strength), args.repeats)
        print(f"remove core 640x480, --strength {strength}: {n / wall:.0f} fps wall ({wall / n * 1e3:.2f} ms/frame), "
              f"{cpu / n * 1e3:.2f} ms/frame CPU", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        make_file(src, args.seconds, (480, 640))
        for label, extra in (("default: --strength max, preset medium, verify", []),
                             ("--no-verify (preset medium)", ["--no-verify"]),
                             ("--preset veryfast --no-verify", ["--preset", "veryfast", "--no-verify"]),
                             ("--strength standard --preset veryfast --no-verify",
                              ["--strength", "standard", "--preset", "veryfast", "--no-verify"])):
            cli_fps(f"CLI remove; {label}", ["remove", str(src), "-o", str(Path(tmp) / "out.mp4"), "--overwrite",
                                             "--no-figure", *extra], n, args.repeats)


if __name__ == "__main__":
    main()
