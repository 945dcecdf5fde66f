"""Host-less tests of the ComfyUI node pack: every node runs on tiny inputs without
ComfyUI, returns its declared types and shapes, and bad graph inputs raise clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
from workflow_tools import load_pack  # noqa: E402

from physiolatent_core import rppg  # noqa: E402
from physiolatent_core.errors import FaceNotFoundError, InputError, ModelFileError, PhysioLatentError  # noqa: E402

PACK = load_pack()
NODES = PACK.NODE_CLASS_MAPPINGS
FPS = 20.0
TRUE_HR = 72.0


def run(name: str, **kwargs):
    """Call a node's FUNCTION like ComfyUI does; return its result tuple (ui stripped)."""
    cls = NODES[name]
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    if isinstance(out, dict):
        out = out["result"]
    assert isinstance(out, tuple) and len(out) == len(cls.RETURN_TYPES)
    return out


def assert_image(x, frames=None, size=None):
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 4 and x.shape[-1] == 3
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    if frames is not None:
        assert x.shape[0] == frames
    if size is not None:
        assert tuple(x.shape[1:3]) == tuple(size)


@pytest.fixture(scope="module")
def clip():
    """8 s synthetic face at 20 fps, 128x160, true HR 72 bpm, with its skin mask."""
    images, fps, hr, mask = run("PhysioLatentSyntheticSubject", duration_s=8.0, fps=FPS, hr_bpm=TRUE_HR,
                                width=160, height=128, seed=0)
    return images, fps, hr, mask


# --------------------------------------------------------------------------- definitions
def test_every_node_is_a_complete_v1_node():
    assert len(NODES) >= 17
    assert set(NODES) == set(PACK.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in NODES.items():
        inputs = cls.INPUT_TYPES()
        assert set(inputs) <= {"required", "optional", "hidden"} and "required" in inputs, name
        assert callable(getattr(cls, cls.FUNCTION)), name
        assert cls.CATEGORY.startswith("PhysioLatent/"), name
        assert len(cls.DESCRIPTION) > 30, name
        assert len(cls.RETURN_NAMES) == len(cls.RETURN_TYPES) == len(cls.OUTPUT_TOOLTIPS), name
        for section in ("required", "optional"):
            for input_name, spec in inputs.get(section, {}).items():
                assert len(spec) == 2 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
                # the function accepts every declared input by name
                assert input_name in getattr(cls, cls.FUNCTION).__code__.co_varnames, f"{name}.{input_name}"


def test_pack_never_imports_comfyui():
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules


# --------------------------------------------------------------------------- training-free path
def test_synthetic_subject_outputs(clip):
    images, fps, hr, mask = clip
    assert_image(images, frames=160, size=(128, 160))
    assert fps == FPS and hr == pytest.approx(TRUE_HR, abs=1.0)
    assert mask.shape == images.shape[:3] and 0.02 < float(mask.mean()) < 0.6


def test_synthetic_subject_skin_tone(clip):
    images, _fps, _hr, mask = clip
    dark, _, hr, dark_mask = run("PhysioLatentSyntheticSubject", duration_s=8.0, fps=FPS, hr_bpm=TRUE_HR,
                                 width=160, height=128, seed=0, skin_tone="9")
    skin = mask[0] > 0.9
    assert float(dark[0][skin].mean()) < 0.5 * float(images[0][skin].mean())
    assert torch.equal(dark[:, :8, :8], images[:, :8, :8])  # the background stays
    assert hr == pytest.approx(TRUE_HR, abs=1.0)
    from physiolatent_core.synth import MONK_SKIN_TONES, PHOTO_SKIN_TONE

    listed = NODES["PhysioLatentSyntheticSubject"].INPUT_TYPES()["optional"]["skin_tone"][0]
    assert listed[1:] == [str(t) for t in MONK_SKIN_TONES if t > PHOTO_SKIN_TONE]  # the node lists synth's tones
    with pytest.raises(InputError, match="skin_tone"):
        run("PhysioLatentSyntheticSubject", duration_s=8.0, fps=FPS, hr_bpm=TRUE_HR, width=160, height=128,
            seed=0, skin_tone="4")


def test_face_mask_finds_the_rendered_face(clip):
    images, fps, _hr, truth = clip
    mask, preview = run("PhysioLatentFaceMask", images=images, fps=fps)
    assert mask.shape == images.shape[:3] and mask.dtype == torch.float32
    assert_image(preview, frames=images.shape[0], size=images.shape[1:3])
    # most of the detected skin lies on the rendered skin
    inside = float((mask * truth).sum() / mask.sum())
    assert inside > 0.6


def test_pulse_edit_sets_the_target_rate(clip):
    images, fps, _hr, mask = clip
    edited, info = run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=100.0, robust_to="h264",
                       seed=0, mask=mask)
    assert_image(edited, frames=images.shape[0], size=images.shape[1:3])
    assert json.loads(info)["target"].startswith("100")
    # looks unchanged: mean absolute change well below one 8-bit level... per pixel on average
    assert float((edited - images).abs().mean()) < 2 / 255
    hr, report, plot = run("PhysioLatentEstimateHR", images=edited, fps=fps, method="pos",
                           report_methods="pos, chrom", mask=mask, reference=images, target_hr_bpm=100.0)
    assert abs(hr - 100.0) <= 3.0
    rep = json.loads(report)
    assert abs(rep["hr_bpm_before"]["pos"] - TRUE_HR) <= 3.0
    assert set(rep["hr_bpm"]) == {"pos", "chrom"}
    assert_image(plot, frames=1)


