"""The committed tiny VAE fixture (scripts/make_tiny_vae.py): loads by file alone, reconstructs faces."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from physiolatent_core.model.vae import build_vae, load_vae, tiny_vae_config

PSNR_MIN_DB = 17.0  # make_tiny_vae.py reported 20.6 dB on its held-out clips
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_cogvideox_vae.safetensors"


def _psnr(vae, x: torch.Tensor) -> float:
    with torch.no_grad():
        y = vae.decode(vae.encode(x), num_frames=x.shape[2]).clamp(-1, 1)
    return 10 * math.log10(4.0 / (y - x).square().mean().item())  # peak-to-peak 2 in [-1,1]


@pytest.fixture(scope="module")
def face_clip():
    synth = pytest.importorskip("physiolatent_core.synth")
    face = pytest.importorskip("physiolatent_core.face")
    clip = synth.synth_subject(duration_s=0.6, fps=30.0, hr_bpm=75.0, seed=4242)  # a seed not used in training
    crops, _ = face.crop_faces(clip.frames, face.track_face(clip.frames, clip.fps), size=64, fixed=True)
    return torch.from_numpy(np.ascontiguousarray(crops[:9], dtype=np.float32)).permute(3, 0, 1, 2)[None] * 2 - 1


def test_fixture_is_small_and_loads_by_file_alone():
    assert FIXTURE.is_file() and FIXTURE.stat().st_size < 5 * 2**20
    vae = load_vae(FIXTURE)
    assert vae.config["block_out_channels"] == tiny_vae_config()["block_out_channels"]
    assert vae.latent_channels == 16 and vae.spatial_ratio == 8 and vae.temporal_ratio == 4


def test_fixture_reconstructs_an_unseen_synthetic_face(face_clip):
    trained = _psnr(load_vae(FIXTURE), face_clip)
    untrained = _psnr(build_vae(tiny_vae_config(), seed=0), face_clip)
    assert trained > PSNR_MIN_DB, (trained, untrained)
    assert trained > untrained + 5.0, (trained, untrained)
