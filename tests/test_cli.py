"""cli.py: every subcommand on tiny synthetic clips, and the bad-input cases."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from physiolatent_core import cli
from physiolatent_core.rppg import METHODS
from physiolatent_core.synth import synth_subject
from physiolatent_core.video import probe_video, write_video

REPO = Path(__file__).resolve().parents[1]
TRUE_HR = 72.0
SMALL = dict(size=(120, 160), fps=15.0, seed=3)


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory) -> Path:
    """A 6 s, 15 fps, 160x120 synthetic face with a known HR, saved losslessly."""
    clip = synth_subject(duration_s=6.0, hr_bpm=TRUE_HR, **SMALL)
    return Path(write_video(tmp_path_factory.mktemp("in") / "face.mkv", clip.frames, clip.fps))


def run(args, capsys):
    """(exit code, stdout, stderr) of the CLI run in-process."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_edit_lossless_writes_video_report_and_figure(clip_path, tmp_path, capsys):
    out = tmp_path / "edited.mkv"
    code, stdout, _ = run(["edit", clip_path, "-o", out, "--target-hr", 100, "--methods", "pos,chrom,green,ssr"],
                          capsys)
    assert code == 0
    assert files_in(tmp_path) == {"edited.mkv", "edited.mkv.report.json", "edited.mkv.png"}
    assert probe_video(out).num_frames == 90
    report = json.loads((tmp_path / "edited.mkv.report.json").read_text())
    assert report["settings"]["robust_to"] == "lossless" and report["settings"]["output_codec"] == "ffv1"
    assert report["settings"]["methods"] == ["pos", "chrom", "green", "ssr"]
    assert report["input"]["num_frames"] == 90 and report["input"]["fps"] == pytest.approx(15.0)
    verify = report["verify"]
    for name in ("pos", "ssr"):  # SSR reads the skin pixels' colour distribution, streamed by chunk
        assert abs(verify["hr_bpm_before"][name] - TRUE_HR) < 5  # the input's own pulse
        assert abs(verify["hr_bpm"][name] - 100) < 5  # the saved file reads the target
    assert verify["psnr_db"] > 35 and verify["ssim"] > 0.95
    assert report["codec_reference"] is None  # lossless: the input itself is the reference
    assert set(report["timings_s"]) >= {"face_track", "analyse", "edit_write", "verify", "total"}
    if sys.platform != "win32":  # peak memory so far, so it never falls from stage to stage
        peaks = list(report["peak_memory_mb"].values())
        assert len(peaks) == len(report["timings_s"]) - 1 and peaks == sorted(peaks) and peaks[0] > 50
    assert "HR after" in stdout and "pos" in stdout
    umask = os.umask(0)
    os.umask(umask)
    for name in ("edited.mkv.report.json", "edited.mkv.png"):  # ordinary files, not mkstemp-private ones
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_edit_mp4_reports_codec_reference_and_honours_options(clip_path, tmp_path, capsys):
    out = tmp_path / "edited.mp4"
    report_path = tmp_path / "custom.json"
    code, _, _ = run(["edit", clip_path, "-o", out, "--target-hr", "80", "--crf", 20, "--no-figure",
                      "--report", report_path, "--quiet", "--methods", "pos"], capsys)
    assert code == 0
    assert files_in(tmp_path) == {"edited.mp4", "custom.json"}
    report = json.loads(report_path.read_text())
    assert report["settings"]["robust_to"] == "h264" and report["settings"]["crf"] == 20
    ref = report["codec_reference"]
    assert ref["psnr_db"] > 30 and 0 < ref["ssim"] <= 1 and ref["codec_only_psnr_db"] > 30
    assert report["outputs"]["figure"] is None


def test_codec_reference_is_the_same_beside_the_read_back_or_after_it(clip_path, tmp_path, capsys, monkeypatch):
    # Frames up to 640x480 get the reference in a worker thread during the read-back; larger
    # ones after it (one x264 instance at a time). Same numbers either way.
    from physiolatent_core import codec

    refs = []
    for limit in (codec.PARALLEL_MAX_PIXELS, 0):
        monkeypatch.setattr(codec, "PARALLEL_MAX_PIXELS", limit)
        out = tmp_path / f"edited_{limit}.mp4"
        code, _, _ = run(["edit", clip_path, "-o", out, "--target-hr", "80", "--no-figure", "--quiet",
                          "--methods", "pos", "--preset", "ultrafast"], capsys)
        assert code == 0
        refs.append(json.loads(out.with_name(out.name + ".report.json").read_text())["codec_reference"])
    assert refs[0] == refs[1] and refs[0]["psnr_db"] > 30