def test_pulse_edit_makes_a_sub_level_change_in_whole_levels_for_core_savevideo(clip):
    """On very dark skin the change is under a grey level: the node (made for core
    SaveVideo's truncation) steps whole levels, which `(x*255).byte()` keeps; on the light
    clip it leaves the float change as it is."""
    images, fps, _hr, mask = clip
    dark, _, _, dark_mask = run("PhysioLatentSyntheticSubject", duration_s=8.0, fps=FPS, hr_bpm=TRUE_HR,
                                width=160, height=128, seed=0, skin_tone="10")
    edited, info = run("PhysioLatentPulseEdit", images=dark, fps=fps, target_hr_bpm=100.0, robust_to="h264",
                       seed=0, mask=dark_mask)
    assert json.loads(info)["whole_levels"] is True
    steps = (edited.double() - dark.double()) * 255
    assert float((steps - steps.round()).abs().max()) < 2e-3 and float(steps.abs().max()) >= 1.0
    _, info = run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=100.0, robust_to="h264",
                  seed=0, mask=mask)
    assert json.loads(info)["whole_levels"] is False


def test_pulse_edit_trajectory_and_its_errors(clip):
    images, fps, _hr, mask = clip
    edited, info = run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=90.0, robust_to="lossless",
                       seed=1, mask=mask, hr_trajectory="0s=70, 8s=110")
    assert "70" in json.loads(info)["target"] and edited.shape == images.shape
    _, info = run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=90.0, robust_to="lossless",
                  seed=1, mask=mask, amplitude=0.006)
    assert json.loads(info)["injected_rms"] == 0.006  # a fixed strength is kept
    with pytest.raises(InputError, match="seconds=bpm"):
        run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=90.0, robust_to="h264", seed=0,
            mask=mask, hr_trajectory="0s=70, later=110")


def test_nodes_take_the_rules_from_the_library():
    """HR trajectories are read by pulse.parse_hr_target, the minimum clip length is
    rppg.MIN_DURATION_S and the reader names are rppg.METHODS."""
    from physiolatent_core.pulse import parse_hr_target

    (cond,) = run("PhysioLatentHRTrajectoryPrompt", trajectory="0s=70; 1s=110", fps=10.0, num_frames=20,
                  template="{bpm}")
    assert cond["spec"] == str(parse_hr_target([(0, 70), (1, 110)])) and cond["hr_bpm"] == pytest.approx(99.0)
    names = NODES["PhysioLatentEstimateHR"].INPUT_TYPES()["required"]["method"][0]
    assert names[0] == "pos" and sorted(names) == sorted(rppg.METHODS)
    common = PACK.nodes._common
    assert common.parse_methods("") == common.parse_methods("ALL") == list(rppg.METHODS)
    assert common.parse_methods("POS; chrom") == ["pos", "chrom"]
    frames = np.zeros((int(rppg.MIN_DURATION_S * FPS), 2, 2, 3), np.float32)
    common.check_duration(frames, FPS, "Test")
    with pytest.raises(InputError, match=r"Test needs at least 4 s of video \(80 frames"):
        common.check_duration(frames[1:], FPS, "Test")


