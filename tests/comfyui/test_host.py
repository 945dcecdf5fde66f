"""Integration test against a real ComfyUI (skipped unless COMFYUI_PATH is set).

    COMFYUI_PATH=/path/to/ComfyUI /path/to/comfy-venv/bin/python -m pytest tests/comfyui/test_host.py -v

Starts ComfyUI itself (``--cpu``, loopback only, a free port) on a throw-away base
directory whose custom_nodes/ links to this repo, converts each workflows/*.json to the
API format with the server's own /object_info, queues it and checks the results:

* synthetic_edit_verify: runs; the edited clip reads the 100 bpm target, and so does the
  file core SaveVideo wrote (truncation, crf 23) when read back;
* training_free_edit / hr_removal / verify_video: run on a face video (the public
  ../shared/data/evm_face.mp4 when present, else a rendered synthetic clip);
* paper_pipeline: runs with a tiny random VAE + adapter in models/ (plumbing, not quality);
* wan_t2v_then_edit: the server accepts the graph except for the model files it lacks;
* hrv_breathing_edit: the edited synthetic face reads its RMSSD and breathing targets.
* reversible_removal: a restore key is written into the output folder, and the frames
  Pulse Restore gives back read the synthetic face's 72 bpm again.

The server's Python is COMFYUI_PYTHON, else the interpreter running the test (it needs
ComfyUI's and this pack's requirements).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED_VIDEO = REPO.parent / "shared" / "data" / "evm_face.mp4"  # 53 bpm reference (PROVENANCE.md)
COMFYUI = os.environ.get("COMFYUI_PATH")

pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(not COMFYUI or not (Path(COMFYUI) / "main.py").is_file(),
                       reason="set COMFYUI_PATH to a ComfyUI checkout to run the host integration test"),
]

sys.path.insert(0, str(HERE))
from workflow_tools import ui_to_api  # noqa: E402

START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def _post(url: str, payload: dict):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _make_input_video(path: Path) -> float:
    """The face clip LoadVideo reads; returns its known heart rate (bpm)."""
    if SHARED_VIDEO.is_file():
        shutil.copy(SHARED_VIDEO, path)
        return 53.0
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import write_video

    clip = synth_subject(duration_s=8.0, fps=25.0, hr_bpm=66.0, size=(192, 256), seed=3)
    write_video(path, clip.frames, clip.fps, crf=12)
    return float(clip.hr_bpm)


def _make_short_video(path: Path) -> None:
    """4.5 s, 10 fps, 160x128 synthetic face: keeps the tiny-network run short on a CPU."""
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import write_video

    clip = synth_subject(duration_s=4.5, fps=10.0, hr_bpm=66.0, size=(128, 160), seed=4)
    write_video(path, clip.frames, clip.fps, crf=12)


def _make_faceless_video(path: Path) -> None:
    """5 s of a plain wall: no face anywhere."""
    import numpy as np

    from physiolatent_core.video import write_video

    write_video(path, np.full((50, 96, 128, 3), 0.6, np.float32), 10.0, crf=12)


def _make_tiny_models(models: Path) -> None:
    """Random tiny VAE + adapter under the file names paper_pipeline.json expects."""
    from physiolatent_core.model import (PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter,
                                         save_vae, tiny_vae_config)

    (models / "vae").mkdir(parents=True, exist_ok=True)
    (models / "physiolatent").mkdir(parents=True, exist_ok=True)
    vae = build_vae(tiny_vae_config())
    save_vae(vae, models / "vae" / "cogvideox_vae.safetensors")
    save_adapter(models / "physiolatent" / "physiolatent_adapter.safetensors",
                 PhysioLatentAdapter(adapter_config_tiny(), vae), vae)


class Host:
    def __init__(self, base: Path):
        self.base = base
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(base / "server.log", "w")
        cmd = [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", str(base), "--disable-auto-launch",
               "--disable-api-nodes", "--disable-metadata"]
        env = {**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.proc = subprocess.Popen(cmd, cwd=COMFYUI, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + START_TIMEOUT_S
        while True:
            try:
                self.object_info = _get(self.url + "/object_info", timeout=60)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    pytest.fail("ComfyUI did not start:\n" + (base / "server.log").read_text()[-3000:])
                time.sleep(2)

    def run(self, ui: dict, edit=None, expect_error: bool = False) -> tuple[dict, dict]:
        """Queue a UI workflow; returns (history entry, API prompt). ``edit`` may change the prompt first.

        Fails the test when the run fails, or, with ``expect_error``, when it succeeds.
        """
        prompt = ui_to_api(ui, self.object_info)
        if edit:
            edit(prompt)
        status, body = _post(self.url + "/prompt", {"prompt": prompt, "client_id": "physiolatent-test"})
        assert status == 200 and not body.get("node_errors"), json.dumps(body, indent=1)[:3000]
        pid = body["prompt_id"]
        deadline = time.time() + RUN_TIMEOUT_S
        while time.time() < deadline:
            hist = _get(f"{self.url}/history/{pid}")
            if pid in hist and hist[pid].get("status", {}).get("completed") is not None:
                entry = hist[pid]
                ok = entry["status"].get("status_str") == "success"
                if ok == expect_error:
                    msgs = [m for m in entry["status"].get("messages", []) if m[0] == "execution_error"]
                    pytest.fail(f"workflow {'succeeded' if ok else 'failed'}: {json.dumps(msgs, indent=1)[:3000]}")
                return entry, prompt
            time.sleep(1)
        pytest.fail(f"workflow did not finish in {RUN_TIMEOUT_S} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_base")
    for sub in ("custom_nodes", "input", "output", "models", "user", "temp"):
        (base / sub).mkdir()
    (base / "custom_nodes" / "PhysioLatent").symlink_to(REPO, target_is_directory=True)
    true_hr = _make_input_video(base / "input" / "face.mp4")
    _make_short_video(base / "input" / "short.mp4")
    _make_faceless_video(base / "input" / "wall.mp4")
    _make_tiny_models(base / "models")
    h = Host(base)
    h.true_hr = true_hr
    yield h
    h.stop()


def workflow(name: str) -> dict:
    return json.loads((REPO / "workflows" / f"{name}.json").read_text())


def node_id(prompt: dict, class_type: str, title_part: str | None = None, ui: dict | None = None) -> str:
    ids = [k for k, v in prompt.items() if v["class_type"] == class_type]
    if title_part and ui:
        titles = {str(n["id"]): n.get("title", "") for n in ui["nodes"]}
        ids = [k for k in ids if title_part in titles[k]]
    assert len(ids) == 1, (class_type, title_part, ids)
    return ids[0]


def reported_hr(entry: dict, nid: str) -> float:
    """bpm shown by an Estimate Heart Rate node ("pos: 100.0 bpm (before ...)")."""
    text = entry["outputs"][nid]["text"][0]
    return float(text.split(":")[1].split("bpm")[0])


def preview_json(entry: dict, nid: str) -> dict:
    return json.loads(entry["outputs"][nid]["text"][0])


def saved_files(entry: dict, host: Host) -> list[Path]:
    files = []
    for out in entry["outputs"].values():
        for item in out.get("images", []):
            if item.get("type") == "output":
                files.append(host.base / "output" / item.get("subfolder", "") / item["filename"])
    return files


# --------------------------------------------------------------------------- tests
def test_host_loads_the_pack(host):
    names = [k for k in host.object_info if k.startswith("PhysioLatent")]
    assert len(names) >= 17
    log = (host.base / "server.log").read_text()
    failed = [line for line in log.splitlines() if "Cannot import" in line and "PhysioLatent" in line]
    assert not failed, log[-3000:]
    # models/physiolatent is registered as a model folder and listed in the loader
    adapters = host.object_info["PhysioLatentLoadAdapter"]["input"]["required"]["adapter_name"][0]
    assert adapters == ["physiolatent_adapter.safetensors"]


def test_synthetic_edit_verify(host):
    from physiolatent_core.rppg import ESTIMATORS, extract_rgb
    from physiolatent_core.rppg.hr import estimate_hr
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import read_video

    ui = workflow("synthetic_edit_verify")
    entry, prompt = host.run(ui)
    after = node_id(prompt, "PhysioLatentEstimateHR", "After", ui)
    before = node_id(prompt, "PhysioLatentEstimateHR", "Before", ui)
    assert abs(reported_hr(entry, after) - 100.0) <= 3.0
    assert abs(reported_hr(entry, before) - 72.0) <= 3.0
    files = saved_files(entry, host)
    assert len(files) == 2 and all(f.is_file() and f.stat().st_size > 1000 for f in files)
    # Read back what core SaveVideo wrote (Pulse Edit -> CreateVideo -> SaveVideo) and
    # the pulse-safe file; both must still show the 100 bpm target.
    clip = synth_subject(duration_s=10.0, fps=30.0, hr_bpm=72.0, size=(240, 320), seed=0)
    for f in files:
        frames, fps = read_video(f)
        hr = estimate_hr(ESTIMATORS["pos"](extract_rgb(frames, clip.skin_mask), fps), fps)
        assert abs(hr - 100.0) <= 3.0, f"{f.name}: {hr:.1f} bpm"


def test_training_free_edit(host):
    ui = workflow("training_free_edit")
    entry, prompt = host.run(ui)
    after = node_id(prompt, "PhysioLatentEstimateHR", "After", ui)
    before = node_id(prompt, "PhysioLatentEstimateHR", "Before", ui)
    assert abs(reported_hr(entry, after) - 90.0) <= 3.0
    assert abs(reported_hr(entry, before) - host.true_hr) <= 3.0
    files = saved_files(entry, host)
    assert len(files) == 2
    if SHARED_VIDEO.is_file():  # the shared clip has an AAC track: both saved files keep it (the synthetic one has none)
        want = _audio_seconds(host.base / "input" / "face.mp4")
        assert want > 1.0
        for f in files:
            assert abs(_audio_seconds(f) - want) < 0.2, f"{f.name}: audio {_audio_seconds(f):.2f} s, input {want:.2f} s"


def _audio_seconds(path: Path) -> float:
    """Duration of a file's first audio stream from its decoded samples (0 without audio)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return 0.0
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


