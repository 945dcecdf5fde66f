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