def test_pulse_remove_lowers_the_pulse_snr(clip):
    images, fps, _hr, mask = clip
    removed, info = run("PhysioLatentPulseRemove", images=images, fps=fps, decoy_hr_bpm=0.0, robust_to="h264",
                        seed=0, mask=mask)
    assert_image(removed, frames=images.shape[0], size=images.shape[1:3])
    assert json.loads(info)["decoy_hr_bpm"] is None
    _hr_out, report, _plot = run("PhysioLatentEstimateHR", images=removed, fps=fps, method="pos",
                                 report_methods="pos", mask=mask, reference=images)
    rep = json.loads(report)
    assert rep["snr_db_after"]["pos"] < rep["snr_db_before"]["pos"] - 3.0


def test_estimate_without_mask_finds_the_face(clip):
    images, fps, _hr, _mask = clip
    hr, report, plot = run("PhysioLatentEstimateHR", images=images, fps=fps, method="ssr", report_methods="all")
    assert isinstance(hr, float) and abs(hr - TRUE_HR) <= 3.0  # SSR, the pixel-level reader
    rep = json.loads(report)
    assert rep["methods"] == list(rppg.METHODS) and abs(rep["hr_bpm"]["chrom"] - TRUE_HR) <= 3.0
    assert_image(plot, frames=1)


def test_crop_uncrop_composite_round_trip(clip):
    images, fps, _hr, _mask = clip
    crops, crop, mask = run("PhysioLatentFaceCrop", images=images, fps=fps, size=64, margin=0.25, fixed=True)
    assert_image(crops, frames=images.shape[0], size=(64, 64))
    assert mask.shape == images.shape[:3]
    (back,) = run("PhysioLatentFaceUncrop", crops=crops, crop=crop, original=images)
    assert_image(back, frames=images.shape[0], size=images.shape[1:3])
    # a brightened crop pasted back changes the face, not the frame corners
    (bright,) = run("PhysioLatentFaceUncrop", crops=(crops + 0.2).clamp(0, 1), crop=crop, original=images)
    assert float((bright - images).abs()[:, :4, :4].max()) < 1e-6
    assert float((bright - images)[mask > 0.5].mean()) > 0.1
    (same,) = run("PhysioLatentFaceComposite", original=images, edited=bright, mask=torch.zeros_like(mask), feather_px=0)
    assert torch.allclose(same, images)
    (all_edit,) = run("PhysioLatentFaceComposite", original=images, edited=bright, mask=torch.ones_like(mask),
                      feather_px=0)
    assert torch.allclose(all_edit, bright, atol=1e-6)


def test_prequantise_makes_truncation_act_like_dithering():
    # a flat grey 0.3 of a level above 127: truncation alone would give 127 every frame
    frames = torch.full((60, 8, 8, 3), (127 + 0.3) / 255)
    (pre,) = run("PhysioLatentPreQuantize", images=frames, seed=0)
    codes = (pre * 255).clamp(0, 255).byte()  # what core SaveVideo does
    assert set(codes.unique().tolist()) <= {127, 128}
    assert float(codes.float().mean()) == pytest.approx(127.3, abs=0.05)
    assert float((frames * 255).clamp(0, 255).byte().float().mean()) == 127.0


def test_save_video_pulse_safe_writes_into_the_output_folder(clip, tmp_path, monkeypatch):
    from physiolatent_core.video import read_video

    monkeypatch.setenv("PHYSIOLATENT_OUTPUT_DIR", str(tmp_path))
    images = clip[0][:20]
    cls = NODES["PhysioLatentSaveVideo"]
    out = cls().save(images=images, fps=FPS, filename_prefix="sub/test", format="mkv (FFV1 lossless)", crf=18,
                     dither=True)
    path = Path(out["result"][0])
    assert path.parent == tmp_path / "sub" and path.suffix == ".mkv" and path.exists()
    assert out["ui"]["images"][0]["filename"] == path.name and out["ui"]["images"][0]["subfolder"] == "sub"
    frames, fps = read_video(path)
    assert frames.shape == tuple(images.shape) and fps == pytest.approx(FPS)
    assert np.abs(frames - images.numpy()).max() <= 1 / 255 + 1e-6  # lossless up to the 8-bit dither
    second = cls().save(images=images, fps=FPS, filename_prefix="sub/test", format="mp4 (H.264, dithered)", crf=18,
                        dither=True)
    assert Path(second["result"][0]).suffix == ".mp4" and Path(second["result"][0]) != path