def test_hr_removal(host):
    ui = workflow("hr_removal")
    entry, prompt = host.run(ui)
    report = preview_json(entry, node_id(prompt, "PreviewAny", "Report", ui))
    assert report["snr_db_after"]["pos"] < report["snr_db_before"]["pos"] - 3.0
    assert len(saved_files(entry, host)) == 1


def test_hrv_breathing_edit(host):
    """set heart rate, HRV and breathing: the After report reads the RMSSD and breathing targets."""
    ui = workflow("hrv_breathing_edit")
    entry, prompt = host.run(ui)
    report = preview_json(entry, node_id(prompt, "PreviewAny", "Vital signs (After)", ui))
    assert report["rmssd_within_20pct"] and report["resp_within_1_5"], report
    assert abs(report["after"]["hrv"]["hr_bpm"] - 72.0) <= 3.0
    assert len(saved_files(entry, host)) == 1


def test_reversible_removal(host):
    ui = workflow("reversible_removal")
    entry, prompt = host.run(ui)
    info = preview_json(entry, node_id(prompt, "PreviewAny", "Key", ui))
    assert info["mode"] == "remove" and info["frames"] == 300
    restored = node_id(prompt, "PhysioLatentEstimateHR", "Restored", ui)
    assert abs(reported_hr(entry, restored) - 72.0) <= 3.0
    assert list((host.base / "output" / "PhysioLatent").glob("pulse_key_*.json"))
    assert len(saved_files(entry, host)) == 1  # the removed frames, as lossless mkv


