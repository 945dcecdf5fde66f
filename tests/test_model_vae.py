"""CogVideoX VAE wrapper: padding, loading (diffusers/SAT keys), refusals, windows, fingerprint."""


import pytest
import torch

from physiolatent_core.errors import InputError, ModelFileError
from physiolatent_core.model.vae import (
    build_vae,
    cogvideox_vae_config,
    diffusers_to_sat_keys,
    load_vae,
    map_windows,
    sat_to_diffusers_keys,
    save_vae,
    tiny_vae_config,
    vae_fingerprint,
    window_starts,
)


@pytest.fixture(scope="module")
def vae():
    return build_vae(tiny_vae_config(), seed=0)


@pytest.fixture(scope="module")
def vae_file(vae, tmp_path_factory):
    path = tmp_path_factory.mktemp("vae") / "tiny.safetensors"
    save_vae(vae, path)
    return path


def _clip(t, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, size, size, generator=g) * 2 - 1


def test_full_config_matches_cogvideox_2b():
    from diffusers import AutoencoderKLCogVideoX

    with torch.device("meta"):
        m = AutoencoderKLCogVideoX(**cogvideox_vae_config())
    assert sum(p.numel() for p in m.parameters()) == 215_583_907
    assert sum(p.numel() for p in m.decoder.conv_out.parameters()) == 10_371


@pytest.mark.parametrize("t", [1, 5, 7, 9, 13])
def test_padding_returns_exactly_t_frames(vae, t):
    x = _clip(t)
    with torch.no_grad():
        z = vae.encode(x)
        y = vae.decode(z, num_frames=t)
    assert z.shape == (1, 16, vae.latent_frames(t), 2, 2)
    assert z.shape[2] % 2 == 1
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_bad_input_shapes_raise(vae):
    with pytest.raises(InputError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 20, 16))
    with pytest.raises(InputError, match=r"\[B,3,T,H,W\]"):
        vae.encode(torch.zeros(3, 5, 16, 16))


def test_diffusers_and_sat_files_load_identically(vae, vae_file, tmp_path):
    from safetensors.torch import save_file

    # SAT / original layout, with the `first_stage_model.` prefix of full checkpoints
    sd = {k: v.contiguous() for k, v in vae.model.state_dict().items()}
    sat = {f"first_stage_model.{k}": v for k, v in diffusers_to_sat_keys(sd).items()}
    assert any(".up.3.block." in k for k in sat) and not any("up_blocks" in k for k in sat)
    sat["first_stage_model.loss.logvar"] = torch.zeros(())  # training-only entries are dropped
    sat_path = tmp_path / "sat.safetensors"
    save_file(sat, str(sat_path))  # no config metadata: the config must come from the shapes

    x = _clip(5)
    with torch.no_grad():
        ref = vae.decode(vae.encode(x), 5)
        for path in (vae_file, sat_path):
            loaded = load_vae(path)
            assert loaded.config["block_out_channels"] == [16, 32, 32, 32]
            assert torch.equal(loaded.decode(loaded.encode(x), 5), ref)
    assert sat_to_diffusers_keys(diffusers_to_sat_keys(sd)).keys() == sd.keys()


def test_diffusers_folder_loads(vae, tmp_path):
    import json

    save_vae(vae, tmp_path / "diffusion_pytorch_model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({**vae.config, "_class_name": "AutoencoderKLCogVideoX"}))
    assert vae_fingerprint(load_vae(tmp_path)) == vae_fingerprint(vae)


def test_sd_vae_is_refused_with_advice(tmp_path):
    from safetensors.torch import save_file

    sd = {  # the shape signature of an SD 1.x/SDXL VAE: 2-D convolutions
        "first_stage_model.encoder.conv_in.weight": torch.zeros(128, 3, 3, 3),
        "first_stage_model.encoder.conv_in.bias": torch.zeros(128),
        "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 128, 3, 3),
        "first_stage_model.decoder.conv_out.bias": torch.zeros(3),
    }
    path = tmp_path / "sd_vae.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ModelFileError, match="Stable Diffusion 2D VAE.*CogVideoX 3D causal VAE.*ComfyUI/models/vae"):
        load_vae(path)


def test_truncated_missing_and_wrong_files_are_refused(vae_file, tmp_path):
    data = vae_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_vae(cut)
    with pytest.raises(ModelFileError, match="not found"):
        load_vae(tmp_path / "nope.safetensors")
    ckpt = tmp_path / "vae.ckpt"
    ckpt.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="never loads pickled"):
        load_vae(ckpt)


