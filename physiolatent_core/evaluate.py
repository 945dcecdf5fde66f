"""Evaluate a trained PhysioLatent adapter: the paper's tables from face-cropped test windows.

    python -m physiolatent_core evaluate --vae vae.safetensors --adapter adapter.safetensors \
        --dataset ubfc --data /path/UBFC --targets 60 80 100 120 --out eval/

For every window (``data.WindowDataset``: face crop, skin mask) and every target HR:
``v̂ = M·model(v, hr) + (1−M)·v`` and, with the classical estimators of ``rppg``
(``rppg.ESTIMATORS``, on the mask-weighted mean colour), the HR of the input and of
the output is estimated with ``rppg.hr.estimate_hr``.

Tables (markdown + JSON):
* Table 2 — per target HR: PSNR, SSIM (input vs output, whole crop, 0..1 range),
  input MAE/MAPE and output MAE/MAPE of the main estimator (POS).
* Table 4 — per estimator, averaged over targets: input/output MAE/MAPE.
* Removal — PSNR, SSIM, input/output SNR (``rppg.hr.snr_db``, rPPG-Toolbox definition)
  and ΔSNR, with ``remove=True``. The SNR's reference HR is the clip's ground truth
  when the dataset has one, else the POS HR of the input window.

MAPE (our definition; the paper's is unclear, see shared/paper.md §5):
``100 · |HR_estimated − HR_target| / HR_target``, averaged over windows. The ± values
are standard deviations over windows.

Figures: ``psd_<k>.png`` — POS power spectrum of input and outputs for a few windows.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from .atomic import atomic_path
from .errors import InputError

__all__ = ["add_evaluate_arguments", "evaluate_windows", "format_tables", "main_evaluate", "plot_psd"]

DEFAULT_TARGETS_BPM = (60.0, 80.0, 100.0, 120.0)
MAIN_METHOD = "pos"


def _to_frames(video: torch.Tensor) -> np.ndarray:
    """``[3,T,H,W]`` in [-1,1] -> ``[T,H,W,3]`` float32 0..1 (clipped: what a saved video holds)."""
    return ((rearrange(video, "c t h w -> t h w c").float().cpu().numpy() + 1) * 0.5).clip(0, 1).astype(np.float32)


def _quality(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two ``[T,H,W,3]`` 0..1 clips, averaged over frames (scikit-image)."""
    from skimage.metrics import structural_similarity  # noqa: PLC0415

    mse = ((a.astype(np.float64) - b) ** 2).reshape(len(a), -1).mean(axis=1)
    psnr = 10 * np.log10(1.0 / np.maximum(mse, 1e-10))  # identical frames: capped at 100 dB
    win = min(7, min(a.shape[1:3]) // 2 * 2 - 1)
    ssim = [structural_similarity(x, y, data_range=1.0, channel_axis=-1, win_size=win) for x, y in zip(a, b)]
    return float(np.mean(psnr)), float(np.mean(ssim))


def _hr_by_method(frames: np.ndarray, mask: np.ndarray, fps: float, methods: Sequence[str]) -> dict[str, float]:
    from . import rppg  # noqa: PLC0415

    rgb = rppg.extract_rgb(frames, mask)
    return {m: rppg.estimate_hr(rppg.ESTIMATORS[m](rgb, fps), fps) for m in methods}


def _pos_pulse(frames: np.ndarray, mask: np.ndarray, fps: float) -> np.ndarray:
    from . import rppg  # noqa: PLC0415

    return rppg.ESTIMATORS[MAIN_METHOD](rppg.extract_rgb(frames, mask), fps)


def evaluate_windows(
    edit: Callable[[torch.Tensor, torch.Tensor, float, bool], torch.Tensor],
    windows,
    targets_bpm: Sequence[float] = DEFAULT_TARGETS_BPM,
    methods: Sequence[str] | None = None,
    removal: bool = True,
    max_windows: int | None = None,
    psd_examples: int = 0,
) -> dict:
    """Run ``edit`` on every window and target and collect per-window records.

    Args:
        edit: ``(video [1,3,T,S,S] in [-1,1], mask [1,T,S,S], target_hr_bpm, remove) -> video [1,3,T,S,S]``,
            already composited inside the mask (``make_model_edit`` builds it from a model).
        windows: a ``data.WindowDataset`` (or any sequence of its item dicts).
        methods: estimator names (default: all of ``rppg.ESTIMATORS``).
        psd_examples: keep POS spectra of the first N windows for ``plot_psd``.
    Returns: JSON-able dict ``{"edit": [...], "removal": [...], "psd": [...], "methods": [...]}``.
    """
    from . import rppg  # noqa: PLC0415

    methods = list(methods or rppg.ESTIMATORS)
    unknown = [m for m in methods if m not in rppg.ESTIMATORS]
    if unknown:
        raise InputError(f"unknown rPPG estimators {unknown}; choose from {sorted(rppg.ESTIMATORS)}.")
    if MAIN_METHOD not in methods:
        methods = [MAIN_METHOD, *methods]
    n = len(windows) if max_windows is None else min(len(windows), max_windows)
    if n == 0:
        raise InputError("no windows to evaluate; check --data and --num-frames.")
    records, removals, spectra = [], [], []
    for i in range(n):
        item = windows[i]
        fps = float(item["fps"])
        video, mask = item["video"][None], item["mask"][None]
        frames_in, mask_np = _to_frames(item["video"]), item["mask"].numpy()
        hr_in = _hr_by_method(frames_in, mask_np, fps, methods)
        psd = {"window": i, "fps": fps, "outputs": {}}
        if i < psd_examples:
            f, p = rppg.power_spectrum(_pos_pulse(frames_in, mask_np, fps), fps)
            psd["freqs_bpm"], psd["input"] = f.tolist(), p.tolist()
        for target in targets_bpm:
            with torch.no_grad():
                frames_out = _to_frames(edit(video, mask, float(target), False)[0])
            psnr, ssim = _quality(frames_in, frames_out)
            hr_out = _hr_by_method(frames_out, mask_np, fps, methods)
            records.append({"window": i, "subject_id": item["subject_id"], "target_hr_bpm": float(target),
                            "source_hr_bpm": item["source_hr_bpm"], "psnr": psnr, "ssim": ssim,
                            "hr_in": hr_in, "hr_out": hr_out})
            if i < psd_examples:
                psd["outputs"][str(target)] = rppg.power_spectrum(_pos_pulse(frames_out, mask_np, fps), fps)[1].tolist()
        if removal:
            with torch.no_grad():
                frames_out = _to_frames(edit(video, mask, float(targets_bpm[0]), True)[0])
            psnr, ssim = _quality(frames_in, frames_out)
            ref = item["source_hr_bpm"] if np.isfinite(item["source_hr_bpm"]) else hr_in[MAIN_METHOD]
            pulse_in, pulse_out = _pos_pulse(frames_in, mask_np, fps), _pos_pulse(frames_out, mask_np, fps)
            removals.append({"window": i, "subject_id": item["subject_id"], "reference_hr_bpm": float(ref),
                             "psnr": psnr, "ssim": ssim, "snr_in_db": rppg.snr_db(pulse_in, fps, ref),
                             "snr_out_db": rppg.snr_db(pulse_out, fps, ref)})
            if i < psd_examples:
                psd["outputs"]["remove"] = rppg.power_spectrum(pulse_out, fps)[1].tolist()
        if i < psd_examples:
            spectra.append(psd)
    return {"methods": methods, "targets_bpm": [float(t) for t in targets_bpm], "edit": records,
            "removal": removals, "psd": spectra}


# --------------------------------------------------------------------------- tables


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))