@pytest.mark.parametrize("fmt, codec", [("mkv (FFV1 lossless)", "flac"), ("mp4 (H.264, dithered)", "aac")])
def test_save_video_pulse_safe_keeps_the_audio_input(clip, tmp_path, monkeypatch, fmt, codec):
    """ComfyUI's AUDIO (Get Video Components' audio) goes into the saved file: the same
    samples (FLAC) or the same tone at the same time (AAC)."""
    import av

    monkeypatch.setenv("PHYSIOLATENT_OUTPUT_DIR", str(tmp_path))
    images, rate = clip[0][:30], 16000
    t = np.arange(int(len(images) / FPS * rate)) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    audio = {"waveform": torch.from_numpy(wave)[None], "sample_rate": rate}
    out = NODES["PhysioLatentSaveVideo"]().save(images=images, fps=FPS, filename_prefix="a/test", format=fmt, crf=18,
                                                dither=True, audio=audio)
    with av.open(out["result"][0]) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.codec_context.sample_rate, stream.codec_context.channels) == (
            codec, rate, 2)
        frames = list(container.decode(stream))
    start = int(round(frames[0].pts * frames[0].time_base * rate))  # AAC's priming starts before 0
    got = np.concatenate([f.to_ndarray().reshape(2, -1) if f.format.is_planar else f.to_ndarray().reshape(-1, 2).T
                          for f in frames], axis=1).astype(np.float64)
    if got.dtype.kind == "i" or np.abs(got).max() > 1.5:
        got = got / 32768
    got = got[:, -start:][:, : wave.shape[1]]
    assert got.shape[1] >= wave.shape[1] - 1024
    n = got.shape[1] - 1024
    error = got[:, 1024:n] - wave[:, 1024:n]
    snr = 10 * np.log10(np.sum(wave[:, 1024:n] ** 2) / np.sum(error**2))
    assert snr > (80 if codec == "flac" else 20), snr


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors(clip):
    images, fps, _hr, mask = clip
    with pytest.raises(InputError, match="fps must be > 0"):
        run("PhysioLatentPulseEdit", images=images, fps=0.0, target_hr_bpm=90.0, robust_to="h264", seed=0)
    with pytest.raises(InputError, match="at least 4 s"):
        run("PhysioLatentEstimateHR", images=images[:30], fps=fps, method="pos", report_methods="pos")
    with pytest.raises(InputError, match="has 100 frames but the video has 160"):
        run("PhysioLatentPulseEdit", images=images, fps=fps, target_hr_bpm=90.0, robust_to="h264", seed=0,
            mask=mask[:100])
    with pytest.raises(InputError, match="must match"):
        run("PhysioLatentFaceComposite", original=images, edited=images[:, :64], mask=mask, feather_px=4)
    with pytest.raises(InputError, match="must match"):
        run("PhysioLatentEstimateHR", images=images, fps=fps, method="pos", report_methods="pos",
            reference=images[:150])
    with pytest.raises(InputError, match="Unknown rPPG estimator"):
        run("PhysioLatentEstimateHR", images=images, fps=fps, method="pos", report_methods="pos, magic")
    with pytest.raises(FaceNotFoundError):
        run("PhysioLatentFaceMask", images=torch.full((40, 64, 64, 3), 0.5), fps=fps)
    with pytest.raises(InputError, match="channels"):
        run("PhysioLatentPulseRemove", images=images[..., :2], fps=fps, decoy_hr_bpm=0.0, robust_to="h264", seed=0)
    crops, crop, _m = run("PhysioLatentFaceCrop", images=images, fps=fps, size=64, margin=0.25, fixed=True)
    with pytest.raises(InputError, match="same frames that went into Face Crop"):
        run("PhysioLatentFaceUncrop", crops=crops, crop=crop, original=images[:, :120])
    # all of them are ValueErrors, so ComfyUI shows the message in its error panel
    assert issubclass(InputError, PhysioLatentError) and issubclass(PhysioLatentError, ValueError)


