"""Command line: ``python -m physiolatent_core {edit,remove,restore,estimate,demo,batch,train,evaluate}``.

Argument parsing and printing only: every job is a ``pipeline.JobRequest`` run by
``pipeline.run_job`` (read -> track -> edit -> write -> verify -> report), which
describes the file *as saved*. Errors the user can act on (``PhysioLatentError``) print
as ``error: <message>`` on stderr with exit code 2 and no traceback; the pipeline
removes what a failing job wrote.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError, PhysioLatentError
from .demo import run_demo
from .pipeline import JobRequest, NetworkFiles, run_job
from .restore import RestoreRequest, run_restore
from .rppg import DEFAULT_METHODS
from .video import X264_PRESETS


# --------------------------------------------------------------------------- arguments


def _add_common(p: argparse.ArgumentParser, output: bool = True, files: bool = True) -> None:
    """Options shared by the subcommands. ``output``: the command writes a video (edit,
    remove); ``files``: it reads a user's file and may name its report/figure (not demo)."""
    if files:
        p.add_argument("--fps", type=float, help="frame rate (required for a folder of frames; overrides the file's)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated rPPG readers for verification, of green chrom pos pca ica lgi pbv omit "
                        "(mean skin colour) and ssr (skin pixels' colour distribution), or all (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    if files:
        default = " (default: OUT + %s, e.g. out.mp4%s)" if output else " (default: none)"
        p.add_argument("--report", help="report JSON path" + (default % ((".report.json",) * 2) if output else default))
        p.add_argument("--figure", help="pulse/spectrum figure PNG path" + (default % ((".png",) * 2) if output else default))
        p.add_argument("--no-figure", action="store_true", help="do not draw the figure")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    if output or not files:
        p.add_argument("--crf", type=int, default=18, help="H.264 quality for .mp4 outputs, 0-51 (default 18)")
        p.add_argument("--preset", default="medium", choices=X264_PRESETS,
                       help="x264 speed preset for .mp4 outputs (default medium, as ComfyUI's SaveVideo)")
    if output:
        p.add_argument("--resume", action="store_true",
                       help="continue a run of this same command that stopped (Ctrl-C, a crash): its finished "
                            "segments in OUT.partial/ are kept, only the rest is edited and encoded")
        p.add_argument("--no-verify", action="store_true",
                       help="skip reading the saved file back (faster; the report then holds no after-edit "
                            "readings and no figure is drawn)")
        p.add_argument("--bit-depth", type=int, default=8, choices=(8, 10, 16),
                       help="bits per colour sample of the output: 8 (default), 10 for .mp4 (10-bit H.264) or "
                            ".mkv, 16 for .mkv (FFV1) or PNG frames; for 10-bit and deeper sources")
        p.add_argument("--robust-to", choices=("lossless", "h264"),
                       help="edit strength for where the video goes: default matches the output "
                            "(.mp4 -> h264; .mkv or a PNG folder -> lossless)")
        p.add_argument("--amplitude", type=float,
                       help="training-free: fixed RMS of the injected pulse as a fraction of the skin's green "
                            "value (e.g. 0.0035 = 0.35 %%); default: chosen for --robust-to and raised where "
                            "estimators would still misread the target (the report's injected_rms)")
        p.add_argument("--min-psnr", type=float,
                       help="training-free: fidelity floor in dB (PSNR of the output against the input over "
                            "whole frames, predicted before writing); to keep it, strength raises stop and the "
                            "change is spread evenly over the face (an edit also removes less of the own "
                            "pulse). Default 52 for --robust-to lossless, none for h264; 0 switches it off "
                            "(the report's editor.predicted_psnr_db)")
        p.add_argument("--key-out", metavar="KEY.json",
                       help="also write a restore key: what was changed, compressed and encrypted (AES-GCM), so "
                            "`restore OUT --key KEY.json` gives the original frames back (exactly from a .mkv "
                            "or PNG output). Keep it private: it holds the original pulse")


def _add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=("training-free", "physiolatent"), default="training-free",
                   help="training-free editor (default, CPU, no weights) or the paper's network")
    p.add_argument("--vae", help="physiolatent: CogVideoX VAE .safetensors (e.g. ComfyUI/models/vae/cogvideox_vae.safetensors)")
    p.add_argument("--adapter", help="physiolatent: trained adapter .safetensors (python -m physiolatent_core train)")
    p.add_argument("--clip", help="physiolatent: CLIP-L text encoder .safetensors, for adapters conditioned on CLIP")
    p.add_argument("--device", default="auto", help="physiolatent: cuda, cpu or auto (default)")
    p.add_argument("--crop-size", type=int, default=256, help="physiolatent: face crop side, multiple of 8 (default 256)")