def _errors(records, key: str, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(absolute error bpm, absolute percentage error) of ``records[key][method]`` vs the target."""
    est = np.array([r[key][method] for r in records], dtype=np.float64)
    tgt = np.array([r["target_hr_bpm"] for r in records], dtype=np.float64)
    ae = np.abs(est - tgt)
    return ae, 100.0 * ae / tgt


def summarize(results: dict) -> dict:
    """Aggregate the per-window records into the three tables (JSON-able)."""
    recs = results["edit"]
    table2 = []
    for target in results["targets_bpm"]:
        rs = [r for r in recs if r["target_hr_bpm"] == target]
        ae_in, ape_in = _errors(rs, "hr_in", MAIN_METHOD)
        ae_out, ape_out = _errors(rs, "hr_out", MAIN_METHOD)
        table2.append({"target_hr_bpm": target, "n": len(rs), "psnr": _mean_std([r["psnr"] for r in rs]),
                       "ssim": _mean_std([r["ssim"] for r in rs]), "input_mae": _mean_std(ae_in),
                       "input_mape": _mean_std(ape_in), "output_mae": _mean_std(ae_out),
                       "output_mape": _mean_std(ape_out)})
    table4 = []
    for m in results["methods"]:
        ae_in, ape_in = _errors(recs, "hr_in", m)
        ae_out, ape_out = _errors(recs, "hr_out", m)
        table4.append({"method": m, "input_mae": _mean_std(ae_in), "input_mape": _mean_std(ape_in),
                       "output_mae": _mean_std(ae_out), "output_mape": _mean_std(ape_out)})
    removal = None
    if results["removal"]:
        rs = results["removal"]
        snr_in = np.array([r["snr_in_db"] for r in rs])
        snr_out = np.array([r["snr_out_db"] for r in rs])
        removal = {"n": len(rs), "psnr": _mean_std([r["psnr"] for r in rs]), "ssim": _mean_std([r["ssim"] for r in rs]),
                   "snr_in_db": _mean_std(snr_in), "snr_out_db": _mean_std(snr_out),
                   "delta_snr_db": _mean_std(snr_out - snr_in)}
    return {"table2": table2, "table4": table4, "removal": removal}


def format_tables(summary: dict) -> str:
    """Markdown for the three tables (mean (±std))."""
    f = lambda ms, d=2: f"{ms[0]:.{d}f} (±{ms[1]:.{d}f})"  # noqa: E731
    lines = ["## Table 2 — editing accuracy and fidelity (POS)", "",
             "| Target HR (bpm) | n | PSNR (dB) | SSIM | Input MAE (bpm) | Input MAPE (%) | Output MAE (bpm) | Output MAPE (%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary["table2"]:
        lines.append(f"| {r['target_hr_bpm']:g} | {r['n']} | {f(r['psnr'])} | {f(r['ssim'], 4)} | {f(r['input_mae'])} | "
                     f"{f(r['input_mape'])} | {f(r['output_mae'])} | {f(r['output_mape'])} |")
    lines += ["", "## Table 4 — per rPPG estimator (all targets)", "",
              "| Estimator | Input MAE (bpm) | Input MAPE (%) | Output MAE (bpm) | Output MAPE (%) |", "|---|---|---|---|---|"]
    for r in summary["table4"]:
        lines.append(f"| {r['method']} | {f(r['input_mae'])} | {f(r['input_mape'])} | {f(r['output_mae'])} | {f(r['output_mape'])} |")
    if summary["removal"]:
        r = summary["removal"]
        lines += ["", "## Removal mode", "", "| n | PSNR (dB) | SSIM | Input SNR (dB) | Output SNR (dB) | ΔSNR (dB) |",
                  "|---|---|---|---|---|---|",
                  f"| {r['n']} | {f(r['psnr'])} | {f(r['ssim'], 4)} | {f(r['snr_in_db'])} | {f(r['snr_out_db'])} | {f(r['delta_snr_db'])} |"]
    lines += ["", "MAPE = 100·|HR_est − HR_target| / HR_target; ± = std over windows; SNR as rPPG-Toolbox "
              "(rppg.hr.snr_db) around the clip's reference HR."]
    return "\n".join(lines) + "\n"


def plot_psd(spectra: list[dict], out_dir) -> list[Path]:
    """One PNG per kept window: POS power spectrum of the input and of each output (log power)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    paths = []
    for s in spectra:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        freqs = np.asarray(s["freqs_bpm"])
        ax.semilogy(freqs, np.asarray(s["input"]) + 1e-20, "k", lw=2, label="input")
        for name, p in s["outputs"].items():
            ax.semilogy(freqs, np.asarray(p) + 1e-20, label=f"target {name}" if name != "remove" else "removal")
        ax.set_xlabel("frequency (bpm)"), ax.set_ylabel("POS power"), ax.legend(fontsize=7)
        ax.set_title(f"window {s['window']} ({s['fps']:.1f} fps)")
        fig.tight_layout()
        path = Path(out_dir) / f"psd_{s['window']}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def make_model_edit(model, device="cpu"):
    """``edit`` callable for ``evaluate_windows`` from a PhysioLatent model (composites inside the mask)."""

    def edit(video, mask, target_hr_bpm, remove):
        video, mask = video.to(device), mask.to(device)
        out = model(video, torch.tensor([target_hr_bpm], device=device), remove=remove).float()
        m = mask[:, None]
        return m * out + (1 - m) * video

    return edit


def write_report(results: dict, out_dir) -> dict:
    """results.json (per-window + summary), tables.md, psd_*.png into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    payload = {"summary": summary, **{k: v for k, v in results.items() if k != "psd"}}
    for name, text in (("results.json", json.dumps(payload, indent=1)), ("tables.md", format_tables(summary))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
    plot_psd(results["psd"], out)
    return summary


# --------------------------------------------------------------------------- CLI


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--vae", required=True, help="VAE weights (.safetensors) the adapter was trained with")
    parser.add_argument("--adapter", required=True, help="trained adapter (.safetensors from train)")
    parser.add_argument("--dataset", default="folder", choices=["ubfc", "pure", "mmpd", "folder"])
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--split", default="test", choices=["test", "all"], help="subject-wise test split or every clip")
    parser.add_argument("--val-frac", type=float, default=0.1)
    parser.add_argument("--test-frac", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0, help="must match training's split_seed")
    parser.add_argument("--targets", type=float, nargs="+", default=list(DEFAULT_TARGETS_BPM))
    parser.add_argument("--methods", nargs="+", default=None, help="rPPG estimators (default: all)")
    parser.add_argument("--num-frames", type=int, default=161, help="window length (frames); ≥ 4 s is advised")
    parser.add_argument("--size", type=int, default=256, help="face crop side (multiple of 8)")
    parser.add_argument("--crop", default="face", choices=["face", "center", "none"])
    parser.add_argument("--max-windows", type=int, default=None)
    parser.add_argument("--no-removal", action="store_true", help="skip the removal-mode table")
    parser.add_argument("--psd-examples", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clip-path", default=None, help="CLIP-L text encoder, for adapters trained with hr_mode clip")
    parser.add_argument("--out", default="eval", help="output folder")
    return parser


def main_evaluate(args: argparse.Namespace) -> int:
    from .data import WindowDataset, read_dataset, split_clips  # noqa: PLC0415
    from .model import PhysioLatent, load_adapter, load_clip_text_model, load_vae  # noqa: PLC0415
    from .train import resolve_device  # noqa: PLC0415

    device = resolve_device(args.device)
    vae = load_vae(args.vae, device=device)
    clip = load_clip_text_model(args.clip_path, device=device) if args.clip_path else None
    adapter = load_adapter(args.adapter, vae, clip_model=clip, clip_path=args.clip_path, device=device)
    model = PhysioLatent(vae, adapter).eval()
    clips = read_dataset(args.dataset, args.data)
    if args.split == "test":
        clips = split_clips(clips, args.val_frac, args.test_frac, args.split_seed)[2]
    windows = WindowDataset(clips, args.num_frames, args.size, args.crop, cache=False)
    results = evaluate_windows(make_model_edit(model, device), windows, args.targets, args.methods,
                               removal=not args.no_removal, max_windows=args.max_windows,
                               psd_examples=args.psd_examples)
    write_report(results, args.out)
    print((Path(args.out) / "tables.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main_evaluate(add_evaluate_arguments(argparse.ArgumentParser(description=__doc__)).parse_args()))