def test_edit_without_verification_is_honest_about_it(clip_path, tmp_path, capsys):
    out = tmp_path / "fast.mp4"
    code, stdout, _ = run(["edit", clip_path, "-o", out, "--target-hr", "90", "--no-verify", "--preset", "veryfast"],
                          capsys)
    assert code == 0 and "not verified" in stdout
    assert files_in(tmp_path) == {"fast.mp4", "fast.mp4.report.json"}  # no figure: nothing was read back
    report = json.loads((tmp_path / "fast.mp4.report.json").read_text())
    assert report["verify"] is None and report["outputs"]["figure"] is None
    assert report["editor"]["codec"]["preset"] == "veryfast" and report["editor"]["codec"]["crf"] == 18
    assert "verify" not in report["timings_s"]
    assert probe_video(out).num_frames == probe_video(clip_path).num_frames


def test_edit_with_a_fixed_amplitude(clip_path, tmp_path, capsys):
    code, _, _ = run(["edit", clip_path, "-o", tmp_path / "a.mkv", "--target-hr", "90", "--amplitude", "0.005",
                      "--no-verify", "--quiet"], capsys)
    assert code == 0
    editor_info = json.loads((tmp_path / "a.mkv.report.json").read_text())["editor"]
    assert editor_info["injected_rms"] == editor_info["injected_rms_base"] == 0.005
    assert editor_info["min_psnr_db"] == 52.0  # a .mkv is lossless: the default fidelity floor
    code, _, _ = run(["edit", clip_path, "-o", tmp_path / "b.mkv", "--target-hr", "90", "--min-psnr", "0",
                      "--no-verify", "--quiet"], capsys)
    assert code == 0
    assert json.loads((tmp_path / "b.mkv.report.json").read_text())["editor"]["min_psnr_db"] is None


def test_edit_trajectory_reports_hr_over_time(clip_path, tmp_path, capsys):
    code, _, _ = run(["edit", clip_path, "-o", tmp_path / "ramp.mkv", "--target-hr", "70:110", "--quiet",
                      "--no-figure", "--methods", "pos"], capsys)
    assert code == 0
    report = json.loads((tmp_path / "ramp.mkv.report.json").read_text())
    assert report["settings"]["target_hr"].startswith("70:110")
    trajectory = report["trajectory"]
    assert len(trajectory["times_s"]) == len(trajectory["hr_bpm"]) == len(trajectory["target_bpm"]) > 0
    assert trajectory["target_bpm"][0] < trajectory["target_bpm"][-1]


def test_remove_with_decoy(clip_path, tmp_path, capsys):
    out = tmp_path / "frames/"
    code, _, _ = run(["remove", clip_path, "-o", str(out) + "/", "--decoy-hr", 110, "--quiet",
                      "--methods", "pos,chrom"], capsys)
    assert code == 0
    assert len(list(out.glob("*.png"))) == 90
    report = json.loads((tmp_path / "frames.report.json").read_text())
    assert report["settings"]["decoy_hr"].startswith("110")
    assert abs(report["verify"]["hr_bpm"]["pos"] - 110) < 5
    assert (tmp_path / "frames.png").is_file()


def test_estimate_prints_hr_and_writes_report(clip_path, tmp_path, capsys):
    report_path = tmp_path / "est.json"
    code, stdout, _ = run(["estimate", clip_path, "--methods", "all", "--report", report_path,
                           "--figure", tmp_path / "est.png", "--quiet"], capsys)
    assert code == 0
    lines = dict(line.split(None, 1) for line in stdout.strip().splitlines())
    assert set(lines) == {*METHODS, "median", "vitals"}
    assert lines["vitals"].startswith("HRV (") and "RMSSD" in lines["vitals"] and "breathing" in lines["vitals"]
    for name in ("pos", "chrom", "ssr"):
        assert abs(float(lines[name].split()[0]) - TRUE_HR) < 5
    report = json.loads(report_path.read_text())
    assert report["verify"]["hr_bpm"]["pos"] == pytest.approx(float(lines["pos"].split()[0]), abs=0.06)
    assert (tmp_path / "est.png").stat().st_size > 1000