def build_parser(network: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m physiolatent_core",
        description="Edit, remove or verify the heart-rate (rPPG) signal in a face video.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{edit,remove,restore,estimate,demo,batch,train,evaluate}")

    p = sub.add_parser("edit", help="set the pulse to a target heart rate")
    p.add_argument("input", help="video file (.mp4 .mov .mkv .avi .webm) or folder of PNG/JPG frames")
    p.add_argument("-o", "--output", required=True, help=".mp4 (H.264), .mkv (lossless) or folder/ (PNG)")
    p.add_argument("--target-hr", required=True,
                   help="target heart rate in bpm: 75, a linear ramp over the clip like 70:120, or "
                        "time=bpm points like '0s=70, 8s=110' (every face); or per face, numbered by first "
                        "appearance, left to right: '1=75,2=remove', '1=0s=70, 8s=110; 2=90' (faces not named "
                        "keep their own pulse)")
    p.add_argument("--hrv-rmssd", type=float, metavar="MS",
                   help="training-free: heart-rate variability of the injected pulse as RMSSD in ms (e.g. 45; "
                        "resting adults ~10-100), beat by beat with respiratory sinus arrhythmia")
    p.add_argument("--resp-rate", metavar="BREATHS_PER_MIN",
                   help="training-free: breathing rate of the injected pulse in breaths/min, 4-40: 14, a ramp "
                        "like 12:18, or time=rate points like '0s=12, 30s=18'")
    _add_network_options(p)
    _add_common(p)

    p = sub.add_parser("remove", help="remove the pulse (or replace it by a decoy heart rate)")
    p.add_argument("input", help="video file or folder of frames")
    p.add_argument("-o", "--output", required=True, help=".mp4 (H.264), .mkv (lossless) or folder/ (PNG)")
    p.add_argument("--decoy-hr", help="inject this heart rate (bpm) instead of pulse-band noise")
    p.add_argument("--strength", choices=("standard", "strong", "max"),
                   help="training-free: what removal takes out. standard: the pulse that pooled skin colour "
                        "shows; strong / max (default): also every small pulse-band colour change of the skin "
                        "at every scale, in a grid that follows the face, and the head's sub-pixel pulse-band "
                        "motion (max leaves less as content); PSNR >= 45 dB unless --min-psnr says otherwise")
    _add_network_options(p)
    _add_common(p)

    p = sub.add_parser("restore", help="undo an edit or removal made with --key-out")
    p.add_argument("input", help="the edited or removed video exactly as written (any change is refused)")
    p.add_argument("--key", required=True, metavar="KEY.json", help="the key written by --key-out for that file")
    p.add_argument("-o", "--output", required=True,
                   help=".mkv or folder/ (the original frames bit-exactly) or .mp4 (through H.264 at --crf)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality for an .mp4 output, 0-51 (default 18)")
    p.add_argument("--preset", default="medium", choices=X264_PRESETS, help="x264 speed preset (default medium)")
    p.add_argument("--no-verify", action="store_true", help="skip comparing the restored file with the original")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    p = sub.add_parser("estimate", help="read the heart rate of a face video")
    p.add_argument("input", help="video file or folder of frames")
    _add_common(p, output=False)

    p = sub.add_parser("demo", help="synthetic subject (true HR 68) edited to 100 bpm, verified")
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--duration", type=float, default=12.0, help="clip length in seconds (default 12)")
    p.add_argument("--size", default="360x480", help="frame size HEIGHTxWIDTH (default %(default)s)")
    p.add_argument("--skin-tone", type=int, metavar="1..10",
                   help="render the subject's skin at this Monk Skin Tone scale tone (default: as photographed, ~5)")
    _add_common(p, output=False, files=False)

    _add_batch(sub)

    # The paper's network (torch, diffusers) is imported only when its commands are asked
    # for, so the training-free commands start fast.
    p_train = sub.add_parser("train", help="train the PhysioLatent adapter (needs a CogVideoX VAE file)")
    p_eval = sub.add_parser("evaluate", help="the paper's tables for a trained adapter")
    if network:
        from .evaluate import add_evaluate_arguments
        from .train import add_train_arguments

        add_train_arguments(p_train)
        add_evaluate_arguments(p_eval)
    return parser


