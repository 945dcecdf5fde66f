"""Removal judged by classical and learned rPPG readers (issue 21, item 3).

For every real clip in ../shared/data and synthetic *talking* subjects (Monk tones 1-10,
a few seeds), remove the pulse and save it through each path a user takes:

* ``lossless``   ``python -m physiolatent_core remove IN -o OUT.mkv`` (FFV1, 8-bit dither)
* ``h264_crf18`` ``remove IN -o OUT.mp4 --crf 18``
* ``h264_crf23`` ``remove IN -o OUT.mp4 --crf 23``
* ``comfy_save`` the Pulse Remove node's path into ComfyUI's core SaveVideo: the editor as
  the node builds it (``robust_to="h264"``, ``codec_crf=23, codec_quantize="truncate"``)
  on the decoded frames, then truncation to 8 bit + libx264 crf 23 yuv420p
  (``video.encode_decode``'s default)

plus one ``edit --target-hr`` output per clip (crf 23): does each reader follow an edit?

Every output is read by the nine classical readers (``rppg.METHODS``: eight on the mean
skin colour, SSR on the skin pixels' colour distribution) through our skin mask, and by
the learned reader (PhysNet, ``benchmarks/learned_reader``) on face crops cut along our
tracker's boxes. Each file is read as a reader meets it: with its own face track, skin mask
and crops (``strong``/``max`` removal steadies the head by a fraction of a pixel, so the
input's geometry, which moves with the input's head, is not the output's). Per reader x clip x path: HR before -> after,
whether it is within 5 bpm of the original HR, SNR at the original HR before and after,
and PSNR / SSIM of the output against the input.

"Original HR": for synthetic clips the known true HR; for real clips each reader's own
reading on the input, and, where ../shared/data/PROVENANCE.md lists one (evm_face: 53 bpm),
also the listed HR (``within5_known``).

Cached by case (``--out``/<removal-args hash>/<case>/): outputs, their readings and their
face crops; a rerun only does what is missing, and the learned reader is re-read from the
stored crops whenever its weights changed. ``--removal-args`` goes to the three
command-line removals (e.g. ``--removal-args="--amplitude 0.01"``); ``--editor-kwargs``
(JSON) to the node path's ``PulseEditor``.

    python benchmarks/removal.py --out /tmp/removal                       # everything (tones 1-10, seeds 0 1)
    python benchmarks/removal.py --out /tmp/removal --only real           # real clips only
    python benchmarks/removal.py --out /tmp/removal --only synth --tones 1 5 10 --seeds 0 1
    python benchmarks/removal.py --out /tmp/removal --summarise           # markdown tables of what is there
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "learned_reader"))  # its modules import each other by name

from physiolatent_core import face, rppg, video  # noqa: E402
from physiolatent_core.rppg.hr import estimate_hr, snr_db  # noqa: E402
from physiolatent_core.verify import PSNR_CAP_DB  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PATHS = ("lossless", "h264_crf18", "h264_crf23", "comfy_save")
#: Listed average HR of real clips (../shared/data/PROVENANCE.md); the others have none.
KNOWN_HR_BPM = {"evm_face": 53.0}
LEARNED = "physnet"
WITHIN_BPM = 5.0
CHUNK = 64


# ------------------------------------------------------------------ cases and outputs

def cases(only: str | None, tones, seeds) -> list[str]:
    real = [f"real_{p.stem}" for p in sorted(SHARED.glob("*.mp4"))] if only in (None, "real") else []
    synth = [f"synth_tone{t}_seed{s}" for t in tones for s in seeds] if only in (None, "synth") else []
    return real + synth


def synth_truth(case: str) -> dict:
    tone, seed = (int(x) for x in case.removeprefix("synth_tone").split("_seed"))
    hr_bpm = float(np.random.default_rng([tone, seed]).uniform(55.0, 120.0))
    return dict(tone=tone, seed=seed, hr_bpm=hr_bpm)


def input_of(case: str, folder: Path) -> tuple[Path, float | None]:
    """The case's input file and its true HR (None where unknown)."""
    if case.startswith("real_"):
        stem = case.removeprefix("real_")
        return SHARED / f"{stem}.mp4", KNOWN_HR_BPM.get(stem)
    from physiolatent_core.synth import synth_subject

    truth = synth_truth(case)
    path = folder / "input.mkv"
    meta = folder / "truth.json"
    if not path.exists():
        clip = synth_subject(duration_s=12.0, hr_bpm=truth["hr_bpm"], skin_tone=truth["tone"], seed=truth["seed"],
                             talking=True)
        video.write_video(path, clip.frames, clip.fps, dither=False)  # 8-bit frames: stored exactly
        meta.write_text(json.dumps({**truth, "hr_bpm": clip.hr_bpm}))
    return path, json.loads(meta.read_text())["hr_bpm"]