# --------------------------------------------------------------------------- network nodes (tiny)
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny random VAE + adapter written as the user would place them."""
    import os

    from physiolatent_core.model import (PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter,
                                         save_vae, tiny_vae_config)

    root = tmp_path_factory.mktemp("models")
    (root / "vae").mkdir()
    (root / "physiolatent").mkdir()
    vae = build_vae(tiny_vae_config())
    save_vae(vae, root / "vae" / "tiny_vae.safetensors")
    save_adapter(root / "physiolatent" / "tiny_adapter.safetensors", PhysioLatentAdapter(adapter_config_tiny(), vae), vae)
    (root / "vae" / "notes.txt").write_text("not a model")
    old = os.environ.get("PHYSIOLATENT_MODELS_DIR")
    os.environ["PHYSIOLATENT_MODELS_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("PHYSIOLATENT_MODELS_DIR")
    else:
        os.environ["PHYSIOLATENT_MODELS_DIR"] = old


def test_network_nodes_run_end_to_end(tiny_models):
    assert NODES["PhysioLatentLoadVAE"].INPUT_TYPES()["required"]["vae_name"][0] == ["tiny_vae.safetensors"]
    (vae,) = run("PhysioLatentLoadVAE", vae_name="tiny_vae.safetensors", dtype="float32")
    (adapter,) = run("PhysioLatentLoadAdapter", adapter_name="tiny_adapter.safetensors", vae=vae)
    (cond,) = run("PhysioLatentHRPrompt", target_hr_bpm=90.0, template="Heart rate {bpm} bpm")
    assert cond["text"] == "Heart rate 90 bpm" and cond["clip_pooled"] is None
    crops = torch.rand(10, 32, 32, 3)
    (latent,) = run("PhysioLatentVAEEncode", images=crops, vae=vae)
    assert latent["samples"].ndim == 5 and latent["samples"].shape[:2] == (1, 16) and latent["physio_frames"] == 10
    (fused,) = run("PhysioLatentFusion", latent=latent, condition=cond, adapter=adapter)
    assert fused["samples"].shape == latent["samples"].shape
    (decoded,) = run("PhysioLatentFiLMDecode", latent=fused, condition=cond, adapter=adapter, vae=vae)
    assert_image(decoded, frames=10, size=(32, 32))
    (traj,) = run("PhysioLatentHRTrajectoryPrompt", trajectory="70:110", fps=10.0, num_frames=10,
                  template="Heart rate {bpm} bpm")
    assert traj["hr_curve"].shape == (10,) and traj["hr_bpm"] == pytest.approx(90.0, abs=0.5)
    (decoded2,) = run("PhysioLatentFiLMDecode", latent=fused, condition=traj, adapter=adapter, vae=vae)
    assert decoded2.shape == decoded.shape


def test_network_nodes_refuse_wrong_files_and_latents(tiny_models):
    (vae,) = run("PhysioLatentLoadVAE", vae_name="tiny_vae.safetensors", dtype="float32")
    with pytest.raises(ModelFileError, match="not found in"):
        run("PhysioLatentLoadAdapter", adapter_name="missing.safetensors", vae=vae)
    with pytest.raises(ModelFileError, match="not a .safetensors"):
        run("PhysioLatentLoadVAE", vae_name="notes.txt", dtype="auto")
    # the adapter file in the VAE slot, and the VAE file in the adapter slot
    import shutil

    shutil.copy(tiny_models / "physiolatent" / "tiny_adapter.safetensors", tiny_models / "vae" / "adapter_here.safetensors")
    shutil.copy(tiny_models / "vae" / "tiny_vae.safetensors", tiny_models / "physiolatent" / "vae_here.safetensors")
    with pytest.raises(ModelFileError):
        run("PhysioLatentLoadVAE", vae_name="adapter_here.safetensors", dtype="auto")
    with pytest.raises(ModelFileError, match="not a PhysioLatent adapter"):
        run("PhysioLatentLoadAdapter", adapter_name="vae_here.safetensors", vae=vae)
    (adapter,) = run("PhysioLatentLoadAdapter", adapter_name="tiny_adapter.safetensors", vae=vae)
    (cond,) = run("PhysioLatentHRPrompt", target_hr_bpm=90.0, template="Heart rate {bpm} bpm")
    # a core VAE object (ComfyUI's wrapper keeps the network in first_stage_model)
    from types import SimpleNamespace

    (wrapped,) = run("PhysioLatentLoadVAE", vae_name="", dtype="float32", vae=SimpleNamespace(first_stage_model=vae.model))
    assert wrapped.model is vae.model and wrapped.latent_channels == 16
    with pytest.raises(ModelFileError, match="not the CogVideoX"):
        run("PhysioLatentLoadVAE", vae_name="", dtype="float32", vae=SimpleNamespace(first_stage_model=torch.nn.Conv2d(3, 4, 1)))
    with pytest.raises(InputError, match="video latent"):
        run("PhysioLatentFusion", latent={"samples": torch.zeros(1, 4, 8, 8)}, condition=cond, adapter=adapter)
    with pytest.raises(InputError, match="multiples of 8"):
        run("PhysioLatentVAEEncode", images=torch.rand(5, 30, 30, 3), vae=vae)
    with pytest.raises(InputError, match="bpm"):
        run("PhysioLatentHRPrompt", target_hr_bpm=90.0, template="Heart rate")
