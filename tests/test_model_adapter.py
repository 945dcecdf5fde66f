"""PhysioLatent adapter: identity at init, training reaches only the adapter, adapter files."""

import json

import pytest
import torch

from physiolatent_core.errors import InputError, ModelFileError
from physiolatent_core.model import (
    FusionConfig,
    LatentFusion,
    PhysioLatent,
    PhysioLatentAdapter,
    adapter_config_tiny,
    build_vae,
    load_adapter,
    save_adapter,
    tiny_vae_config,
)


@pytest.fixture(scope="module")
def vae():
    return build_vae(tiny_vae_config(), seed=0)


def _clip(b=2, t=5, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("variant", ["attention", "conv"])
def test_fusion_is_identity_at_init_and_keeps_shape(variant):
    cfg = FusionConfig(cond_dim=8, cond_channels=2, hidden=16, num_blocks=2, num_heads=2, variant=variant)
    fusion = LatentFusion(cfg)
    z = torch.randn(2, 16, 3, 4, 5)
    c = torch.randn(2, 8)
    assert torch.equal(fusion(z, c), z)
    # once the zero-initialised output moves, the condition changes the result
    torch.nn.init.normal_(fusion.out.weight if variant == "attention" else fusion.out[-1].weight, std=0.1)
    a, b = fusion(z, c), fusion(z, -c)
    assert a.shape == z.shape and not torch.allclose(a, b)


def test_untrained_model_equals_plain_reconstruction(vae):
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    x = _clip()
    with torch.no_grad():
        out = model(x, torch.tensor([60.0, 120.0]))
        ref = vae.decode(vae.encode(x), num_frames=x.shape[2])
        removed = model(x, torch.tensor([60.0, 60.0]), remove=True)
    assert out.shape == x.shape
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(removed, ref, atol=1e-6)


def test_training_steps_reach_every_adapter_parameter_and_nothing_else(vae):
    torch.manual_seed(0)
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    vae_before = {k: v.clone() for k, v in vae.state_dict().items()}
    adapter_before = {k: v.clone() for k, v in model.adapter.state_dict().items()}
    trainable = model.trainable_parameters()
    assert {id(p) for p in trainable} == {id(p) for p in model.adapter.parameters()}
    opt = torch.optim.Adam(trainable, lr=1e-2)
    x = _clip()
    target = x.flip(2) * 0.5  # anything the identity does not already produce
    got_grad = set()
    # the zero-initialised gates and output layers block some gradients on the first
    # step (AdaLN-Zero), so take three steps; a batch mixes edit and remove samples
    for _ in range(3):
        opt.zero_grad()
        out = model(x, torch.tensor([70.0, 100.0]), remove=torch.tensor([False, True]))
        loss = (out - target).square().mean()
        loss.backward()
        got_grad |= {n for n, p in model.adapter.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        opt.step()
    names = {n for n, _ in model.adapter.named_parameters()}
    assert names - got_grad == set()
    assert all(p.grad is None for p in vae.parameters())
    for k, v in vae.state_dict().items():
        assert torch.equal(v, vae_before[k]), k
    changed = [k for k, v in model.adapter.state_dict().items() if not torch.equal(v, adapter_before[k])]
    assert set(changed) == set(adapter_before)


def test_gradient_checkpointing_gives_the_same_gradients(vae):
    torch.manual_seed(2)
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    with torch.no_grad():  # make FiLM and the fusion output non-trivial
        for p in model.adapter.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = _clip(1)

    def grads():
        model.adapter.zero_grad(set_to_none=True)
        model(x, torch.tensor([80.0])).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.adapter.named_parameters() if p.grad is not None}

    plain = grads()
    vae.model.enable_gradient_checkpointing()
    try:
        checkpointed = grads()
    finally:
        vae.model.disable_gradient_checkpointing()
    assert plain.keys() == checkpointed.keys() and any(k.startswith("film.generators") for k in plain)
    for k in plain:
        assert torch.allclose(plain[k], checkpointed[k], rtol=1e-4, atol=1e-7), k


def test_adapter_round_trip_is_bit_exact(vae, tmp_path):
    torch.manual_seed(1)
    adapter = PhysioLatentAdapter(adapter_config_tiny(), vae)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # not the init values
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, adapter, vae)
    loaded = load_adapter(path, vae)
    assert loaded.config == adapter.config
    sd, sd2 = adapter.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert not any(k.startswith(("vae.", "_vae")) or ".model.encoder." in k for k in sd)  # VAE not in the file
    x = _clip(1)
    with torch.no_grad():
        a = PhysioLatent(vae, adapter)(x, torch.tensor([90.0]))
        b = PhysioLatent(vae, loaded)(x, torch.tensor([90.0]))
    assert torch.equal(a, b)


def test_adapter_from_another_vae_or_version_is_refused(vae, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    adapter = PhysioLatentAdapter(adapter_config_tiny(), vae)
    path = tmp_path / "adapter.safetensors"
    save_adapter(path, adapter, vae)
    other = build_vae(tiny_vae_config(), seed=7)
    with pytest.raises(ModelFileError, match="different VAE"):
        load_adapter(path, other)

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    future = tmp_path / "future.safetensors"
    save_file(load_file(str(path)), str(future), metadata={**meta, "format_version": "99"})
    with pytest.raises(ModelFileError, match="format version '99'"):
        load_adapter(future, vae)
    not_adapter = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(1)}, str(not_adapter))
    with pytest.raises(ModelFileError, match="not a PhysioLatent adapter"):
        load_adapter(not_adapter, vae)
    assert json.loads(meta["config"])["fusion"]["variant"] == "attention"


def test_hr_out_of_range_is_refused(vae):
    model = PhysioLatent(vae, PhysioLatentAdapter(adapter_config_tiny(), vae))
    with pytest.raises(InputError, match="between 30 and 240 bpm"):
        model.condition(torch.tensor([1.5]))  # Hz by mistake
    with pytest.raises(InputError, match="between 30 and 240 bpm"):
        model.condition(torch.tensor([300.0]))
    c = model.condition(torch.tensor([300.0]), remove=True)  # remove ignores the HR
    assert c.shape == (1, 32)
