"""Learning check of the PhysioLatent adapter with a real (tiny) CogVideoX VAE, on CPU or GPU.

Trains the adapter (HR conditioner, latent fusion, FiLM, conv_out) on a few synthetic
face clips toward one target HR and prints the POS HR of the composited output before
and after, on the training clips (overfit check) and on a held-out subject:

    python scripts/learning_check.py --steps 150            # tiny VAE fixture if present, else random tiny VAE
    python scripts/learning_check.py --vae cogvideox_vae.safetensors --size 64 --device cuda

Every ``--eval-every`` steps it prints the current HRs, so a run cut short still reports.
The numbers go to docs/BENCHMARKS.md; the fast version of this check is
tests/test_train.py (same loop on a linear stand-in VAE).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from physiolatent_core.data import WindowDataset, read_synthetic
from physiolatent_core.losses import masked_mean_rgb
from physiolatent_core.model import PhysioLatent, PhysioLatentAdapter, adapter_config_tiny, build_vae, load_vae, tiny_vae_config
from physiolatent_core.rppg.hr import estimate_hr
from physiolatent_core.rppg.torch_pos import pos_torch
from physiolatent_core.train import TrainConfig, Trainer

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny_cogvideox_vae.safetensors"


def pos_hr(trainer: Trainer, item: dict, target: float) -> float:
    video, mask = item["video"][None].to(trainer.device), item["mask"][None].to(trainer.device)
    with torch.no_grad():
        out = trainer.edit(video, mask, torch.tensor([target]))
    return estimate_hr(pos_torch(masked_mean_rgb(out, mask), item["fps"])[0].float().cpu().numpy(), item["fps"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", default=None, help="VAE .safetensors (default: the tiny test fixture, else a random tiny VAE)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--target", type=float, default=90.0)
    p.add_argument("--fps", type=float, default=16.0)
    p.add_argument("--frames", type=int, default=65, help="1+8k; 65 at 16 fps = 4.06 s")
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--subjects", type=int, default=3, help="the last one is held out")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--device", default="auto")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--out", default="runs/learning_check")
    p.add_argument("--json", default=None, help="write the before/after numbers here")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is much faster on a CPU shared with other jobs)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    if args.vae:
        vae, vae_name = load_vae(args.vae), args.vae
    elif FIXTURE.exists():
        vae, vae_name = load_vae(FIXTURE), str(FIXTURE.name)
    else:
        vae, vae_name = build_vae(tiny_vae_config(), seed=0), "random tiny VAE (no fixture)"
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    clips = read_synthetic(n_subjects=args.subjects, duration_s=args.frames / args.fps + 0.01, fps=args.fps,
                           size=(max(64, args.size), max(64, args.size)), hr_range_bpm=(55, 65), seed=0, motion_px=0.5)
    train_set = WindowDataset(clips[:-1], args.frames, args.size, crop="none")
    held = WindowDataset(clips[-1:], args.frames, args.size, crop="none")
    cfg = TrainConfig(num_frames=args.frames, size=args.size, crop="none", lpips_weight=0, lr=args.lr, beta_length=20,
                      batch_size=min(2, len(train_set)), target_choices_bpm=(args.target,), steps=args.steps,
                      device=args.device, progress=False, out_dir=args.out, save_every=0)
    trainer = Trainer(cfg, model=model, train_set=train_set, val_set=held)
    trainer.model.vae.model.to(trainer.device)

    def measure():
        tr = [pos_hr(trainer, train_set[i], args.target) for i in range(len(train_set))]
        return tr, pos_hr(trainer, held[0], args.target)

    print(f"VAE: {vae_name}; {len(train_set)} training windows + 1 held out; {args.frames} frames "
          f"{args.size}x{args.size} at {args.fps:g} fps; target {args.target:g} bpm; device {trainer.device}", flush=True)
    before = measure()
    print(f"step 0: train HR {np.round(before[0], 1).tolist()} held-out {before[1]:.1f}", flush=True)
    t0 = time.perf_counter()
    while trainer.step < args.steps:
        row = trainer.train_step()
        if trainer.step % args.eval_every == 0 or trainer.step == args.steps:
            now = measure()
            print(f"step {trainer.step} ({time.perf_counter() - t0:.0f} s): wave {row['wave']:.3f} freq {row['freq']:.3f} "
                  f"fidelity {row['fidelity']:.4f}; train HR {np.round(now[0], 1).tolist()} held-out {now[1]:.1f}",
                  flush=True)
    after = measure()
    mae = lambda hrs: float(np.mean(np.abs(np.asarray(hrs) - args.target)))  # noqa: E731
    result = {"vae": vae_name, "steps": trainer.step, "seconds": time.perf_counter() - t0, "target_bpm": args.target,
              "train_mae_before": mae(before[0]), "train_mae_after": mae(after[0]),
              "held_out_error_before": abs(before[1] - args.target), "held_out_error_after": abs(after[1] - args.target)}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