def _add_batch(sub) -> None:
    p = sub.add_parser("batch", help="edit or anonymise a whole dataset into the same layout (resumable)",
                       description="Every clip of a dataset edited (or its pulse removed) into the same layout "
                                   "under OUT_ROOT, with the new ground truth in the dataset's format; rerun the "
                                   "same command to resume. See docs/DATASETS.md.")
    p.add_argument("root", help="dataset root (UBFC-rPPG, PURE, MMPD or a folder of videos; detected) or a "
                                ".csv/.jsonl manifest (columns path, optional mode and target)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_ROOT", help="new root for the output dataset")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--target-hr", help="target policy: 100 (every clip; also 70:120 or '0s=70, 8s=110'), "
                                          "60,80,100 (dealt out in clip order), uniform:40-180 (a seeded draw "
                                          "per clip), balanced:50-150 (a flat histogram over the band, matched "
                                          "to each clip's measured HR by rank)")
    what.add_argument("--remove", action="store_true", help="remove the pulse of every clip (anonymise)")
    p.add_argument("--decoy-hr", help="with --remove: show this heart rate (bpm) instead of pulse-band noise")
    p.add_argument("--layout", choices=("ubfc", "pure", "mmpd", "folder", "manifest"),
                   help="the dataset's layout (default: detected from the folder)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local process pool (default) or Ray (pip install 'physiolatent[ray]')")
    p.add_argument("--workers", type=int, help="clips at once (default: one per core)")
    p.add_argument("--ray-address", help="ray: the cluster to join, e.g. ray://head:10001 or auto "
                                         "(default: start a local Ray)")
    p.add_argument("--gpus-per-clip", type=float, default=0.0,
                   help="ray: GPUs each clip's task reserves (e.g. 1 or 0.5 for the network; default 0)")
    p.add_argument("--retries", type=int, default=2,
                   help="ray: times a clip is retried when its worker dies (default 2)")
    p.add_argument("--figures", action="store_true", help="also draw each clip's pulse figure (slower)")
    _add_network_options(p)
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated rPPG readers for verification (as for edit; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality for .mp4/.mov outputs, 0-51 (default 18)")
    p.add_argument("--preset", default="medium", choices=X264_PRESETS, help="x264 preset (default medium)")
    p.add_argument("--no-verify", action="store_true", help="skip reading each saved clip back (faster; no "
                                                            "after-edit readings in the summary)")
    p.add_argument("--robust-to", choices=("lossless", "h264"), help="edit strength (default: matches each output)")
    p.add_argument("--amplitude", type=float, help="training-free: fixed RMS of the injected pulse (as for edit)")
    p.add_argument("--min-psnr", type=float, help="training-free: fidelity floor in dB (as for edit)")
    p.add_argument("--hrv-rmssd", type=float, help="training-free: RMSSD (ms) of every injected pulse (as for edit)")
    p.add_argument("--resp-rate", help="training-free: breathing rate of every injected pulse (as for edit)")
    p.add_argument("--bit-depth", type=int, default=8, choices=(8, 10, 16),
                   help="bits per colour sample of each output (as for edit; default 8)")
    p.add_argument("--strength", choices=("standard", "strong", "max"), help="with --remove: as for remove")


# --------------------------------------------------------------------------- requests


def _request(args, mode: str) -> JobRequest:
    """The job the parsed arguments ask for (``pipeline.JobRequest``)."""
    network = _network(args)
    writes = mode != "estimate"
    figure = False if args.no_figure else (Path(args.figure).expanduser() if args.figure else None)
    return JobRequest(
        input=Path(args.input), mode=mode, output=Path(args.output).expanduser() if writes else None,
        target=getattr(args, "target_hr", None), decoy=getattr(args, "decoy_hr", None),
        hrv_rmssd_ms=getattr(args, "hrv_rmssd", None), resp_rate_bpm=getattr(args, "resp_rate", None),
        methods=_methods(args.methods), report=Path(args.report).expanduser() if args.report else None,
        figure=figure, fps=args.fps, seed=args.seed, overwrite=args.overwrite, quiet=args.quiet, network=network,
        **({} if not writes else dict(crf=args.crf, preset=args.preset, robust_to=args.robust_to,
                                       amplitude=args.amplitude, min_psnr_db=args.min_psnr,
                                       verify=not args.no_verify, key_out=args.key_out, bit_depth=args.bit_depth,
                                       strength=getattr(args, "strength", None), resume=args.resume)),
    )


def _network(args) -> NetworkFiles | None:
    if getattr(args, "method", "training-free") != "physiolatent":
        return None
    if not args.vae or not args.adapter:
        raise InputError("--method physiolatent needs --vae (CogVideoX VAE file) and --adapter (trained adapter).")
    return NetworkFiles(vae=Path(args.vae).expanduser(), adapter=Path(args.adapter).expanduser(),
                        clip=Path(args.clip).expanduser() if args.clip else None, device=args.device,
                        crop_size=args.crop_size)


def _batch_request(args):
    from .batch import BatchRequest

    return BatchRequest(
        root=Path(args.root), out_root=Path(args.output), target=args.target_hr, remove=args.remove,
        decoy=args.decoy_hr, layout=args.layout, engine=args.engine, workers=args.workers,
        ray_address=args.ray_address, gpus_per_clip=args.gpus_per_clip, retries=args.retries,
        methods=_methods(args.methods), crf=args.crf, preset=args.preset, robust_to=args.robust_to,
        amplitude=args.amplitude, min_psnr_db=args.min_psnr, seed=args.seed, verify=not args.no_verify,
        figures=args.figures, network=_network(args), quiet=args.quiet, hrv_rmssd_ms=args.hrv_rmssd,
        resp_rate=args.resp_rate, bit_depth=args.bit_depth, strength=args.strength)


def _methods(spec: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in spec.split(",") if m.strip())


def _size(spec: str) -> tuple[int, int]:
    try:
        size = tuple(int(s) for s in spec.lower().split("x"))
        assert len(size) == 2
    except (ValueError, AssertionError):
        raise InputError(f"--size must look like 360x480 (height x width), got {spec!r}.") from None
    return size


def _log(args, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _fmt_hr(value) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


# --------------------------------------------------------------------------- printing


def _print_summary(report: dict) -> None:
    v, s, inp = report["verify"] or {}, report["settings"], report["input"]
    lines = [f"input   {inp['path']}  {inp['width']}x{inp['height']}, {inp['fps']:.3g} fps, "
             f"{inp['num_frames']} frames ({inp['duration_s']:.1f} s)"]
    if report.get("true_hr_bpm") is not None:
        lines.append(f"true HR {report['true_hr_bpm']:.1f} bpm")
    if v:
        lines.append(f"HR before (median of estimators): {_fmt_hr(v.get('hr_bpm_median_before'))} bpm")
    if s["target_hr"]:
        lines.append(f"target  {s['target_hr']}")
    if s["decoy_hr"]:
        lines.append(f"decoy   {s['decoy_hr']}")
    e = report.get("editor") or {}
    if e.get("injected_rms") and e.get("injected_rms_base") and e["injected_rms"] > e["injected_rms_base"]:
        lines.append(f"strength raised to {100 * e['injected_rms']:.2f} % RMS (from {100 * e['injected_rms_base']:.2f} %): "
                     "the clip's own colour changes would outvote a weaker pulse")
    if e.get("predicted_misreads"):
        lines.append("predicted to misread the target even so: " + ", ".join(e["predicted_misreads"]))
    if not v:
        lines.append("not verified (--no-verify): read the saved file with `python -m physiolatent_core estimate`")
    else:
        lines.append("HR after, read from the saved file:")
    for name, hr in v.get("hr_bpm", {}).items():
        before = v.get("hr_bpm_before", {}).get(name)
        lines.append(f"  {name:6s} {_fmt_hr(hr)} bpm   (before {_fmt_hr(before)})")
    if report["command"] == "remove" and v.get("snr_db_before"):
        method = "pos" if "pos" in v["snr_db_before"] else next(iter(v["snr_db_before"]))
        before, after = v["snr_db_before"][method], v["snr_db_after"][method]
        if before is not None and after is not None:
            lines.append(f"pulse SNR at the original HR ({method}): {before:.1f} dB before, {after:.1f} dB after")
    if report.get("trajectory") and report["trajectory"]["mae_bpm"] is not None:
        lines.append(f"trajectory error (POS, sliding windows): {report['trajectory']['mae_bpm']:.1f} bpm")
    if report.get("vitals"):
        lines += [_vitals_line(report["vitals"], f"{which:6s} ", which) for which in ("before", "after")
                  if report["vitals"].get(which)]
    if v:
        fidelity = f"PSNR {v['psnr_db']:.1f} dB, SSIM {v['ssim']:.4f} against the input"
        if report.get("codec_reference"):
            c = report["codec_reference"]
            fidelity += f"; {c['psnr_db']:.1f} dB against the input through the same codec"
        lines.append(fidelity)
    if len(report.get("faces") or []) > 1:
        lines += _faces_lines(report["faces"])
    outs = report["outputs"]
    lines.append("wrote   " + ", ".join(p for p in (outs["video"], outs["report"], outs["figure"]) if p))
    if outs.get("key"):
        lines.append(f"key     {outs['key']} ({report['key']['bytes'] / 1e6:.1f} MB; keep it private: it restores "
                     "the original)")
    print("\n".join(lines))


def _faces_lines(faces: list[dict]) -> list[str]:
    """One line per face: where it is, what was asked, and its median HR before and after."""
    lines = [f"{len(faces)} faces (the lines above are face {next((f['id'] for f in faces if f['edited']), 1)}'s):"]
    for f in faces:
        box = ",".join(f"{v:.0f}" for v in f["box"])
        what = f["target"] if f["edited"] else f"untouched ({f.get('note', 'no target')})"
        hr = ""
        if f.get("hr_after"):
            hr = (f"; HR {_fmt_hr(_median(f['hr_before'].values()))} -> {_fmt_hr(_median(f['hr_after'].values()))} "
                  "bpm (median of readers)")
        lines.append(f"  face {f['id']}: box {box}, frames {f['frames'][0]}-{f['frames'][1]}: {what}{hr}")
    return lines


def _median(values):
    import statistics

    finite = [v for v in values if v is not None]
    return statistics.median(finite) if finite else None


def _print_batch(summary: dict) -> None:
    c = summary["counts"]
    lines = [f"{summary['layout']} dataset, {c['clips']} clips: {c['done']} done ({c['skipped_as_done']} already "
             f"done before this run), {c['failed']} failed, {c['pending']} not done",
             f"engine  {summary['engine']}: {c['processed_this_run']} clips in {summary['seconds']:.1f} s"
             + (f" ({summary['clips_per_minute']:.1f} clips/min)" if summary["clips_per_minute"] else "")]
    for failure in summary["failures"][:10]:
        lines.append(f"  failed {failure['clip']}: {failure['reason']}")
    if len(summary["failures"]) > 10:
        lines.append(f"  ... {len(summary['failures']) - 10} more in summary.json")
    for name, key in (("HR before", "hr_before_bpm"), ("target", "target_hr_bpm"), ("HR after", "hr_after_bpm")):
        s = summary[key]
        if s["n"]:
            lines.append(f"{name:9s} {s['min']:5.1f}-{s['max']:5.1f} bpm, median {s['median']:5.1f} ({s['n']} clips)")
    if summary["hit_rate_by_reader"]:
        lines.append("readers that read the aim: " + ", ".join(
            f"{name} {100 * h['rate']:.0f} %" for name, h in summary["hit_rate_by_reader"].items()))
    if summary["psnr_db"]["n"]:
        p = summary["psnr_db"]
        lines.append(f"PSNR    {p['min']:.1f}-{p['max']:.1f} dB, median {p['median']:.1f}")
    lines.append(f"wrote   {summary['out_root']}; run records, summary.json and summary.png in "
                 f"{Path(summary['figure']).parent}")
    print("\n".join(lines))


def _print_restore(result: dict) -> None:
    lines = [f"restored {result['frames']} frames of {result['input']} -> {result['output']}"]
    if result.get("bit_exact"):
        lines.append("the restored file decodes to the original frames exactly")
    elif result.get("psnr_db") is not None:
        lines.append(f"PSNR {result['psnr_db']:.2f} dB, SSIM {result['ssim']:.4f} against the original frames "
                     f"({result['output_codec']} output; .mkv restores them exactly)")
    print("\n".join(lines))


def _print_estimate(report: dict) -> None:
    # The estimate is the command's result: printed even with --quiet.
    checked = report["verify"]
    for name in report["settings"]["methods"]:
        hr, snr = checked["hr_bpm"][name], checked["snr_db"][name]
        print(f"{name:6s} {_fmt_hr(hr)} bpm   SNR {'n/a' if snr is None else f'{snr:5.1f} dB'}")
    print(f"median {_fmt_hr(checked['hr_bpm_median'])} bpm")
    if report.get("vitals"):
        print(_vitals_line(report["vitals"], "vitals "))


def _vitals_line(vitals: dict, prefix: str = "", which: str = "after") -> str:
    """``HRV (pos): RMSSD 45 ms [good], SDNN ..; breathing 14.0 breaths/min [good]`` ('' if absent)."""
    read = vitals.get(which)
    if not read:
        return ""
    h, b = read["hrv"], read["breathing"]
    ms = lambda v: "n/a" if v is None else f"{v:.0f} ms"  # noqa: E731
    lf_hf = "" if h["lf_hf"] is None else f", LF/HF {h['lf_hf']:.2f}"
    rate = "n/a" if b["rate_bpm"] is None else f"{b['rate_bpm']:.1f} breaths/min"
    return (f"{prefix}HRV ({read['method']}): RMSSD {ms(h['rmssd_ms'])}, "
            f"SDNN {ms(h['sdnn_ms'])}{lf_hf} [{h['quality']}]; breathing {rate} [{b['quality']}]")


def _demo(args) -> dict:
    """Synthetic subject (true HR 68) -> input.mp4 -> edit to 100 bpm -> edited.mp4 + report + figure."""
    return run_demo(args.out, duration_s=args.duration, size=_size(args.size), skin_tone=args.skin_tone,
                    crf=args.crf, preset=args.preset, methods=_methods(args.methods), seed=args.seed,
                    overwrite=args.overwrite, quiet=args.quiet, log=lambda message: _log(args, message))


def _import_in_background(*modules: str) -> None:
    """Import slow modules (scipy.signal: ~1 s) in a daemon thread, so that they load
    beside the first decode pass instead of before it. A first use on the main thread
    waits for the import to finish (Python's per-module import lock)."""
    import importlib
    import threading

    def load():
        for name in modules:
            importlib.import_module(name)

    threading.Thread(target=load, name="imports", daemon=True).start()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(network=bool(argv) and argv[0] in ("train", "evaluate"))
    args = parser.parse_args(argv)
    if args.command in ("edit", "remove", "estimate", "demo"):
        _import_in_background("scipy.signal", "scipy.sparse.linalg")
    try:
        if args.command in ("edit", "remove", "estimate"):
            report = run_job(_request(args, args.command))
            if args.command == "estimate":
                _print_estimate(report)
            elif not args.quiet:
                _print_summary(report)
        elif args.command == "batch":
            from .batch import run_batch

            summary = run_batch(_batch_request(args), log=lambda message: _log(args, message))
            if not args.quiet:
                _print_batch(summary)
            return 1 if summary["counts"]["failed"] else 0
        elif args.command == "restore":
            result = run_restore(RestoreRequest(input=Path(args.input), key=Path(args.key), output=Path(args.output),
                                                crf=args.crf, preset=args.preset, overwrite=args.overwrite,
                                                verify=not args.no_verify, quiet=args.quiet))
            if not args.quiet:
                _print_restore(result)
        elif args.command == "train":
            from .train import main_train

            return main_train(args)
        elif args.command == "evaluate":
            from .evaluate import main_evaluate

            return main_evaluate(args)
        else:
            report = _demo(args)
            if not args.quiet:
                _print_summary(report)
    except PhysioLatentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
