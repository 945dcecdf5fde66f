"""train.py: the adapter learns to move the rPPG HR; checkpoints resume exactly; config and CLI flags.

The CogVideoX decoder (even the tiny one) costs seconds per step on this CPU, so the
learning test runs the real adapter (HR conditioner + latent fusion) and the real
training step on a linear stand-in VAE (8x8 spatial / 4x temporal average pooling into
16 channels, trilinear decoding). The real tiny VAE is exercised for a few steps in the
checkpoint test; ``scripts/learning_check.py`` runs the learning check with it.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from physiolatent_core.data import WindowDataset, read_synthetic
from physiolatent_core.errors import InputError
from physiolatent_core.losses import masked_mean_rgb
from physiolatent_core.rppg.hr import estimate_hr
from physiolatent_core.rppg.torch_pos import pos_torch
from physiolatent_core.train import (
    TrainConfig,
    Trainer,
    add_train_arguments,
    latest_checkpoint,
    load_config,
)

FIXTURE_VAE = Path(__file__).resolve().parent / "fixtures" / "tiny_cogvideox_vae.safetensors"


class PoolVAE(torch.nn.Module):
    """Linear stand-in for the VAE with the same geometry: 16 latent channels, 8x space, 4x time."""

    latent_channels, spatial_ratio, temporal_ratio = 16, 8, 4

    def __init__(self):
        super().__init__()
        lift, _ = torch.linalg.qr(torch.randn(16, 3, generator=torch.Generator().manual_seed(0)))
        self.register_buffer("lift", lift)  # [16, 3], orthonormal columns: decode inverts encode's lift

    def encode(self, video):
        return torch.einsum("kc,bcthw->bkthw", self.lift, F.avg_pool3d(video, (4, 8, 8), ceil_mode=True))

    def decode(self, z, num_frames=None):
        x = F.interpolate(torch.einsum("kc,bkthw->bcthw", self.lift, z), scale_factor=(4, 8, 8), mode="trilinear")
        return x if num_frames is None else x[:, :, :num_frames]


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these ops are tiny, and on a shared 2-core CPU two OpenMP threads
    spin against each other (measured 0.27 s/step with 1 thread vs 4.9 s with 2 under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pos_hr(trainer, item, target):
    """POS HR (bpm) of the composited output for one window."""
    video, mask = item["video"][None], item["mask"][None]
    with torch.no_grad():
        out = trainer.edit(video, mask, torch.tensor([target]))
    pulse = pos_torch(masked_mean_rgb(out, mask), item["fps"])[0].numpy()
    return estimate_hr(pulse, item["fps"])


def test_adapter_learns_target_hr_on_standin_vae(tmp_path):
    from physiolatent_core.model import PhysioLatent, PhysioLatentAdapter, adapter_config_tiny

    torch.manual_seed(0)
    fps, target = 20.0, 90.0
    # 3 synthetic subjects around 60 bpm, 4.05 s each; two to train on, one held out
    clips = read_synthetic(n_subjects=3, duration_s=4.05, fps=fps, size=(64, 64), hr_range_bpm=(55, 65), seed=0,
                           motion_px=0.5)
    train_set = WindowDataset(clips[:2], 81, 16, crop="none")
    held_out = WindowDataset(clips[2:], 81, 16, crop="none")
    vae = PoolVAE()
    acfg = adapter_config_tiny()
    acfg.film = False  # FiLM hooks need the diffusers decoder
    model = PhysioLatent(vae, PhysioLatentAdapter(acfg, vae))
    cfg = TrainConfig(num_frames=81, size=16, crop="none", lpips_weight=0, lr=3e-3, beta_length=20, batch_size=2,
                      target_choices_bpm=(target,), progress=False, out_dir=str(tmp_path))
    trainer = Trainer(cfg, model=model, train_set=train_set, val_set=held_out)
    before_train = [pos_hr(trainer, train_set[i], target) for i in range(2)]
    before_held = pos_hr(trainer, held_out[0], target)
    val_before = trainer.validate()
    assert all(abs(h - target) > 20 for h in before_train + [before_held])  # the identity adapter keeps ~60 bpm
    rows = [trainer.train_step() for _ in range(60)]
    after_train = [pos_hr(trainer, train_set[i], target) for i in range(2)]
    after_held = pos_hr(trainer, held_out[0], target)
    val_after = trainer.validate()
    assert val_after["wave"] < 0.5 * val_before["wave"] and val_after["step"] == 60
    print("train HR", before_train, "->", after_train, "held-out", before_held, "->", after_held)
    assert np.mean([r["wave"] for r in rows[-10:]]) < 0.5 * np.mean([r["wave"] for r in rows[:5]])
    assert all(abs(h - target) < 5 for h in after_train)  # overfit: the training clips read the target
    assert abs(after_held - target) < 0.5 * abs(before_held - target)  # held-out moves most of the way
    assert max(r["fidelity"] for r in rows[-10:]) < 0.02  # and the video stays close to the input


def _real_vae():
    from physiolatent_core.model import build_vae, load_vae, tiny_vae_config

    return load_vae(FIXTURE_VAE) if FIXTURE_VAE.exists() else build_vae(tiny_vae_config(), seed=0)


def _tiny_real_run(tmp_path, steps, **kw):
    from physiolatent_core.model import PhysioLatent, PhysioLatentAdapter, adapter_config_tiny

    torch.manual_seed(0)
    vae = _real_vae()
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    frames = np.random.default_rng(0).random((9, 16, 16, 3), dtype=np.float32) * 0.2 + 0.4
    from physiolatent_core.data.records import Clip

    ds = WindowDataset([Clip("a", 16.0, 9, _frames=frames)], 9, 16, crop="none")
    cfg = TrainConfig(num_frames=9, size=16, crop="none", lpips_weight=0, lr=1e-3, steps=steps, progress=False,
                      out_dir=str(tmp_path), save_every=1, keep_checkpoints=2, plots=False, band_bpm=(40, 150), **kw)
    return Trainer(cfg, model=model, train_set=ds)


def test_real_tiny_vae_checkpoint_resume_is_exact(tmp_path):
    straight = _tiny_real_run(tmp_path / "a", steps=2)
    straight.run()
    first = _tiny_real_run(tmp_path / "b", steps=1)
    first.run()
    assert latest_checkpoint(tmp_path / "b").name == "step_0000001"
    resumed = _tiny_real_run(tmp_path / "b", steps=2)
    resumed.run()
    assert resumed.step == 2 and len(resumed.history) == 1  # one step redone after the resume
    sa, sb = straight.model.adapter.state_dict(), resumed.model.adapter.state_dict()
    changed = False
    for k in sa:
        assert torch.allclose(sa[k], sb[k], atol=1e-6), k
    init = _tiny_real_run(tmp_path / "c", steps=0).model.adapter.state_dict()
    changed = any(not torch.equal(init[k], sa[k]) for k in sa)
    assert changed  # training moved the adapter
    # the log has one row per step, the final adapter is a loadable adapter file, old checkpoints pruned
    with open(tmp_path / "b" / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2]
    from physiolatent_core.model import load_adapter

    load_adapter(tmp_path / "b" / "adapter.safetensors", resumed.model.vae)
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step_0000001", "step_0000002"]
    assert json.loads((tmp_path / "b" / "checkpoints" / "step_0000002" / "state.json").read_text())["step"] == 2


def test_config_file_and_flags(tmp_path):
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"steps": 7, "lr": 0.01, "band_bpm": [45, 150], "size": 32}))
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--config", str(cfg_file), "--lr", "0.002", "--no-progress", "--target-choices-bpm", "60", "90"])
    from physiolatent_core.train import fields

    cfg = load_config(args.config, {f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    assert (cfg.steps, cfg.lr, cfg.band_bpm, cfg.size, cfg.progress) == (7, 0.002, (45, 150), 32, False)
    assert cfg.target_choices_bpm == (60.0, 90.0)
    with pytest.raises(InputError, match="unknown training config keys"):
        load_config(None, {"learning_rate": 1})
    with pytest.raises(InputError, match="multiple of 8"):
        load_config(None, {"size": 30})
    with pytest.raises(InputError, match="data_root"):
        load_config(None, {"dataset": "ubfc"})
