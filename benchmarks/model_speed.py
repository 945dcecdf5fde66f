"""Speed and peak memory of the PhysioLatent network (random weights).

Two suites:

  cpu (default)   encode / fuse / decode time and peak memory per frame for the tiny and
                  the full-size (CogVideoX-2B) VAE at 64x64 and 128x128 face crops.
                      .venv/bin/python benchmarks/model_speed.py [--configs tiny,full] [--sizes 64,128] [--frames 9]
  gpu             what benchmarks/gpu_check.sh runs on a CUDA machine: the full-size VAE
                  in bf16 on 256x256x49 face crops and 480x720x49 frames, with and without
                  spatial tiling (fps, peak VRAM), plus one adapter training step.
                      .venv/bin/python benchmarks/model_speed.py --suite gpu [--tiny]
                  `--tiny` runs the same code path with the tiny config, small frames and
                  float32 on CPU, to check the script without a GPU.

Peak memory: on CUDA `torch.cuda.max_memory_allocated` (reset per stage); on CPU the
process's peak resident set (VmHWM, reset per stage through /proc/self/clear_refs),
i.e. the whole process, not only tensors. Times are wall-clock medians of `--repeats`
runs after one warm-up run (CPU) or with CUDA synchronisation (GPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from physiolatent_core.model import (  # noqa: E402
    PhysioLatent,
    PhysioLatentAdapter,
    adapter_config_base,
    adapter_config_tiny,
    build_vae,
    cogvideox_vae_config,
    tiny_vae_config,
)

# ---------------------------------------------------------------------------- memory


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1, warmup: bool = True):
    """(result, median seconds, peak MiB) of fn()."""
    if warmup:
        fn()
    times = []
    _reset_peak(device)
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return out, statistics.median(times), _peak_mib(device)


# ---------------------------------------------------------------------------- CPU suite


def build_model(config: str, device, dtype):
    vae = build_vae(tiny_vae_config() if config == "tiny" else cogvideox_vae_config(), dtype=dtype, device=device)
    adapter = PhysioLatentAdapter(adapter_config_tiny() if config == "tiny" else adapter_config_base(), vae).to(device)
    return PhysioLatent(vae, adapter)


def cpu_suite(args) -> None:
    device = torch.device("cpu")
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}, {args.frames} frames per clip, float32")
    print(f"{'config':6} {'size':>7} {'stage':7} {'s/clip':>8} {'ms/frame':>9} {'peak MiB':>9}")
    for config in args.configs.split(","):
        model = build_model(config, device, torch.float32)
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.rand(1, 3, args.frames, size, size) * 2 - 1
            hr = torch.tensor([90.0])
            with torch.inference_mode():
                z, t_enc, m_enc = timed(lambda: model.vae.encode(x), device, args.repeats, warmup=not args.no_warmup)
                c = model.condition(hr)
                z2, t_fuse, m_fuse = timed(lambda: model.fuse(z, c), device, args.repeats, warmup=not args.no_warmup)
                _, t_dec, m_dec = timed(lambda: model.decode(z2, c, args.frames), device, args.repeats,
                                        warmup=not args.no_warmup)
            for stage, t, m in (("encode", t_enc, m_enc), ("fuse", t_fuse, m_fuse), ("decode", t_dec, m_dec)):
                print(f"{config:6} {size:>3}x{size:<3} {stage:7} {t:8.3f} {1000 * t / args.frames:9.1f} {m:9.0f}",
                      flush=True)
        del model


# ---------------------------------------------------------------------------- GPU suite


def gpu_suite(args) -> None:
    if args.tiny:
        device, dtype, config = torch.device("cpu"), torch.float32, "tiny"
        crop_shape, frame_shape, frames, tile_px = (16, 16), (32, 48), 5, 32
    else:
        if not torch.cuda.is_available():
            raise SystemExit("--suite gpu needs CUDA (use --tiny to check the script on CPU)")
        device, dtype, config = torch.device("cuda"), torch.bfloat16, "full"
        crop_shape, frame_shape, frames, tile_px = (256, 256), (480, 720), 49, None
        print(f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, bf16")
    t = time.perf_counter()
    model = build_model(config, device, dtype)
    n_vae = sum(p.numel() for p in model.vae.parameters())
    n_ad = sum(p.numel() for p in model.adapter.parameters())
    print(f"built {config} model in {time.perf_counter() - t:.1f} s: VAE {n_vae / 1e6:.1f} M, adapter {n_ad / 1e6:.2f} M params")
    print(f"{'input':>14} {'tiling':6} {'stage':14} {'seconds':>8} {'fps':>7} {'peak MiB':>9}")

    def row(name, tiling, stage, secs, peak):
        print(f"{name:>14} {tiling:6} {stage:14} {secs:8.2f} {frames / secs:7.1f} {peak:9.0f}", flush=True)

    hr = torch.tensor([90.0], device=device)
    for (h, w) in (crop_shape, frame_shape):
        name = f"{h}x{w}x{frames}"
        x = (torch.rand(1, 3, frames, h, w, device=device) * 2 - 1).to(dtype)
        for tiling in (False, True):
            if tiling:  # diffusers' CogVideoX tile layout, or small tiles for the --tiny check
                model.vae.enable_tiling(*((tile_px, 0.25) if args.tiny else ()))
            else:
                model.vae.disable_tiling()
            try:
                with torch.inference_mode():
                    z, t_e, m_e = timed(lambda: model.vae.encode(x), device, warmup=False)
                    row(name, str(tiling), "vae encode", t_e, m_e)
                    _, t_d, m_d = timed(lambda: model.vae.decode(z, frames), device, warmup=False)
                    row(name, str(tiling), "vae decode", t_d, m_d)
                    c = model.condition(hr)
                    out, t_all, m_all = timed(lambda: model.decode(model.fuse(model.vae.encode(x), c), c, frames),
                                              device, warmup=False)
                    assert out.shape == x.shape, (out.shape, x.shape)
                    row(name, str(tiling), "edit (all)", t_all, m_all)
            except torch.OutOfMemoryError:
                print(f"{name:>14} {str(tiling):6} OUT OF MEMORY")
                torch.cuda.empty_cache()
            except RuntimeError as exc:  # e.g. the wrapper refusing a tiling layout that changes the shape
                print(f"{name:>14} {str(tiling):6} FAILED: {str(exc).splitlines()[0]}")
            del x
            x = (torch.rand(1, 3, frames, h, w, device=device) * 2 - 1).to(dtype)
    model.vae.disable_tiling()

    # one adapter training step on face crops (float32 adapter, bf16 frozen VAE, checkpointed decoder)
    h, w = crop_shape
    x = (torch.rand(1, 3, frames, h, w, device=device) * 2 - 1).to(dtype)
    model.vae.model.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = model(x, hr)
        loss = (out - x.float()).square().mean()
        loss.backward()
        opt.step()
        return loss.detach()

    try:
        _, t_s, m_s = timed(train_step, device, warmup=False)
        row(f"{h}x{w}x{frames}", "False", "train step", t_s, m_s)
    except torch.OutOfMemoryError:
        print(f"{h}x{w}x{frames} train step: OUT OF MEMORY")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--configs", default="tiny,full")
    ap.add_argument("--sizes", default="64,128")
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-warmup", action="store_true", help="skip the warm-up run (the full config is slow on CPU)")
    ap.add_argument("--tiny", action="store_true", help="gpu suite: tiny config on CPU (script check)")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.suite == "cpu":
        cpu_suite(args)
    else:
        gpu_suite(args)


if __name__ == "__main__":
    main()
