"""pipeline.py (the file-to-file job), editors.py (the editor protocol) and the promise
that the command line and the ComfyUI nodes give the same frames for the same input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physiolatent_core import cli
from physiolatent_core.editor import PulseEditor
from physiolatent_core.editors import DEFAULT_CHUNK_FRAMES, chunk_starts, run_editor
from physiolatent_core.errors import InputError
from physiolatent_core.pipeline import JobRequest, NetworkFiles, rechunk, run_job, sidecar
from physiolatent_core.synth import synth_subject
from physiolatent_core.video import read_video, write_video

sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
from workflow_tools import load_pack  # noqa: E402

NODES = load_pack().NODE_CLASS_MAPPINGS


def node(name: str, **kwargs):
    cls = NODES[name]
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out["result"] if isinstance(out, dict) else out


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    """A 5 s, 15 fps, 160x120 synthetic face (true HR 72), saved losslessly."""
    clip = synth_subject(duration_s=5.0, hr_bpm=72.0, size=(120, 160), fps=15.0, seed=4)
    return Path(write_video(tmp_path_factory.mktemp("in") / "face.mkv", clip.frames, clip.fps))


# --------------------------------------------------------------------------- the request


def test_request_parses_targets_and_readers_once():
    request = JobRequest(input="in.mp4", mode="edit", output=Path("out.mkv"), target="0s=70, 4s=110",
                         methods=("pos", "ssr"))
    assert request.target.kind != "constant" and request.aim is request.target
    assert request.methods == ("pos", "ssr") and request.decoy is None
    removal = JobRequest(input="in.mp4", mode="remove", output=Path("out.mkv"), decoy=95, target=80)
    assert removal.target is None and removal.aim.mean_bpm == 95  # a removal has no target
    assert JobRequest(input="in.mp4", mode="estimate").output is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="edit", output=Path("o.mkv")), "target heart rate"),
    (dict(mode="remove"), "output path"),
    (dict(mode="boost", output=Path("o.mkv")), "mode"),
    (dict(mode="edit", output=Path("o.mkv"), target=400), "bpm"),
    (dict(mode="estimate", methods=("pos", "magic")), "magic"),
    (dict(mode="edit", output=Path("o.mkv"), target="70:120", network=NetworkFiles(Path("v"), Path("a"))), "ramp"),
    (dict(mode="edit", output=Path("o.mkv"), target=80, amplitude=0.004, network=NetworkFiles(Path("v"), Path("a"))),
     "strength"),
])
def test_request_refuses_what_cannot_run(kwargs, message):
    with pytest.raises(InputError, match=message):
        JobRequest(input="in.mp4", **kwargs)


def test_sidecars_sit_beside_the_output():
    assert sidecar(Path("a/edited.mp4"), ".report.json") == Path("a/edited.mp4.report.json")
    assert sidecar(Path("a/edited.mkv"), ".png") == Path("a/edited.mkv.png")  # no clash with edited.mp4's
    assert sidecar(Path("a/frames"), ".png") == Path("a/frames.png")


def test_rechunk_cuts_exact_blocks():
    chunks = [np.arange(n) for n in (5, 7, 1, 9)]
    out = list(rechunk(iter(chunks), 6))
    assert [len(c) for c in out] == [6, 6, 6, 4]
    assert np.array_equal(np.concatenate(out), np.concatenate(chunks))


def test_run_job_estimates_and_cleans_up_a_failed_edit(clip_path, tmp_path, monkeypatch):
    report = run_job(JobRequest(input=clip_path, mode="estimate", methods=("pos",), report=tmp_path / "r.json"))
    assert abs(report["verify"]["hr_bpm"]["pos"] - 72) < 5 and (tmp_path / "r.json").exists()

    import physiolatent_core.verify as verify_module

    def broken(*args, **kwargs):
        raise InputError("verification exploded")

    monkeypatch.setattr(verify_module, "verify_traces", broken)
    with pytest.raises(InputError, match="exploded"):
        run_job(JobRequest(input=clip_path, mode="edit", output=tmp_path / "o.mkv", target=90, quiet=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # the video it wrote was removed


# --------------------------------------------------------------------------- the editor protocol


class _Recorder:
    """An editor that wants blocks of 7 frames and darkens what it is given."""

    chunk_frames = 7

    def __init__(self):
        self.observed, self.applied, self.track = [], [], "unset"

    def observe(self, frames, face_mask):
        self.observed.append(len(frames))

    def plan(self, track=None):
        self.track = track

    def apply(self, frames, face_mask, start, inplace=False):
        self.applied.append((start, len(frames)))
        return frames * (1 - face_mask[..., None] * 0.5)

    @property
    def info(self):
        return {"method": "recorder"}


def test_run_editor_cuts_the_clip_as_the_editor_asks():
    frames = np.full((23, 4, 4, 3), 0.5, np.float32)
    mask = np.ones((23, 4, 4), np.float32)
    editor, steps = _Recorder(), []
    out = run_editor(editor, frames, mask, track="the track", step=lambda: steps.append(1))
    assert editor.observed == [7, 7, 7, 2] and editor.applied == [(0, 7), (7, 7), (14, 7), (21, 2)]
    assert editor.track == "the track" and len(steps) == 2 * len(chunk_starts(23, editor)) + 1
    assert np.allclose(out, 0.25) and np.allclose(frames, 0.5)  # a new array unless inplace
    assert chunk_starts(130, PulseEditor(15.0, "edit", target=80)).step == DEFAULT_CHUNK_FRAMES
    with pytest.raises(InputError, match="mask"):
        run_editor(_Recorder(), frames, mask[:5])


def test_the_training_free_editor_does_not_depend_on_the_chunking(clip_path):
    frames, fps = read_video(clip_path)
    from physiolatent_core.face import face_mask

    mask, _ = face_mask(frames, fps)
    whole = PulseEditor(fps, "edit", target=95, robust_to="lossless")
    whole.observe(frames, mask)
    whole.plan()
    expected = whole.apply(frames, mask, 0)
    chunked = run_editor(PulseEditor(fps, "edit", target=95, robust_to="lossless"), frames, mask)
    assert np.array_equal(chunked, expected)


# --------------------------------------------------------------------------- CLI == nodes


def _saved_by_nodes(frames, fps, tmp_path, monkeypatch) -> np.ndarray:
    """The pack's lossless saver, then decoded again."""
    monkeypatch.setenv("PHYSIOLATENT_OUTPUT_DIR", str(tmp_path / "comfy_out"))
    (path,) = node("PhysioLatentSaveVideo", images=frames, fps=fps, filename_prefix="same", format="mkv (FFV1 lossless)",
                   crf=18, dither=True)
    return read_video(path)[0]