def test_demo_writes_its_four_files(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = run(["demo", "--out", out, "--size", "120x160", "--duration", 5, "--methods", "pos"], capsys)
    assert code == 0
    assert files_in(out) == {"input.mp4", "edited.mp4", "report.json", "figure.png"}
    report = json.loads((out / "report.json").read_text())
    assert report["true_hr_bpm"] == pytest.approx(68.0, abs=0.5)
    assert report["settings"]["target_hr"].startswith("100")
    assert abs(report["verify"]["hr_bpm"]["pos"] - 100) < 5
    assert "true HR" in stdout and "PSNR" in stdout


def test_demo_with_a_darker_skin_tone(tmp_path, capsys):
    from physiolatent_core.video import read_video

    # 180x240: on a 120x160 clip (a face ~60 px wide) the edit after crf 18 is marginal at
    # tone 9 (POS SNR -4.7 to -9.7 dB, seeds 0-2; docs/BENCHMARKS.md).
    out = tmp_path / "demo"
    code, _, _ = run(["demo", "--out", out, "--size", "180x240", "--duration", 5, "--methods", "pos",
                      "--skin-tone", 9, "--quiet"], capsys)
    assert code == 0
    frames, _fps = read_video(out / "input.mp4", max_frames=1)
    assert frames[0, 75:105, 105:135, 1].mean() < 70 / 255  # tone 9's green is ~44 levels; the photo's ~160
    report = json.loads((out / "report.json").read_text())
    assert abs(report["verify"]["hr_bpm"]["pos"] - 100) < 5
    expect_error(["demo", "--out", tmp_path / "x", "--skin-tone", 11], capsys, "skin-tone", tmp_path)


# --------------------------------------------------------------------------- bad input


def expect_error(args, capsys, match: str, folder: Path | None = None):
    before = files_in(folder) if folder else None
    code, _, err = run(args, capsys)
    assert code == 2
    assert err.startswith("error: ") and match in err, err
    assert "Traceback" not in err
    if folder is not None:
        assert files_in(folder) == before, "a failed run must not leave files behind"


def test_missing_input(tmp_path, capsys):
    expect_error(["edit", tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4", "--target-hr", 80], capsys,
                 "not found", tmp_path)


def test_not_a_video(tmp_path, capsys):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video\n")
    code, _, err = run(["estimate", bogus], capsys)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    expect_error(["edit", bogus, "-o", tmp_path / "o.mkv", "--target-hr", 80], capsys, "", tmp_path)


def test_output_equals_input(clip_path, capsys):
    expect_error(["edit", clip_path, "-o", clip_path, "--target-hr", 80, "--overwrite"], capsys,
                 "equals the input", clip_path.parent)


def test_existing_output_needs_overwrite(clip_path, tmp_path, capsys):
    existing = tmp_path / "o.mkv"
    existing.write_bytes(b"keep me")
    expect_error(["edit", clip_path, "-o", existing, "--target-hr", 80], capsys, "--overwrite", tmp_path)
    assert existing.read_bytes() == b"keep me"
    (tmp_path / "o.mkv.png").write_bytes(b"old figure")  # the figure counts as an output too
    existing.unlink()
    expect_error(["edit", clip_path, "-o", existing, "--target-hr", 80], capsys, "o.mkv.png", tmp_path)


@pytest.mark.parametrize("hr", ["300", "10", "70:400", "fast"])
def test_target_outside_range(clip_path, tmp_path, capsys, hr):
    expect_error(["edit", clip_path, "-o", tmp_path / "o.mkv", "--target-hr", hr], capsys,
                 "30-240" if hr != "fast" else "not a number", tmp_path)


def test_clip_too_short(tmp_path, capsys):
    short = synth_subject(duration_s=2.0, **SMALL)
    path = Path(write_video(tmp_path / "short.mkv", short.frames, short.fps))
    expect_error(["edit", path, "-o", tmp_path / "o.mkv", "--target-hr", 80], capsys, "at least", tmp_path)
    expect_error(["estimate", path], capsys, "at least", tmp_path)


def test_no_face_and_grayscale_input(tmp_path, capsys):
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.3, 0.7, size=(75, 96, 128, 3)).astype(np.float32)  # 5 s of noise, no face
    path = Path(write_video(tmp_path / "noise.mkv", noise, 15.0))
    expect_error(["edit", path, "-o", tmp_path / "o.mkv", "--target-hr", 80], capsys, "no face", tmp_path)
    # Grey content (equal channels; grayscale pix_fmt files are covered in test_video) edits like any other.
    grey = synth_subject(duration_s=5.0, **SMALL).frames.mean(axis=-1, keepdims=True).repeat(3, axis=-1)
    src = Path(write_video(tmp_path / "grey.mkv", grey, SMALL["fps"]))
    code, _, err = run(["edit", src, "-o", tmp_path / "g.mkv", "--target-hr", 95, "--quiet", "--no-figure"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "g.mkv.report.json").read_text())
    assert abs(report["verify"]["hr_bpm"]["chrom"] - 95) <= 3


def test_bad_options(clip_path, tmp_path, capsys):
    expect_error(["edit", clip_path, "-o", tmp_path / "o.avi", "--target-hr", 80], capsys, ".avi", tmp_path)
    expect_error(["edit", clip_path, "-o", tmp_path / "o.mp4", "--target-hr", 80, "--crf", 60], capsys, "crf", tmp_path)
    expect_error(["estimate", clip_path, "--methods", "pos,magic"], capsys, "magic", tmp_path)
    expect_error(["edit", clip_path, "-o", tmp_path / "o.mkv", "--target-hr", 80, "--amplitude", 0.5], capsys,
                 "amplitude", tmp_path)
    expect_error(["edit", clip_path, "-o", tmp_path / "missing_dir" / "o.mkv", "--target-hr", 80], capsys,
                 "does not exist", tmp_path)


def test_frame_folder_needs_fps(tmp_path, capsys):
    folder = tmp_path / "frames"
    clip = synth_subject(duration_s=0.2, **SMALL)
    write_video(str(folder) + "/", clip.frames, clip.fps)
    expect_error(["estimate", folder], capsys, "fps", tmp_path)


def test_failure_after_writing_removes_outputs(clip_path, tmp_path, capsys, monkeypatch):
    import physiolatent_core.verify as verify_module
    from physiolatent_core.errors import InputError

    def broken(*args, **kwargs):
        raise InputError("verification exploded")

    monkeypatch.setattr(verify_module, "verify_traces", broken)
    expect_error(["edit", clip_path, "-o", tmp_path / "o.mkv", "--target-hr", 90, "--quiet"], capsys,
                 "verification exploded", tmp_path)


def test_module_entry_point_exit_code(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "physiolatent_core", "edit", str(tmp_path / "x.mp4"), "-o",
                           str(tmp_path / "y.mp4"), "--target-hr", "75"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    usage = subprocess.run([sys.executable, "-m", "physiolatent_core", "--help"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert usage.returncode == 0 and all(c in usage.stdout for c in ("edit", "remove", "estimate", "demo"))


def test_demo_refuses_existing_outputs_and_cleans_up_on_failure(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.json").write_text("{}")
    expect_error(["demo", "--out", out], capsys, "--overwrite", out)
    assert (out / "report.json").read_text() == "{}"
    fresh = tmp_path / "fresh"
    expect_error(["demo", "--out", fresh, "--size", "10x10", "--quiet"], capsys, "size", tmp_path)
    assert not fresh.exists(), "the folder the failed run created is removed again"
    expect_error(["demo", "--out", fresh, "--size", "big"], capsys, "--size", tmp_path)


def test_edit_with_the_network_method(tmp_path, capsys):
    """--method physiolatent runs the paper's network (tiny random VAE, untrained adapter:
    the output is the VAE's reconstruction of the face) through the same pipeline."""
    from physiolatent_core.model import PhysioLatentAdapter, adapter_config_tiny, build_vae, save_adapter, tiny_vae_config
    from physiolatent_core.model.vae import save_vae
    from physiolatent_core.synth import synth_subject
    from physiolatent_core.video import write_video

    clip = synth_subject(duration_s=4.0, fps=15.0, hr_bpm=70.0, seed=2)
    src = tmp_path / "in.mkv"
    write_video(src, clip.frames, clip.fps)
    vae = build_vae(tiny_vae_config(), seed=0)
    save_vae(vae, tmp_path / "vae.safetensors")
    save_adapter(tmp_path / "adapter.safetensors", PhysioLatentAdapter(adapter_config_tiny(), vae), vae)
    out = tmp_path / "out.mkv"
    code, _, err = run(["edit", src, "-o", out, "--target-hr", 90, "--method", "physiolatent", "--vae",
                        tmp_path / "vae.safetensors", "--adapter", tmp_path / "adapter.safetensors",
                        "--crop-size", 32, "--device", "cpu", "--quiet", "--no-figure"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out.mkv.report.json").read_text())
    assert report["editor"]["method"] == "physiolatent" and report["verify"]["n_frames"] == len(clip.frames)
    assert 25 < report["verify"]["psnr_db"] < 100  # the face was replaced by the decoder's output
    expect_error(["edit", src, "-o", tmp_path / "o2.mkv", "--target-hr", "70:90", "--method", "physiolatent",
                  "--vae", tmp_path / "vae.safetensors", "--adapter", tmp_path / "adapter.safetensors", "--quiet"],
                 capsys, "ramp", tmp_path)
