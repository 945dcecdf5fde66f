"""Train the tiny CogVideoX-structured VAE used as a test fixture.

    .venv/bin/python scripts/make_tiny_vae.py --minutes 10 \
        --out tests/fixtures/tiny_cogvideox_vae.safetensors

Data: synthetic subjects (physiolatent_core.synth.synth_subject: a real face photo
animated with motion, illumination drift and a known pulse), face-tracked and cropped
to 64x64 (physiolatent_core.face, one fixed crop per clip), cut into 9-frame clips
(1+8: three latent frames) alternating with batches of single frames, on random
32x32 patches of the crops (same scale, a quarter of the compute), with
brightness/colour/flip augmentation.

Loss (per clip, frames in [-1,1]):
    MSE(x_hat, x)                                       appearance
  + w_pulse * |s(x_hat) - s(x)|^2 / var(s(x))           the pulse: s = mean colour of the
                                                        central face region per frame, minus
                                                        its clip mean (relative error, so the
                                                        0.4 % pulse counts as much as the face)
  + 1e-6 * mean(mu^2)                                   keeps the latent bounded (no KL on the
                                                        variance: we use the posterior mean)

Prints, on held-out clips (other seeds/HRs): PSNR of the reconstruction and the
Pearson correlation between input and output pulse signals s. Writes diffusers keys
with the config in the safetensors metadata (see model/vae.py: save_vae).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physiolatent_core.model.vae import build_vae, save_vae, tiny_vae_config  # noqa: E402

CROP = 64
CLIP_FRAMES = 9


def make_crops(seed: int, hr_bpm: float, duration_s: float = 6.0) -> np.ndarray:
    """One synthetic subject -> face crops [T,64,64,3] in 0..1."""
    from physiolatent_core.face import crop_faces, track_face
    from physiolatent_core.synth import synth_subject

    clip = synth_subject(duration_s=duration_s, fps=30.0, hr_bpm=hr_bpm, seed=seed, motion_px=3.0)
    track = track_face(clip.frames, clip.fps)
    crops, _ = crop_faces(clip.frames, track, size=CROP, fixed=True)
    return crops.astype(np.float32)


def pulse_signal(video: torch.Tensor) -> torch.Tensor:
    """[B,3,T,H,W] -> [B,3,T]: mean colour of the central half of the crop, minus its time mean."""
    h, w = video.shape[-2:]
    centre = video[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean(dim=(-2, -1))
    return centre - centre.mean(dim=-1, keepdim=True)


def sample_batch(clips: list[np.ndarray], batch: int, frames: int, rng: np.random.Generator,
                 patch: int = CROP) -> torch.Tensor:
    """Random `frames`-frame windows of random `patch`-pixel patches, augmented -> [B,3,frames,P,P] in [-1,1].

    Patches of the 64x64 crops (not downscaled crops) keep the image scale the VAE sees
    at 64x64 while costing (patch/64)^2 of the compute: the VAE is convolutional.
    """
    out = []
    for _ in range(batch):
        crops = clips[rng.integers(len(clips))]
        s = rng.integers(0, len(crops) - frames + 1)
        i, j = (rng.integers(0, CROP - patch + 1, size=2) // 8) * 8
        x = crops[s : s + frames, i : i + patch, j : j + patch]
        x = x * rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, size=3) + rng.uniform(-0.05, 0.05)
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        out.append(np.clip(x, 0, 1))
    x = torch.from_numpy(np.ascontiguousarray(np.stack(out), dtype=np.float32)).permute(0, 4, 1, 2, 3)
    return x * 2 - 1


def evaluate(vae, clips: list[np.ndarray], frames: int = 33) -> tuple[float, float]:
    """Mean PSNR (dB, on 0..1) and mean pulse Pearson r over held-out clips (first `frames` frames)."""
    psnrs, rs = [], []
    with torch.no_grad():
        for crops in clips:
            x = torch.from_numpy(crops[:frames]).permute(3, 0, 1, 2)[None] * 2 - 1
            y = vae.decode(vae.encode(x), num_frames=x.shape[2]).clamp(-1, 1)
            mse = ((y - x) / 2).square().mean().item()
            psnrs.append(10 * math.log10(1 / max(mse, 1e-12)))
            a, b = pulse_signal(x)[0, 1], pulse_signal(y)[0, 1]  # green channel
            rs.append(torch.corrcoef(torch.stack([a, b]))[0, 1].item())
    return float(np.mean(psnrs)), float(np.mean(rs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/tiny_cogvideox_vae.safetensors")
    ap.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    ap.add_argument("--subjects", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8, help="video steps use batch/2 clips, single-frame steps 2*batch frames")
    ap.add_argument("--patch", type=int, default=32, help="training patch size in pixels (multiple of 8, <= 64)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pulse-weight", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads; 1 is 5-8x faster than 2 on a shared, overloaded 2-core machine")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    train = [make_crops(seed=100 + i, hr_bpm=float(rng.uniform(55, 120)), duration_s=4.0) for i in range(args.subjects)]
    held_out = [make_crops(seed=900 + i, hr_bpm=hr, duration_s=1.2) for i, hr in enumerate((65.0, 105.0))]
    print(f"data: {len(train)} training clips {train[0].shape}, {len(held_out)} held out ({time.time() - t0:.0f} s)")

    vae = build_vae(tiny_vae_config(), seed=args.seed)
    params = list(vae.model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    psnr, r = evaluate(vae, held_out, frames=17)
    print(f"untrained: PSNR {psnr:.2f} dB, pulse r {r:.3f} (held out, 17 frames)")

    deadline = time.time() + args.minutes * 60
    step = 0
    while time.time() < deadline:
        lr = args.lr * min(1.0, (step + 1) / 20)  # short warm-up
        for g in opt.param_groups:
            g["lr"] = lr
        # half the steps on single frames (cheap: teaches appearance), half on 9-frame
        # clips (teaches the temporal layers and the pulse); CPU time is the limit here
        video_step = step % 2 == 1
        x = sample_batch(train, args.batch // 2 if video_step else args.batch * 2, CLIP_FRAMES if video_step else 1,
                         rng, patch=args.patch)
        posterior = vae.model.encode(x).latent_dist
        mu = posterior.mode()
        y = vae.model.decode(mu).sample
        s_x, s_y = pulse_signal(x), pulse_signal(y)
        pulse = (s_y - s_x).square().mean() / (s_x.square().mean() + 1e-8) if video_step else torch.zeros(())
        loss = (y - x).square().mean() + args.pulse_weight * pulse + 1e-6 * mu.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step}: loss {loss.item():.4f} (pulse rel. err {pulse.item():.3f}) [{time.time() - t0:.0f} s]", flush=True)

    for p in params:
        p.requires_grad_(False)
    psnr, r = evaluate(vae, held_out)
    print(f"trained {step} steps: held-out PSNR {psnr:.2f} dB, pulse r {r:.3f}")
    save_vae(vae, args.out)
    size_kb = Path(args.out).stat().st_size / 1024
    print(f"wrote {args.out} ({size_kb:.0f} KiB)")


if __name__ == "__main__":
    main()
