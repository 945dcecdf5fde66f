"""Training and held-out clips for the learned reader, as face crops with a known pulse.

Two sources, both with a known blood-volume wave:

* **Synthetic subjects** (``synth.synth_subject``): random HR 45-150 bpm, Monk tones 1-10,
  talking or not, head motion, lighting drift, pulse strength; a share saved through
  H.264 (crf 18-28) before cropping.
* **Real faces edited to a known HR**: 10 s segments of the clips in ``../shared/data``
  (downscaled so the longer side is 256 px: the reader sees 64 px crops anyway), edited
  by our training-free editor to a random HR; the new ground truth is
  ``editor.injected_wave``. Half are edited for and saved through H.264 (crf 18-28),
  half lossless (8-bit dither).

Each item is one ``.npz`` in the cache folder: ``crops [T,64,64,3]`` float16,
``wave [T]`` float32 (blood volume: up = more blood = darker skin), ``fps``, ``hr_bpm``
(mean of the known wave's HR), ``source``, ``path`` (save path), ``split``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from crops import reader_crops  # noqa: E402

from physiolatent_core import editor, face, video  # noqa: E402
from physiolatent_core.synth import synth_subject  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CACHE = Path.home() / ".cache" / "physiolatent" / "learned_reader"
#: Real clips never trained on: the reader's own accuracy is measured on their edits.
HELD_OUT_CLIPS = ("evm_face", "sadtalker_hdtf_aoc_512")
SEGMENT_S = 10.0
REAL_SIDE_PX = 256


def _save(file: Path, **item) -> None:
    tmp = file.with_suffix(".tmp.npz")
    np.savez(tmp, **item)
    tmp.replace(file)


def _downscale(frames: np.ndarray, side_px: int) -> np.ndarray:
    h, w = frames.shape[1:3]
    scale = side_px / max(h, w)
    if scale >= 1:
        return frames
    size = (round(w * scale), round(h * scale))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def _save_path(frames: np.ndarray, fps: float, crf: int | None, seed: int) -> np.ndarray:
    """Frames as a user's saved file holds them: 8-bit dither (lossless) or dither + H.264 crf."""
    if crf is None:
        return video.encode_decode(frames, fps, codec="ffv1", quantize="dither", seed=seed)
    return video.encode_decode(frames, fps, codec="h264", crf=crf, quantize="dither", seed=seed)