def test_cli_and_nodes_give_the_same_frames_training_free(clip_path, tmp_path, monkeypatch):
    assert cli.main(["edit", str(clip_path), "-o", str(tmp_path / "cli.mkv"), "--target-hr", "95", "--robust-to",
                     "lossless", "--no-verify", "--quiet"]) == 0
    frames, fps = read_video(clip_path)
    images, info = node("PhysioLatentPulseEdit", images=torch.from_numpy(frames), fps=fps, target_hr_bpm=95.0,
                        robust_to="lossless", seed=0)
    # The nodes aim at core SaveVideo (8-bit truncation): a change under one level would be
    # made in whole levels there, which the command line's dithered writer does not need.
    assert json.loads(info)["whole_levels"] is False
    by_nodes = _saved_by_nodes(images, fps, tmp_path, monkeypatch)
    by_cli = read_video(tmp_path / "cli.mkv")[0]
    assert np.array_equal(by_cli, by_nodes)
    assert np.abs(by_cli - frames).max() > 0  # and it is an edit


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    from physiolatent_core.model import PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter, tiny_vae_config
    from physiolatent_core.model.vae import save_vae

    root = tmp_path_factory.mktemp("models")
    vae = build_vae(tiny_vae_config(), seed=0)
    save_vae(vae, root / "vae.safetensors")
    adapter = PhysioLatentAdapter(adapter_config_tiny(), vae)
    torch.manual_seed(1)
    with torch.no_grad():  # an untrained adapter is the identity: give it weights that change the latent
        for p in adapter.fusion.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_adapter(root / "adapter.safetensors", adapter, vae)
    return root


def test_cli_and_nodes_give_the_same_frames_network(clip_path, tiny_files, tmp_path, monkeypatch):
    monkeypatch.setenv("PHYSIOLATENT_MODELS_DIR", str(tiny_files))
    (tiny_files / "vae").mkdir(exist_ok=True)
    (tiny_files / "physiolatent").mkdir(exist_ok=True)
    for kind, name in (("vae", "vae.safetensors"), ("physiolatent", "adapter.safetensors")):
        target = tiny_files / kind / name
        if not target.exists():
            target.symlink_to(tiny_files / name)
    assert cli.main(["edit", str(clip_path), "-o", str(tmp_path / "cli.mkv"), "--target-hr", "90", "--method",
                     "physiolatent", "--vae", str(tiny_files / "vae.safetensors"), "--adapter",
                     str(tiny_files / "adapter.safetensors"), "--crop-size", "32", "--device", "cpu", "--no-verify",
                     "--quiet"]) == 0
    frames, fps = read_video(clip_path)
    images = torch.from_numpy(frames)
    (vae,) = node("PhysioLatentLoadVAE", vae_name="vae.safetensors", dtype="float32")
    (adapter,) = node("PhysioLatentLoadAdapter", adapter_name="adapter.safetensors", vae=vae)
    crops, crop, mask = node("PhysioLatentFaceCrop", images=images, fps=fps, size=32, margin=0.25, fixed=True)
    (cond,) = node("PhysioLatentHRPrompt", target_hr_bpm=90.0, template="Heart rate {bpm} bpm")
    (latent,) = node("PhysioLatentVAEEncode", images=crops, vae=vae)
    (fused,) = node("PhysioLatentFusion", latent=latent, condition=cond, adapter=adapter)
    (decoded,) = node("PhysioLatentFiLMDecode", latent=fused, condition=cond, adapter=adapter, vae=vae)
    (uncropped,) = node("PhysioLatentFaceUncrop", crops=decoded, crop=crop, original=images)
    (edited,) = node("PhysioLatentFaceComposite", original=images, edited=uncropped, mask=mask, feather_px=0)
    by_nodes = _saved_by_nodes(edited, fps, tmp_path, monkeypatch)
    by_cli = read_video(tmp_path / "cli.mkv")[0]
    assert np.array_equal(by_cli, by_nodes)
    assert np.abs(by_cli - frames).max() > 0.01  # the face went through the network
