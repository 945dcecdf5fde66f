"""Several faces: tracking with identities and spans, per-face targets, per-face edits, the CLI.

Synthetic subjects side by side (``synth_faces``, 160x160 tiles, 15 fps), each with its
own known pulse; one enters mid-clip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from physiolatent_core import face, rppg
from physiolatent_core.errors import InputError
from physiolatent_core.faces import FacesEditor, edit_faces, exclusive
from physiolatent_core.pulse import REMOVE, FaceTargets, parse_face_targets, parse_hr_target
from physiolatent_core.rppg import ESTIMATORS
from physiolatent_core.rppg.hr import estimate_hr
from physiolatent_core.synth_faces import synth_faces

FPS = 15.0
OWN_HR = (90.0, 72.0)  # subjects 1 (left) and 2 (right)


@pytest.fixture(scope="module")
def pair():
    """Two subjects side by side for the whole clip."""
    return synth_faces(OWN_HR, duration_s=8.0, fps=FPS, seed=3)


@pytest.fixture(scope="module")
def entering():
    """Subject 2 enters at 3 s of a 10 s clip."""
    return synth_faces(OWN_HR, duration_s=10.0, fps=FPS, enter_s=(None, 3.0), seed=4)


def _hr(frames, mask, method):
    return estimate_hr(ESTIMATORS[method](rppg.extract_rgb(frames, mask), FPS), FPS)


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------- tracking


def test_two_faces_are_numbered_left_to_right_and_followed(pair):
    tracks = face.track_faces(pair.frames, FPS)
    assert [t.face_id for t in tracks] == [1, 2]
    for index, track in enumerate(tracks):
        assert track.span is None and track.found.all()  # present throughout
        truth = np.median(pair.face_box(index), axis=0)
        assert _iou(np.median(track.boxes, axis=0), truth) > 0.5


def test_faces_that_appear_together_are_numbered_left_to_right():
    clip = synth_faces(OWN_HR, duration_s=4.0, fps=FPS, enter_s=(1.0, 1.0), seed=5)
    tracks = face.track_faces(clip.frames, FPS)
    assert [t.face_id for t in tracks] == [1, 2]
    assert np.median(tracks[0].boxes[20:, 2]) < 160 < np.median(tracks[1].boxes[20:, 0])
    assert all(10 <= t.span[0] <= 16 for t in tracks)  # in from frame 15


def test_a_face_entering_mid_clip_gets_an_id_and_a_track_only_where_present(entering):
    tracker = face.MultiFaceTracker(FPS)
    for start in range(0, len(entering.frames), 32):  # chunked as the pipeline streams
        tracker.update(entering.frames[start:start + 32])
    tracks = tracker.finish()
    assert [t.face_id for t in tracks] == [1, 2]
    assert tracks[0].span is None
    first, last = tracks[1].span
    enter = int(np.flatnonzero(entering.present[1])[0])
    # found within one whole-frame search (1 s) of entering; the span starts a keyframe before
    assert enter - tracker.detect_every <= first <= enter + tracker.search_every
    assert last == len(entering.frames) - 1
    assert not tracks[1].found[:first].any() and tracks[1].found[first + tracker.detect_every:].all()
    mask = face.skin_mask(entering.frames, tracks[1])
    # zero before the span; on the face once the mask's colour smoothing (0.2 s) has seen it
    assert mask[:first].max() == 0.0 and mask[first + 2 * tracker.detect_every:].max(axis=(1, 2)).min() > 0.5
    assert _iou(np.median(tracks[1].boxes[first:], axis=0), np.median(entering.face_box(1)[first:], axis=0)) > 0.5


def test_a_face_leaving_ends_its_span_and_a_short_gap_keeps_its_id(pair):
    frames = pair.frames.copy()
    wall = frames[0, :4, 160:].mean(axis=(0, 1))
    frames[40:47, :, 160:] = wall  # face 2 hidden for ~0.5 s: the same face afterwards
    frames[90:, :, 160:] = wall  # ... then it leaves
    tracks = face.track_faces(frames, FPS)
    assert [t.face_id for t in tracks] == [1, 2]
    first, last = tracks[1].span
    assert first == 0 and 88 <= last <= 96
    assert face.skin_mask(frames[last + 1:], tracks[1].slice(last + 1, len(frames))).max() == 0.0


def test_one_face_is_tracked_as_the_single_face_tracker_tracks_it(pair):
    frames = np.ascontiguousarray(pair.frames[:, :, :160])
    single = face.track_face(frames, FPS)
    (multi,) = face.track_faces(frames, FPS)
    assert multi.face_id == 1 and multi.span is None
    np.testing.assert_array_equal(multi.boxes, single.boxes)
    np.testing.assert_array_equal(multi.found, single.found)


def test_overlapping_masks_are_made_exclusive():
    a = np.zeros((1, 4, 6), np.float32)
    b = np.zeros_like(a)
    a[..., :4], b[..., 2:] = 0.6, 0.8
    exclusive([a, b])
    assert not ((a > 0) & (b > 0)).any()
    assert (a[..., :2] == 0.6).all() and (b[..., 2:] == 0.8).all()


# ---------------------------------------------------------------- targets


@pytest.mark.parametrize("spec, want", [
    ("75", FaceTargets(parse_hr_target(75))),
    ("remove", FaceTargets(REMOVE)),
    ("1=75,2=remove", FaceTargets(None, ((1, parse_hr_target(75)), (2, REMOVE)))),
    ("1=0s=70, 8s=110; 2=90", FaceTargets(None, ((1, parse_hr_target("0s=70, 8s=110")), (2, parse_hr_target(90))))),
    (" 2 = 70:120 ", FaceTargets(None, ((2, parse_hr_target("70:120")),))),
    ({1: 60, "2": "remove"}, FaceTargets(None, ((1, parse_hr_target(60)), (2, REMOVE)))),
    ("0=70; 10=110", FaceTargets(parse_hr_target([(0, 70), (10, 110)]))),  # knots from 0 s stay knots
])
def test_face_targets_grammar(spec, want):
    assert parse_face_targets(spec) == want


@pytest.mark.parametrize("spec, words", [
    ("1=75, 1=80", "face 1 is given two targets"),
    ("1=75, 2=fast", "face 2"),
    ("1=300", "30-240"),
    ("1=75, 0=80", "numbered 1, 2"),
    ({"one": 75}, "whole number"),
])
def test_face_targets_errors_say_what_is_wrong(spec, words):
    with pytest.raises(InputError, match=words):
        parse_face_targets(spec)


def test_a_face_not_in_the_clip_is_an_error_naming_the_faces_found():
    with pytest.raises(InputError, match=r"face 3 is not in the clip: the faces found are 1, 2"):
        parse_face_targets("1=75, 3=80").check_faces([1, 2])


def test_one_target_readers_refuse_the_per_face_form():
    with pytest.raises(InputError, match="target per face"):
        parse_hr_target("1=75, 2=remove")


def test_an_editor_of_one_face_refuses_several(pair):
    tracks = face.track_faces(pair.frames, FPS)
    with pytest.raises(InputError, match="edits one face per clip: name one face"):
        FacesEditor(tracks, 75, make=lambda target: None, single=True)
    assert len(FacesEditor(tracks, "2=75", make=lambda target: None, single=True).edited) == 1


# ---------------------------------------------------------------- edits


def test_two_faces_two_targets_each_reads_its_own(pair):
    out, editor = edit_faces(pair.frames, FPS, "1=60, 2=110", robust_to="lossless")
    assert [f.target for f in editor.faces] == [parse_hr_target(60), parse_hr_target(110)]
    for index, (own, target) in enumerate(zip(OWN_HR, (60.0, 110.0))):
        mask = pair.skin_mask(index)
        for method in ("pos", "chrom"):
            assert abs(_hr(pair.frames, mask, method) - own) < 3.0
            assert abs(_hr(out, mask, method) - target) < 3.0, (index + 1, method)


def test_a_face_not_named_is_left_untouched(pair):
    out, editor = edit_faces(pair.frames, FPS, "1=60", robust_to="lossless")
    assert editor.faces[1].editor is None and "left untouched" in editor.faces[1].note
    np.testing.assert_array_equal(out[:, :, 160:], pair.frames[:, :, 160:])
    assert abs(_hr(out, pair.skin_mask(0), "pos") - 60.0) < 3.0


def test_a_face_entering_mid_clip_is_edited_only_where_present(entering):
    out, editor = edit_faces(entering.frames, FPS, 110, robust_to="lossless")
    first, _ = editor.faces[1].frames
    np.testing.assert_array_equal(out[:first, :, 160:], entering.frames[:first, :, 160:])
    assert not np.array_equal(out[first:, :, 160:], entering.frames[first:, :, 160:])
    mask = entering.skin_mask(1)[first:]
    for method in ("pos", "chrom"):
        assert abs(_hr(out[first:], mask, method) - 110.0) < 3.0
        assert abs(_hr(entering.frames[first:], mask, method) - OWN_HR[1]) < 3.0


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def pair_file(pair, tmp_path_factory):
    from physiolatent_core import video

    path = tmp_path_factory.mktemp("faces") / "pair.mkv"
    video.write_video(str(path), pair.frames, FPS)
    return path


def test_cli_edits_one_face_and_removes_the_other(pair_file, tmp_path, capsys):
    from physiolatent_core.cli import main

    out = tmp_path / "out.mkv"
    code = main(["edit", str(pair_file), "-o", str(out), "--target-hr", "1=75,2=remove", "--methods", "pos,chrom"])
    assert code in (0, None)
    report = json.loads((tmp_path / "out.mkv.report.json").read_text())
    one, two = report["faces"]
    assert (one["id"], one["target"], one["edited"]) == (1, "75 bpm", True)
    assert (two["id"], two["target"], two["edited"]) == (2, "remove", True)
    assert one["frames"] == two["frames"] == [0, report["input"]["num_frames"] - 1]
    assert one["box"][2] <= 160 <= two["box"][0]  # left, right
    for method in ("pos", "chrom"):
        assert abs(one["hr_after"][method] - 75.0) < 3.0
        assert abs(one["hr_before"][method] - OWN_HR[0]) < 3.0
        assert abs(two["hr_before"][method] - OWN_HR[1]) < 3.0
        assert two["snr_db_after"][method] < two["snr_db_before"][method] - 3.0  # its own pulse is gone
    assert report["face"]["id"] == 1 and report["verify"]["hr_bpm"] == one["hr_after"]  # top level: face 1
    printed = capsys.readouterr().out
    assert "face 2:" in printed and "remove" in printed


def test_cli_refuses_a_face_that_is_not_there(pair_file, tmp_path, capsys):
    from physiolatent_core.cli import main

    out = tmp_path / "out.mkv"
    code = main(["edit", str(pair_file), "-o", str(out), "--target-hr", "1=75,3=80", "--quiet"])
    assert code == 2
    assert "the faces found are 1, 2" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------- nodes


def _node(name: str, **kwargs):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent / "comfyui"))
    from workflow_tools import load_pack

    cls = load_pack().NODE_CLASS_MAPPINGS[name]
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out["result"] if isinstance(out, dict) else out


def test_face_select_gives_one_face_and_pulse_edit_edits_only_it(entering):
    torch = pytest.importorskip("torch")
    images = torch.from_numpy(entering.frames)
    mask, preview, info = _node("PhysioLatentFaceSelect", images=images, fps=FPS, face="2")
    faces = json.loads(info)
    assert faces["selected"] == 2 and [f["id"] for f in faces["faces"]] == [1, 2]
    first = faces["faces"][1]["frames"][0]
    m = mask.numpy()
    assert m[:, :, :150].max() == 0.0 and m[:first].max() == 0.0 and m[first + 8:].max() > 0.5
    assert tuple(preview.shape) == entering.frames.shape
    edited, _ = _node("PhysioLatentPulseEdit", images=images, fps=FPS, target_hr_bpm=110.0, robust_to="lossless",
                      seed=0, mask=mask)
    out = edited.numpy()
    np.testing.assert_array_equal(out[:, :, :150], entering.frames[:, :, :150])  # face 1 untouched
    np.testing.assert_array_equal(out[:first], entering.frames[:first])  # nothing before face 2 entered
    assert abs(_hr(out[first:], entering.skin_mask(1)[first:], "pos") - 110.0) < 3.0
    with pytest.raises(InputError, match="the faces found are 1, 2"):
        _node("PhysioLatentFaceSelect", images=images, fps=FPS, face="3")


def test_pulse_edit_without_a_mask_edits_every_face(pair):
    torch = pytest.importorskip("torch")
    edited, info = _node("PhysioLatentPulseEdit", images=torch.from_numpy(pair.frames), fps=FPS, target_hr_bpm=110.0,
                         robust_to="lossless", seed=0)
    assert [f["id"] for f in json.loads(info)["faces"]] == [1, 2]
    for index in range(2):
        assert abs(_hr(edited.numpy(), pair.skin_mask(index), "pos") - 110.0) < 3.0


def test_the_first_edited_face_gives_the_top_level_readings(pair_file, tmp_path):
    from physiolatent_core.pipeline import JobRequest, run_job

    report = run_job(JobRequest(input=pair_file, mode="edit", output=tmp_path / "out.mkv", target={2: 60},
                                methods=("pos",), quiet=True, figure=False))
    assert [f["edited"] for f in report["faces"]] == [False, True]
    assert "left untouched" in report["faces"][0]["note"] and "hr_after" in report["faces"][0]
    assert abs(report["faces"][0]["hr_after"]["pos"] - OWN_HR[0]) < 3.0  # face 1 keeps its own pulse
    assert report["face"]["id"] == 2 and abs(report["verify"]["hr_bpm"]["pos"] - 60.0) < 3.0
    assert report["settings"]["face_targets"] == "face 2: 60 bpm"


def test_time_knots_stay_clip_times_for_a_face_that_enters_late():
    from physiolatent_core.faces import from_span_start
    from physiolatent_core.pulse import hr_curve

    target = parse_hr_target("0s=70, 8s=110, 12s=90")
    shifted = from_span_start(target, 45, FPS)  # the face's editor counts from frame 45 (3 s)
    np.testing.assert_allclose(hr_curve(shifted, 150, FPS), hr_curve(target, 195, FPS)[45:], atol=1e-9)
    assert from_span_start(parse_hr_target("70:120"), 45, FPS) == parse_hr_target("70:120")  # ramps: over the span


def test_cli_edits_a_face_that_enters_mid_clip_over_its_span(entering, tmp_path):
    from physiolatent_core import video
    from physiolatent_core.pipeline import JobRequest, run_job

    src = tmp_path / "enter.mkv"
    video.write_video(str(src), entering.frames, FPS)
    report = run_job(JobRequest(input=src, mode="edit", output=tmp_path / "out.mkv", target=110,
                                methods=("pos", "chrom"), quiet=True, figure=False))
    one, two = report["faces"]
    enter = int(np.flatnonzero(entering.present[1])[0])
    assert one["frames"][0] == 0 and enter - 8 <= two["frames"][0] <= enter + 16
    saved, _ = video.read_video(str(tmp_path / "out.mkv"))
    first = two["frames"][0]
    original, _ = video.read_video(str(src))
    np.testing.assert_array_equal(saved[:first, :, 160:], original[:first, :, 160:])  # nothing before it entered
    for method in ("pos", "chrom"):  # each face read over its own span, before and after
        assert abs(two["hr_before"][method] - OWN_HR[1]) < 3.0 and abs(two["hr_after"][method] - 110.0) < 3.0
        assert abs(one["hr_after"][method] - 110.0) < 3.0


def test_a_face_in_the_shot_too_briefly_is_left_untouched_or_refused_when_named(pair):
    frames = pair.frames.copy()
    frames[40:, :, 160:] = frames[0, :4, 160:].mean(axis=(0, 1))  # face 2 leaves after 2.7 s
    tracks = face.track_faces(frames, FPS)
    editor = FacesEditor(tracks, 75, make=lambda target: None)
    assert editor.faces[0].editor is not None and editor.faces[1].editor is None
    assert "under the 4 s a pulse needs" in editor.faces[1].note
    with pytest.raises(InputError, match="face 2 is in the clip for 2.[0-9] s only"):
        FacesEditor(tracks, "1=75, 2=80", make=lambda target: None)