def real_items(out: Path, edits_per_segment: int = 2, seed: int = 0, clips=None) -> None:
    """Edit every 10 s segment of every real clip to random HRs; save crops and waves."""
    rng = np.random.default_rng(seed)
    for path in sorted(SHARED.glob("*.mp4")):
        if clips and path.stem not in clips:
            continue
        info = video.probe_video(path)
        fps = info.fps
        seg = int(round(SEGMENT_S * fps))
        n_segments = max(1, info.num_frames // seg)
        for s in range(n_segments):
            choices = [(float(rng.uniform(45, 150)), int(rng.integers(1 << 30)),
                        None if k % 2 == 0 else int(rng.integers(18, 29))) for k in range(edits_per_segment)]
            todo = [(k, c) for k, c in enumerate(choices) if not (out / f"real_{path.stem}_s{s}_e{k}.npz").exists()]
            if not todo:
                continue
            frames = np.concatenate(list(video.iter_frames(path, start=s * seg, stop=(s + 1) * seg)))
            frames = _downscale(frames, REAL_SIDE_PX)
            track = face.track_face(frames, fps)
            mask = face.skin_mask(frames, track)
            for k, (hr_bpm, edit_seed, crf) in todo:
                t0 = time.time()
                robust = "lossless" if crf is None else "h264"
                kw = {} if crf is None else {"codec_crf": crf}
                edited = editor.edit_pulse(frames, fps, hr_bpm, face_mask=mask, robust_to=robust, seed=edit_seed,
                                           **kw).frames
                saved = _save_path(edited, fps, crf, edit_seed)
                crops = reader_crops(saved, fps, track=track)
                wave = editor.injected_wave(len(frames), fps, hr_bpm, seed=edit_seed)
                split = "held_out" if path.stem in HELD_OUT_CLIPS else "train"
                _save(out / f"real_{path.stem}_s{s}_e{k}.npz", crops=crops.astype(np.float16),
                      wave=wave.astype(np.float32), fps=fps, hr_bpm=hr_bpm, source=path.stem,
                      path="lossless" if crf is None else f"h264_crf{crf}", split=split)
                print(f"real {path.stem} seg {s} edit {k}: {hr_bpm:.1f} bpm, {robust}, crf {crf}, "
                      f"{time.time() - t0:.0f} s", flush=True)


def synth_items(out: Path, n: int, seed: int, split: str, talking_share: float = 0.6) -> None:
    """``n`` random synthetic subjects (10 s, 320x240); about a third saved through H.264."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        hr_bpm = float(rng.uniform(45, 150))
        tone = int(rng.integers(1, 11))
        talking = bool(rng.random() < talking_share)
        kw = dict(motion_px=float(rng.uniform(0, 4)), illumination_drift=float(rng.uniform(0, 0.04)),
                  pulse_amplitude=float(rng.uniform(0.002, 0.006)), seed=int(rng.integers(1 << 30)))
        crf = int(rng.integers(18, 29)) if rng.random() < 0.35 else None
        name = out / f"synth_{split}_{seed}_{i:03d}.npz"
        if name.exists():
            continue
        t0 = time.time()
        clip = synth_subject(duration_s=SEGMENT_S, hr_bpm=hr_bpm, skin_tone=tone, talking=talking, **kw)
        frames = clip.frames if crf is None else _save_path(clip.frames, clip.fps, crf, i)
        crops = reader_crops(frames, clip.fps)
        _save(name, crops=crops.astype(np.float16), wave=clip.ppg.astype(np.float32), fps=clip.fps,
              hr_bpm=clip.hr_bpm, source=f"synth_tone{tone}{'_talking' if talking else ''}",
              path="lossless" if crf is None else f"h264_crf{crf}", split=split)
        print(f"synth {split} {i}: {clip.hr_bpm:.1f} bpm tone {tone} talking {talking} crf {crf}, "
              f"{time.time() - t0:.0f} s", flush=True)


def eval_items(out: Path, seed: int = 0, hrs_per_clip: int = 3) -> None:
    """The reader's own test: each held-out real clip (first 10 s) edited to ``hrs_per_clip``
    random HRs, and one talking synthetic subject per Monk tone 1-10, each saved both
    lossless and through H.264 crf 23 (``split="eval"``)."""
    rng = np.random.default_rng([seed, 7])
    for stem in HELD_OUT_CLIPS:
        path = SHARED / f"{stem}.mp4"
        if not path.exists():
            continue
        fps = video.probe_video(path).fps
        frames = track = mask = None
        for k in range(hrs_per_clip):
            hr_bpm, edit_seed = float(rng.uniform(45, 150)), int(rng.integers(1 << 30))
            for crf in (None, 23):
                name = out / f"eval_{stem}_e{k}_{'lossless' if crf is None else 'crf23'}.npz"
                if name.exists():
                    continue
                if frames is None:
                    frames = _downscale(np.concatenate(list(video.iter_frames(path, stop=int(SEGMENT_S * fps)))),
                                        REAL_SIDE_PX)
                    track = face.track_face(frames, fps)
                    mask = face.skin_mask(frames, track)
                kw = {} if crf is None else {"codec_crf": crf}
                edited = editor.edit_pulse(frames, fps, hr_bpm, face_mask=mask, seed=edit_seed,
                                           robust_to="lossless" if crf is None else "h264", **kw).frames
                crops = reader_crops(_save_path(edited, fps, crf, edit_seed), fps, track=track)
                wave = editor.injected_wave(len(frames), fps, hr_bpm, seed=edit_seed)
                _save(name, crops=crops.astype(np.float16), wave=wave.astype(np.float32), fps=fps, hr_bpm=hr_bpm,
                      source=stem, path="lossless" if crf is None else "h264_crf23", split="eval")
                print(f"eval {name.stem}: {hr_bpm:.1f} bpm", flush=True)
    for tone in range(1, 11):
        hr_bpm, clip_seed = float(rng.uniform(45, 150)), int(rng.integers(1 << 30))
        clip = None
        for crf in (None, 23):
            name = out / f"eval_synth_tone{tone}_talking_{'lossless' if crf is None else 'crf23'}.npz"
            if name.exists():
                continue
            if clip is None:
                clip = synth_subject(duration_s=SEGMENT_S, hr_bpm=hr_bpm, skin_tone=tone, talking=True,
                                     seed=clip_seed)
            frames = clip.frames if crf is None else _save_path(clip.frames, clip.fps, crf, tone)
            _save(name, crops=reader_crops(frames, clip.fps).astype(np.float16), wave=clip.ppg.astype(np.float32),
                  fps=clip.fps, hr_bpm=clip.hr_bpm, source=f"synth_tone{tone}_talking",
                  path="lossless" if crf is None else "h264_crf23", split="eval")
            print(f"eval {name.stem}: {clip.hr_bpm:.1f} bpm", flush=True)


def load_items(folder: Path, split: str | None = None) -> list[dict]:
    items = []
    for p in sorted(folder.glob("*.npz")):
        if p.name.endswith(".tmp.npz"):
            continue
        with np.load(p) as z:
            item = {k: z[k] for k in z.files}
        item = {k: (v.item() if v.ndim == 0 else v) for k, v in item.items()}
        item["name"] = p.stem
        if split is None or item["split"] == split:
            items.append(item)
    return items


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=CACHE / "data")
    ap.add_argument("--real", action="store_true", help="real clips edited to known HRs")
    ap.add_argument("--synth", type=int, default=0, help="number of synthetic training subjects")
    ap.add_argument("--synth-held-out", type=int, default=0, help="number of held-out synthetic subjects")
    ap.add_argument("--eval", action="store_true", help="the reader's test items (held-out clips, tones 1-10)")
    ap.add_argument("--more-real", type=int, default=0, help="extra edits per segment of the training clips")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.real:
        real_items(args.out, seed=args.seed)
    if args.more_real:  # more edits of the training clips, new HRs (a different seed)
        real_items(args.out, edits_per_segment=2 + args.more_real, seed=args.seed,
                   clips=[p.stem for p in SHARED.glob("*.mp4") if p.stem not in HELD_OUT_CLIPS])
    if args.eval:
        eval_items(args.out, seed=args.seed)
    if args.synth:
        synth_items(args.out, args.synth, seed=args.seed, split="train")
    if args.synth_held_out:
        synth_items(args.out, args.synth_held_out, seed=args.seed + 1000, split="held_out")


if __name__ == "__main__":
    main()