def test_missing_keys_are_named(vae, tmp_path):
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in vae.model.state_dict().items() if "decoder.norm_out" not in k}
    path = tmp_path / "partial.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ModelFileError, match="missing keys.*norm_out"):
        load_vae(path)


def test_fingerprint_ignores_dtype_but_not_weights(vae, vae_file):
    fp = vae_fingerprint(vae)
    assert vae_fingerprint(load_vae(vae_file, dtype=torch.bfloat16)) == fp
    assert vae_fingerprint(load_vae(vae_file, dtype=torch.float16)) == fp
    assert vae_fingerprint(build_vae(tiny_vae_config(), seed=1)) != fp


def test_bf16_encode_decode_runs(vae_file):
    v = load_vae(vae_file, dtype=torch.bfloat16)
    with torch.no_grad():
        y = v.decode(v.encode(_clip(5)), 5)
    assert y.shape == (1, 3, 5, 16, 16) and y.dtype == torch.bfloat16


@pytest.mark.parametrize("t", [29, 31])  # 29: equal spacing; 31: uneven spacing
def test_map_windows_weights_sum_to_one_and_hide_offsets(t):
    x = torch.linspace(0, 1, t).view(1, 1, t, 1, 1).expand(1, 3, t, 2, 2).contiguous()
    assert torch.allclose(map_windows(x, lambda v: v, 9, 3), x, atol=1e-6)
    starts = window_starts(t, 9, 3)
    assert starts[0] == 0 and starts[-1] == t - 9
    assert all(b - a <= 6 for a, b in zip(starts, starts[1:]))  # overlap >= 3
    # each window adds its own constant offset (like a per-window colour bias): the
    # cross-fade turns each 0.1 step into a ramp over the overlap
    counter = iter(range(100))
    out = map_windows(torch.zeros(1, 1, t, 1, 1), lambda v: v + 0.1 * next(counter), 9, 3)
    steps = out.flatten().diff().abs()
    assert steps.max() <= 0.1 / 4 + 1e-6, steps  # overlap >= 3 frames -> steps of <= 0.1/4
    assert out.flatten()[-1] > 0.1 * (len(starts) - 1.5)  # later windows really did contribute


def test_long_clip_windows_stitch_without_seam(vae):
    # a smooth clip: slow colour drift, so the true mean-colour signal has no jumps
    t = 29
    ramp = torch.linspace(-0.5, 0.5, t).view(1, 1, t, 1, 1)
    x = (ramp * torch.tensor([1.0, -0.5, 0.3]).view(1, 3, 1, 1, 1)).expand(1, 3, t, 16, 16).contiguous()
    x = x + 0.2 * _clip(1, seed=3)  # static texture
    with torch.no_grad():
        single = vae.decode(vae.encode(x), t)
        windowed = vae.reconstruct(x, window_frames=13, overlap_frames=6)
    assert windowed.shape == x.shape
    mean_single = single.mean(dim=(3, 4))[0]  # [3, T]
    mean_win = windowed.mean(dim=(3, 4))[0]
    # no jump at the window boundaries: the frame-to-frame change of the stitched
    # signal stays within that of the single-window decode (plus a small margin)
    jump_single = mean_single.diff(dim=1).abs().max()
    jump_win = mean_win.diff(dim=1).abs().max()
    assert jump_win <= 1.5 * jump_single + 0.02, (jump_win, jump_single)


def test_tiling_keeps_shape_or_refuses():
    v = build_vae(tiny_vae_config(), seed=0)
    v.enable_tiling(tile_px=32, overlap=0.25)
    x = _clip(1, size=64)
    with torch.no_grad():
        y = v.decode(v.encode(x), 1)
    assert y.shape == x.shape
    # diffusers' tiling mis-sizes tiny tiles; the wrapper must say so rather than return a wrong shape
    v.enable_tiling(tile_px=16, overlap=0.25)
    with pytest.raises(RuntimeError, match="Disable tiling"), torch.no_grad():
        v.encode(_clip(1, size=32))