def test_verify_video(host):
    ui = workflow("verify_video")
    entry, prompt = host.run(ui)
    bpm = float(entry["outputs"][node_id(prompt, "PreviewAny", "Heart rate", ui)]["text"][0])
    assert abs(bpm - host.true_hr) <= 3.0
    report = preview_json(entry, node_id(prompt, "PreviewAny", "Report", ui))
    assert len(report["methods"]) >= 7


def test_paper_pipeline_runs_with_tiny_models(host):
    """Plumbing of the network graph on the host: tiny random weights, no CLIP file
    (the HR prompt falls back to the numeric condition), a short clip, small crops."""
    ui = workflow("paper_pipeline")

    def shrink(prompt):
        prompt[node_id(prompt, "LoadVideo")]["inputs"]["file"] = "short.mp4"
        clip_id = node_id(prompt, "CLIPLoader")
        del prompt[clip_id]
        hr_prompt = prompt[node_id(prompt, "PhysioLatentHRPrompt")]
        hr_prompt["inputs"].pop("clip")
        prompt[node_id(prompt, "PhysioLatentFaceCrop")]["inputs"]["size"] = 64

    entry, prompt = host.run(ui, edit=shrink)
    files = saved_files(entry, host)
    assert len(files) == 1 and files[0].stat().st_size > 1000
    report = preview_json(entry, node_id(prompt, "PreviewAny", "Report (After)", ui))
    assert report["n_frames"] > 0 and report["psnr_db"] > 0  # random weights: plumbing only


def test_wan_workflow_only_lacks_model_files(host):
    ui = workflow("wan_t2v_then_edit")
    prompt = ui_to_api(ui, host.object_info)
    status, body = _post(host.url + "/prompt", {"prompt": prompt, "client_id": "physiolatent-test"})
    assert status == 400
    errors = body["node_errors"]
    assert errors, body
    for nid, err in errors.items():
        assert prompt[nid]["class_type"] in ("UNETLoader", "CLIPLoader", "VAELoader"), err
        assert {e["type"] for e in err["errors"]} == {"value_not_in_list"}, err


def test_bad_input_is_a_node_error_in_the_host(host):
    """No face in the video: the node fails with the library's message, in ComfyUI's error panel."""
    ui = workflow("verify_video")

    def wall(prompt):
        prompt[node_id(prompt, "LoadVideo")]["inputs"]["file"] = "wall.mp4"

    entry, prompt = host.run(ui, edit=wall, expect_error=True)
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "PhysioLatentEstimateHR"
    assert error["exception_type"].endswith("FaceNotFoundError")
    assert "face" in error["exception_message"].lower()