def _cli(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "physiolatent_core", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed:\n{done.stderr[-3000:]}")


def output_of(kind: str, inp: Path, folder: Path, removal_args: list[str], editor_kwargs: dict,
              target_hr_bpm: float | None = None) -> Path:
    """The removed (or, ``kind == "edit"``, edited) clip saved through ``kind``'s path; made when missing."""
    common = ["--no-verify", "--no-figure", "--quiet", "--seed", "0"]
    if kind == "lossless":
        out = folder / "removed_lossless.mkv"
        args = ["remove", str(inp), "-o", str(out), *common, *removal_args]
    elif kind in ("h264_crf18", "h264_crf23"):
        out = folder / f"removed_{kind}.mp4"
        args = ["remove", str(inp), "-o", str(out), "--crf", kind[-2:], *common, *removal_args]
    elif kind == "edit":
        out = folder / "edited_h264_crf23.mp4"
        args = ["edit", str(inp), "-o", str(out), "--target-hr", f"{target_hr_bpm:.1f}", "--crf", "23", *common]
    elif kind == "comfy_save":
        out = folder / "removed_comfy_save.mkv"
        args = None
    else:
        raise ValueError(kind)
    if out.exists():
        return out
    t0 = time.time()
    if args is not None:
        _cli(args)
    else:
        _node_path(inp, out, editor_kwargs)
    (folder / f"{out.name}.seconds").write_text(f"{time.time() - t0:.1f}")
    return out


def _node_path(inp: Path, out: Path, editor_kwargs: dict) -> None:
    """Pulse Remove node (robust to h264, tuned to core SaveVideo) -> core SaveVideo, stored
    losslessly as the 8-bit frames SaveVideo's file decodes to."""
    from physiolatent_core.editor import PulseEditor
    from physiolatent_core.editors import run_editor
    from physiolatent_core.removal import DEFAULT_STRENGTH, PrivacyRemover

    frames, fps = video.read_video(inp)
    mask, track = face.face_mask(frames, fps)
    kwargs = dict(editor_kwargs)
    strength = kwargs.pop("strength", DEFAULT_STRENGTH)  # as the node: max unless told
    pooled = PulseEditor(fps, "remove", robust_to="h264", seed=0, codec_crf=23, codec_quantize="truncate", **kwargs)
    editor = pooled if strength == "standard" else PrivacyRemover(fps, pooled, strength)
    removed = run_editor(editor, frames, mask, track)
    del frames, mask
    saved = video.encode_decode(removed, fps, codec="h264", crf=23, quantize="truncate")
    del removed
    tmp = out.with_name("tmp_" + out.name)
    video.write_video(tmp, saved, fps, dither=False, overwrite=True)
    tmp.replace(out)


# ------------------------------------------------------------------ reading

class Geometry:
    """A file's face track, skin mask (uint8, [T,H,W]) and crop squares."""

    def __init__(self, inp: Path):
        from crops import CROP_MARGIN

        info = video.probe_video(inp)
        self.fps = info.fps
        tracker = face.FaceTracker(self.fps)
        for chunk in video.iter_frames(inp, chunk_frames=CHUNK, lazy=True):
            tracker.update(chunk)
        self.track = tracker.finish()
        masker = face.SkinMasker(self.track)
        self.masks = np.concatenate([(masker(c) * 255).round().astype(np.uint8)
                                     for c in video.iter_frames(inp, chunk_frames=CHUNK)])
        self.squares = face.crop_squares(self.track, margin=CROP_MARGIN)


def measure(path: Path, geo: Geometry, reference: Path | None) -> tuple[rppg.ColourTraces, np.ndarray, dict]:
    """Stream ``path``: colour traces through the skin mask, face crops, and PSNR/SSIM against ``reference``."""
    from crops import CROP_PX
    from skimage.metrics import structural_similarity

    traces, crops = [], []
    sq_error, values, ssims, start = 0.0, 0, [], 0
    refs = video.iter_frames(reference, chunk_frames=CHUNK) if reference is not None else None
    n_total = len(geo.masks)
    ssim_at = set(np.linspace(0, n_total - 1, 6).round().astype(int).tolist())
    for chunk in video.iter_frames(path, chunk_frames=CHUNK):
        stop = start + len(chunk)
        mask = geo.masks[start:stop].astype(np.float32) / 255.0
        traces.append(rppg.read_traces(chunk, mask, methods=rppg.METHODS))
        crops.append(face.cut_crops(chunk, geo.squares[start:stop], CROP_PX)[0].astype(np.float16))
        if refs is not None:
            ref = next(refs)
            sq_error += float(((chunk - ref) ** 2).sum(dtype=np.float64))
            values += chunk.size
            for i in sorted(ssim_at & set(range(start, stop))):
                ssims.append(structural_similarity(chunk[i - start], ref[i - start], channel_axis=-1,
                                                   data_range=1.0))
        start = stop
    if start != n_total:
        raise RuntimeError(f"{path} has {start} frames, its input {n_total}")
    quality = {}
    if refs is not None:
        mse = sq_error / max(values, 1)
        quality = dict(psnr_db=PSNR_CAP_DB if mse <= 0 else min(PSNR_CAP_DB, 10 * math.log10(1 / mse)),
                       ssim=float(np.mean(ssims)))
    return rppg.ColourTraces.join(traces), np.concatenate(crops), quality


def classical_readings(traces: rppg.ColourTraces, fps: float) -> dict:
    out = {}
    for name in rppg.METHODS:
        pulse = rppg.pulse_of(name, traces, fps)
        out[name] = dict(hr_bpm=estimate_hr(pulse, fps), pulse=pulse)
    return out


def _snr(pulse, fps, hr_bpm) -> float | None:
    return None if hr_bpm is None or not np.isfinite(hr_bpm) else float(snr_db(pulse, fps, hr_bpm))


# ------------------------------------------------------------------ one case

def run_case(case: str, folder: Path, removal_args: list[str], editor_kwargs: dict) -> None:
    """Make the case's outputs and store each file's classical pulses, quality and crops."""
    folder.mkdir(parents=True, exist_ok=True)
    inp, true_hr = input_of(case, folder)
    geo = None
    kinds = ["input", *PATHS, "edit"]
    for kind in kinds:
        store = folder / f"read_{kind}.npz"
        if store.exists():
            continue
        if geo is None:
            geo = Geometry(inp)
        if kind == "input":
            path, ref = inp, None
        elif kind == "edit":
            with np.load(folder / "read_input.npz") as z:
                own = [estimate_hr(p, geo.fps) for p in z["pulses"]]
            base = true_hr if true_hr is not None else float(np.median(own))
            target = 110.0 if abs(base - 110.0) > 20 else 70.0
            (folder / "edit_target.json").write_text(json.dumps({"target_hr_bpm": target}))
            path, ref = output_of("edit", inp, folder, removal_args, editor_kwargs, target), inp
        else:
            path, ref = output_of(kind, inp, folder, removal_args, editor_kwargs), inp
        t0 = time.time()
        traces, crops, quality = measure(path, geo if kind == "input" else Geometry(path), ref)
        pulses = classical_readings(traces, geo.fps)
        tmp = store.with_name("tmp_" + store.name)
        np.savez(tmp, pulses=np.stack([pulses[m]["pulse"] for m in rppg.METHODS]), crops=crops,
                 fps=geo.fps, quality=json.dumps(quality))
        tmp.replace(store)
        print(f"{case} {kind}: read in {time.time() - t0:.0f} s {quality}", flush=True)


def learned_pulses(folder: Path, net, net_key: str) -> dict:
    """The learned reader's waveform per stored file, cached beside it per weights version."""
    from reader import read_wave

    cache = folder / f"learned_{net_key}.npz"
    waves = {}
    if cache.exists():
        with np.load(cache) as z:
            waves = {k: z[k] for k in z.files}
    missing = [s for s in sorted(folder.glob("read_*.npz")) if s.stem.removeprefix("read_") not in waves]
    for store in missing:  # outputs read since the cache was written
        with np.load(store) as z:
            waves[store.stem.removeprefix("read_")] = read_wave(net, z["crops"])
    if missing:
        tmp = cache.with_name("tmp_" + cache.name)
        np.savez(tmp, **waves)
        tmp.replace(cache)
    return waves


def rows_of_case(case: str, folder: Path, net=None, net_key: str | None = None) -> list[dict]:
    """One row per reader x output of the case (what ``run_case`` stored)."""
    _, true_hr = input_of(case, folder)
    stored = {}
    for kind in ["input", *PATHS, "edit"]:
        store = folder / f"read_{kind}.npz"
        if store.exists():
            with np.load(store) as z:
                stored[kind] = dict(pulses=dict(zip(rppg.METHODS, z["pulses"])), fps=float(z["fps"]),
                                    quality=json.loads(str(z["quality"])))
    if "input" not in stored:
        return []
    if net is not None:
        for kind, wave in learned_pulses(folder, net, net_key).items():
            if kind in stored:
                stored[kind]["pulses"][LEARNED] = wave
    fps = stored["input"]["fps"]
    target = json.loads((folder / "edit_target.json").read_text())["target_hr_bpm"] if "edit" in stored else None
    rows = []
    for reader, before_pulse in stored["input"]["pulses"].items():
        before = estimate_hr(before_pulse, fps)
        original = true_hr if case.startswith("synth_") else before
        snr_before = _snr(before_pulse, fps, original)
        for kind in [*PATHS, "edit"]:
            if kind not in stored or reader not in stored[kind]["pulses"]:
                continue
            pulse = stored[kind]["pulses"][reader]
            after = estimate_hr(pulse, fps)
            snr_after = _snr(pulse, fps, original)
            row = dict(case=case, path=kind, reader=reader, original_hr_bpm=original, true_hr_bpm=true_hr,
                       hr_before_bpm=before, hr_after_bpm=after,
                       within5_original=bool(abs(after - original) <= WITHIN_BPM),
                       snr_before_db=snr_before, snr_after_db=snr_after,
                       snr_drop_db=None if snr_before is None else snr_before - snr_after,
                       before_read_truth=None if true_hr is None else bool(abs(before - true_hr) <= WITHIN_BPM),
                       **stored[kind]["quality"])
            if true_hr is not None and case.startswith("real_"):
                row["within5_known"] = bool(abs(after - true_hr) <= WITHIN_BPM)
            if kind == "edit":
                row["target_hr_bpm"] = target
                row["within5_target"] = bool(abs(after - target) <= WITHIN_BPM)
            rows.append(row)
    return rows


# ------------------------------------------------------------------ tables

def _f(x, digits=1) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def summarise(rows: list[dict]) -> str:
    """Markdown: per save path, a table of case x reader (HR before -> after, SNR drop), and a verdict."""
    readers = [r for r in [*rppg.METHODS, LEARNED] if any(row["reader"] == r for row in rows)]
    case_names = list(dict.fromkeys(row["case"] for row in rows))
    by = {(r["case"], r["path"], r["reader"]): r for r in rows}
    lines = []
    for kind in [*PATHS, "edit"]:
        if not any(r["path"] == kind for r in rows):
            continue
        title = ("edit --target-hr, crf 23: HR read after the edit (**bold**: within 5 bpm of the target)"
                 if kind == "edit" else f"removal, {kind}: HR before → after, SNR drop at the original HR (dB); "
                                        "**bold**: after within 5 bpm of the original HR")
        lines += [f"#### {title}", "",
                  "| case | original HR | PSNR / SSIM | " + " | ".join(readers) + " |",
                  "|---|---|---|" + "---|" * len(readers)]
        for case in case_names:
            any_row = next((by[(case, kind, r)] for r in readers if (case, kind, r) in by), None)
            if any_row is None:
                continue
            if case.startswith("synth_"):
                orig = f"{any_row['true_hr_bpm']:.1f} (true)"
            else:
                orig = "each reader's own" + (f"; listed {any_row['true_hr_bpm']:.0f}" if any_row["true_hr_bpm"] else "")
            if kind == "edit":
                orig += f"; target {any_row['target_hr_bpm']:.0f}"
            cells = []
            for r in readers:
                row = by.get((case, kind, r))
                if row is None:
                    cells.append("")
                    continue
                if kind == "edit":
                    cell = f"{row['hr_after_bpm']:.0f}"
                    cells.append(f"**{cell}**" if row["within5_target"] else cell)
                    continue
                cell = f"{row['hr_before_bpm']:.0f}→{row['hr_after_bpm']:.0f}"
                cell = f"**{cell}**" if row["within5_original"] else cell
                cells.append(f"{cell} ({_f(row['snr_drop_db'])})")
            lines.append(f"| {case} | {orig} | {_f(any_row.get('psnr_db'))} / {_f(any_row.get('ssim'), 4)} | "
                         + " | ".join(cells) + " |")
        lines.append("")
    removal = [r for r in rows if r["path"] in PATHS]
    if removal:
        held = [r for r in removal if r["within5_original"]]
        lines.append(f"Removal: {len(held)} of {len(removal)} reader x case x path readings still within "
                     f"{WITHIN_BPM:.0f} bpm of the original HR.")
        for kind in PATHS:
            sub = [r for r in removal if r["path"] == kind]
            if not sub:
                continue
            bad = sorted({r["case"] for r in sub if r["within5_original"]})
            drops = [r["snr_drop_db"] for r in sub if r["snr_drop_db"] is not None and r["snr_before_db"] is not None
                     and r["snr_before_db"] >= 0]
            lines.append(f"* {kind}: {sum(r['within5_original'] for r in sub)}/{len(sub)} within 5 bpm "
                         f"(cases: {', '.join(bad) or 'none'}); SNR drop where SNR before ≥ 0 dB: median "
                         f"{_f(float(np.median(drops)) if drops else None)} dB, "
                         f"{sum(d >= 15 for d in drops)}/{len(drops)} ≥ 15 dB")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/physiolatent-removal"))
    ap.add_argument("--only", choices=["real", "synth"])
    ap.add_argument("--cases", nargs="*", help="only these case names (e.g. real_evm_face synth_tone9_seed0)")
    ap.add_argument("--tones", type=int, nargs="*", default=list(range(1, 11)))
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--removal-args", default="", help="extra arguments for the command-line removals")
    ap.add_argument("--editor-kwargs", default="{}", help="JSON keyword arguments for the node path's PulseEditor, "
                                                          "and its removal 'strength' (default max, as the node)")
    ap.add_argument("--no-learned", action="store_true", help="skip the learned reader")
    ap.add_argument("--learned-seed", type=int, default=0)
    ap.add_argument("--summarise", action="store_true", help="only print the tables of what is stored")
    args = ap.parse_args(argv)
    removal_args, editor_kwargs = shlex.split(args.removal_args), json.loads(args.editor_kwargs)
    tag = hashlib.sha1(json.dumps([removal_args, editor_kwargs]).encode()).hexdigest()[:8]
    root = args.out / f"removal_{tag}"
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(json.dumps(dict(removal_args=removal_args, editor_kwargs=editor_kwargs)))
    names = args.cases or cases(args.only, args.tones, args.seeds)
    if not args.summarise:
        for case in names:
            t0 = time.time()
            try:
                run_case(case, root / case, removal_args, editor_kwargs)
            except Exception as exc:  # noqa: BLE001 (one failing clip must not stop the others: reported, skipped)
                print(f"{case}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            print(f"{case}: done in {time.time() - t0:.0f} s", flush=True)
    net = net_key = None
    if not args.no_learned:
        import torch
        from reader import load_reader, weights_path

        torch.set_num_threads(1)
        meta = json.loads(weights_path(args.learned_seed).with_suffix(".json").read_text()) \
            if weights_path(args.learned_seed).exists() else None
        net = load_reader(args.learned_seed)
        meta = meta or json.loads(weights_path(args.learned_seed).with_suffix(".json").read_text())
        net_key = f"seed{args.learned_seed}_steps{meta['steps']}"
    rows = []
    for case in names:
        if (root / case).exists():
            rows += rows_of_case(case, root / case, net, net_key)
    (root / "rows.json").write_text(json.dumps(rows, indent=0))
    print(f"{len(rows)} rows -> {root / 'rows.json'}" + (f" (learned reader {net_key})" if net_key else ""))
    print(summarise(rows))


if __name__ == "__main__":
    main()
