"""Tests for physiolatent_core.face: detection, tracking, skin mask, crop/uncrop, composite.

Synthetic clips are windows of ``skimage.data.astronaut()`` (a real face photo shipped
with scikit-image; in the 512x512 image the Haar face box is about x 177-272, y 66-161)
slid across the image so the face moves by a known amount per frame.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from physiolatent_core import face
from physiolatent_core.errors import FaceNotFoundError, InputError
from physiolatent_core.face.detect import _iou as box_iou

FPS = 30.0
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _astronaut() -> np.ndarray:
    return data.astronaut().astype(np.float32) / 255.0


def _moving_clip(n: int = 40, dx: int = 1) -> np.ndarray:
    """[n,240,320,3]: a window sliding left by dx px/frame, so the face moves right by dx."""
    img = _astronaut()
    return np.stack([img[0:240, 60 - dx * t : 380 - dx * t] for t in range(n)])


@pytest.fixture(scope="module")
def clip():
    frames = _moving_clip()
    track = face.track_face(frames, FPS)
    mask = face.skin_mask(frames, track)
    return frames, track, mask


def _iou(a, b):
    return float(box_iou(np.asarray(a, float)[None], np.asarray(b, float))[0])


# ----------------------------------------------------------------------------- detection


def test_detect_faces_finds_the_astronaut():
    boxes = face.detect_faces(_astronaut())
    assert boxes.shape[1] == 4 and len(boxes) >= 1
    assert _iou(boxes[0], (177, 66, 272, 161)) > 0.6, boxes[0]


def test_detect_faces_on_noise_finds_nothing_and_rejects_bad_shapes():
    noise = np.random.default_rng(0).random((240, 320, 3), dtype=np.float32)
    assert face.detect_faces(noise).shape == (0, 4)
    with pytest.raises(InputError, match=r"\[H,W,3\]"):
        face.detect_faces(noise[..., 0])


def test_largest_face_is_tracked_when_there_are_two():
    head = _astronaut()[30:200, 140:310]  # 170x170 around the face
    canvas = np.full((300, 560, 3), 0.5, np.float32)
    canvas[40:210, 20:190] = head  # smaller face on the left
    canvas[20:275, 280:535] = cv2.resize(head, (255, 255))  # 1.5x larger face on the right
    assert len(face.detect_faces(canvas)) == 2
    track = face.track_face(np.stack([canvas] * 10), FPS)
    cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert np.all(cx > 280), "the larger (right) face must be tracked"


# ----------------------------------------------------------------------------- tracking


def test_track_follows_the_face_smoothly(clip):
    frames, track, _ = clip
    assert track.boxes.shape == (len(frames), 4) and track.found.all()
    cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    # The face moves right by exactly 1 px per frame.
    drift = cx - cx[0] - np.arange(len(frames))
    assert np.abs(drift).max() < 3.0, drift
    # Smooth: no frame-to-frame jerk (second difference) beyond a fraction of a pixel.
    assert np.abs(np.diff(track.boxes, 2, axis=0)).max() < 0.3
    width = track.boxes[:, 2] - track.boxes[:, 0]
    assert 85 < width.mean() < 115 and width.std() < 3


def test_fast_motion_is_followed_by_searching_between_keyframes():
    img = _astronaut()
    frames = np.stack([img[0:240, 160 - 5 * t : 480 - 5 * t] for t in range(31)])  # 5 px/frame
    tracker = face.FaceTracker(FPS)
    tracker.update(frames)
    track = tracker.finish()
    # Keyframes 8 frames apart overlap too little (IoU < 0.5): frames between get searched.
    assert tracker.detect_calls > 10
    cx = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
    assert np.abs(cx - cx[0] - 5 * np.arange(31)).max() < 1.0


def test_uint8_frames_give_the_same_mask(clip):
    frames, _, mask = clip
    frames_u8 = np.round(frames * 255).astype(np.uint8)
    mask_u8, _ = face.face_mask(frames_u8, FPS)
    assert np.abs(mask_u8 - mask).mean() < 0.01


def test_tracker_gives_the_same_boxes_for_uint8_and_float_frames():
    # The CLI tracks 8-bit frames as decoded (only the searched frames get converted);
    # the track must be the one the float frames give, to the bit.
    frames_u8 = np.round(_moving_clip(40, dx=1) * 255).astype(np.uint8)
    frames = frames_u8.astype(np.float32) * np.float32(1 / 255)
    tracks = []
    for clip in (frames_u8, frames):
        tracker = face.FaceTracker(FPS)
        for start in range(0, len(clip), 9):
            tracker.update(clip[start : start + 9])
        tracks.append(tracker.finish())
    np.testing.assert_array_equal(tracks[0].boxes, tracks[1].boxes)
    np.testing.assert_array_equal(tracks[0].found, tracks[1].found)


def test_tracker_gives_the_same_boxes_for_lazy_chunks(tmp_path):
    # The CLI's tracking pass gets chunks whose frames are converted only where searched.
    from physiolatent_core import video

    path = video.write_video(tmp_path / "moving.mp4", _moving_clip(40, dx=1), FPS, crf=18)
    tracks = []
    for lazy in (False, True):
        tracker = face.FaceTracker(FPS)
        for chunk in video.iter_frames(path, chunk_frames=9, raw=True, lazy=lazy):
            assert isinstance(chunk, video.LazyFrames) == lazy
            tracker.update(chunk)
        tracks.append(tracker.finish())
    np.testing.assert_array_equal(tracks[0].boxes, tracks[1].boxes)
    np.testing.assert_array_equal(tracks[0].found, tracks[1].found)


def test_detection_runs_on_keyframes_only(clip):
    frames, _, _ = clip
    tracker = face.FaceTracker(FPS)
    tracker.update(frames)
    # ~0.25 s between detections at 30 fps: 8 frames -> 5 keyframes in 40 frames.
    assert tracker.detect_every == 8
    assert tracker.detect_calls <= 8, tracker.detect_calls


def test_chunked_tracking_and_masks_equal_whole_clip(clip):
    frames, track, mask = clip
    tracker = face.FaceTracker(FPS)
    provisional = []
    for start in range(0, len(frames), 7):  # chunk size not a multiple of detect_every
        provisional.append(tracker.update(frames[start : start + 7]))
    chunked = tracker.finish()
    np.testing.assert_allclose(chunked.boxes, track.boxes, atol=1e-9)
    assert np.concatenate(provisional).shape == (len(frames), 4)
    masker = face.SkinMasker(chunked)
    chunked_mask = np.concatenate([masker(frames[s : s + 11]) for s in range(0, len(frames), 11)])
    np.testing.assert_allclose(chunked_mask, mask, atol=1e-5)


def test_replayed_masks_equal_rendered_masks(clip):
    frames, track, mask = clip
    masker = face.SkinMasker(track, record_bytes=1 << 20)
    rendered = np.concatenate([masker(frames[s : s + 9]) for s in range(0, len(frames), 9)])
    assert masker.recording
    again = masker.replay()
    replayed = np.concatenate([again(frames[s : s + 13]) for s in range(0, len(frames), 13)])
    np.testing.assert_array_equal(replayed, rendered)
    with pytest.raises(InputError, match="recorded"):
        again(frames[:1])
    # Over its budget the masker keeps nothing and says so.
    small = face.SkinMasker(track, record_bytes=56 * 48 * 4 * 5)
    small(frames[:6])
    assert not small.recording
    with pytest.raises(RuntimeError, match="record_bytes"):
        small.replay()


def test_lost_frames_are_interpolated_and_flagged():
    frames = np.repeat(_moving_clip(1), 64, axis=0)
    frames[20:44] = 0.5  # face gone for 0.8 s
    track = face.track_face(frames, FPS)
    assert np.isfinite(track.boxes).all()
    assert track.found[:16].all() and track.found[-12:].all()
    assert not track.found[28:36].any()
    # The box is held/interpolated near the face, not thrown away.
    assert np.all(track.boxes[28:36, 2] - track.boxes[28:36, 0] > 60)


def test_no_face_raises_with_advice():
    noise = np.random.default_rng(1).random((12, 120, 160, 3), dtype=np.float32)
    with pytest.raises(FaceNotFoundError, match=r"no face found in 12 frames.*80 px.*mask"):
        face.track_face(noise, FPS)
    with pytest.raises(FaceNotFoundError):
        face.face_mask(noise, FPS)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match=r"\[T,H,W,3\]"):
        face.track_face(np.zeros((120, 160, 3), np.float32), FPS)
    with pytest.raises(InputError, match="fps"):
        face.track_face(np.zeros((2, 120, 160, 3), np.float32), 0)
    tracker = face.FaceTracker(FPS)
    tracker.update(np.zeros((2, 120, 160, 3), np.float32))
    with pytest.raises(InputError, match="same size"):
        tracker.update(np.zeros((2, 100, 160, 3), np.float32))


# ----------------------------------------------------------------------------- skin mask


def _at(mask, box, u, v):
    w, h = box[2] - box[0], box[3] - box[1]
    return float(mask[int(box[1] + v * h), int(box[0] + u * w)])


def test_skin_mask_covers_cheeks_and_forehead_not_eyes(clip):
    frames, track, mask = clip
    assert mask.shape == frames.shape[:3] and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    for t in (0, len(frames) // 2, len(frames) - 1):
        box, m = track.boxes[t], mask[t]
        cheeks = [_at(m, box, 0.25, 0.6), _at(m, box, 0.75, 0.6)]
        forehead = _at(m, box, 0.4, 0.15)
        eyes = [_at(m, box, 0.3, 0.37), _at(m, box, 0.7, 0.37)]
        mouth = _at(m, box, 0.5, 0.83)
        assert min(cheeks) > 0.5 and forehead > 0.5, (cheeks, forehead)
        assert max(eyes) < 0.2 and mouth < 0.2, (eyes, mouth)
        # Zero outside the region the mask may cover.
        x0, y0, x1, y1 = face.mask_region(box)
        outside = np.ones_like(m, bool)
        outside[max(0, int(np.floor(y0))) : int(np.ceil(y1)), max(0, int(np.floor(x0))) : int(np.ceil(x1))] = False
        assert m[outside].max() == 0.0


def test_skin_mask_excludes_hair_and_background(clip):
    frames, track, mask = clip
    box = track.boxes[0]
    colour_free = face.skin_mask(frames[:1], track.slice(0, 1), use_colour=False)[0]
    # Above the forehead is the astronaut's (light brown) hair: the template alone keeps
    # it, the skin-colour model mostly removes it.
    hair = [(u, v) for u in (0.4, 0.5, 0.6) for v in (-0.15, -0.1)]
    assert min(_at(colour_free, box, u, v) for u, v in hair) > 0.8
    assert np.mean([_at(mask[0], box, u, v) for u, v in hair]) < 0.4
    # Background beside the face is outside the template: zero.
    assert _at(mask[0], box, -0.05, 0.5) == 0.0 and _at(mask[0], box, 1.05, 0.5) == 0.0


def test_skin_mask_is_temporally_stable_on_a_still_clip():
    frames = np.repeat(_moving_clip(1), 90, axis=0)  # 3 s, still
    rng = np.random.default_rng(2)
    frames = np.clip(frames + rng.normal(0, 0.01, frames.shape).astype(np.float32), 0, 1)  # sensor noise
    mask, track = face.face_mask(frames, FPS)
    centre = (track.boxes[:, :2] + track.boxes[:, 2:]) / 2
    assert np.ptp(centre, axis=0).max() < 0.5  # registered centres: sub-pixel still
    assert np.ptp(track.boxes, axis=0).max() < 2.0  # sizes: detector noise, smoothed
    area = mask.sum(axis=(1, 2))
    assert area.std() / area.mean() < 0.01
    assert np.abs(np.diff(mask, axis=0)).max() < 0.05


def test_skin_mask_rejects_a_track_of_another_clip(clip):
    frames, track, _ = clip
    with pytest.raises(InputError, match="frames"):
        face.skin_mask(frames[:5], track)
    with pytest.raises(InputError, match="track"):
        face.skin_mask(frames[:, :200], track)


# ----------------------------------------------------------------------------- crop / uncrop


def test_crop_uncrop_round_trip(clip):
    frames, track, _ = clip
    crops, info = face.crop_faces(frames, track, size=256, margin=0.25)
    assert crops.shape == (len(frames), 256, 256, 3) and crops.dtype == np.float32
    assert info.frame_size == frames.shape[1:3] and info.boxes.shape == (len(frames), 4)
    side = info.boxes[:, 2] - info.boxes[:, 0]
    np.testing.assert_allclose(side, (track.boxes[:, 2] - track.boxes[:, 0]) * 1.5, rtol=0.05)
    back = face.uncrop_faces(crops, info, frames)
    assert back.shape == frames.shape
    inside = np.zeros(frames.shape[:3], bool)
    for t, (x0, y0, x1, y1) in enumerate(info.boxes):
        inside[t, max(0, int(y0) + 2) : int(y1) - 2, max(0, int(x0) + 2) : int(x1) - 2] = True
    err = np.abs(back - frames)
    assert err[inside].mean() < 0.01, err[inside].mean()
    far = np.ones(frames.shape[:3], bool)
    for t, (x0, y0, x1, y1) in enumerate(info.boxes):
        far[t, max(0, int(y0) - 1) : int(y1) + 2, max(0, int(x0) - 1) : int(x1) + 2] = False
    assert err[far].max() == 0.0  # untouched outside the crop


def test_crop_centres_the_face_and_fixed_crop_is_still(clip):
    frames, track, _ = clip
    crops, info = face.crop_faces(frames, track, size=128, margin=0.5)
    # The face is moving in the frame but stays put in the crops: first and last crops agree.
    assert np.abs(crops[0] - crops[-1]).mean() < 0.04
    crops_f, info_f = face.crop_faces(frames, track, size=128, margin=0.25, fixed=True)
    assert np.all(info_f.boxes == info_f.boxes[0])
    b = track.boxes
    assert info_f.boxes[0, 0] <= b[:, 0].min() and info_f.boxes[0, 2] >= b[:, 2].max()
    assert info_f.boxes[0, 1] <= b[:, 1].min() and info_f.boxes[0, 3] >= b[:, 3].max()
    # In a fixed crop the face moves with the frame.
    assert np.abs(crops_f[0] - crops_f[-1]).mean() > 0.04


def test_uncrop_validates(clip):
    frames, track, _ = clip
    crops, info = face.crop_faces(frames[:4], track.slice(0, 4), size=64)
    with pytest.raises(InputError, match="match"):
        face.uncrop_faces(crops[:3], info, frames[:4])
    with pytest.raises(InputError, match="64"):
        face.uncrop_faces(crops[:, :32], info, frames[:4])
    with pytest.raises(InputError, match="cropped"):
        face.uncrop_faces(crops, info, frames[:4, :200])


def test_crops_cut_chunk_by_chunk_equal_crop_faces(clip):
    frames, track, _ = clip
    crops, info = face.crop_faces(frames, track, size=64, margin=0.3, fixed=True)
    squares = face.crop_squares(track, 0.3, fixed=True)
    np.testing.assert_array_equal(squares, info.boxes)
    chunks = [face.cut_crops(frames[s : s + 9], squares[s : s + 9], 64) for s in range(0, len(frames), 9)]
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), crops)
    back = face.uncrop_faces(chunks[1][0], chunks[1][1], frames[9:18])
    np.testing.assert_array_equal(back, face.uncrop_faces(crops, info, frames)[9:18])
    with pytest.raises(InputError, match="squares"):
        face.cut_crops(frames[:4], squares[:3], 64)
    with pytest.raises(InputError, match="margin"):
        face.crop_squares(track, 5.0)


def test_face_crops_tracks_masks_and_crops_like_the_parts(clip):
    frames, track, mask = clip
    t, h, w = frames.shape[:3]
    fc = face.face_crops(frames, FPS, 64)  # tracks and masks the clip itself
    assert fc.crops.shape == (t, 64, 64, 3) and fc.crops.dtype == np.float32
    assert fc.mask.shape == (t, h, w) and fc.info.boxes.shape == (t, 4)
    assert fc.mask_crops.shape == (t, 64, 64) and fc.mask_crops.dtype == np.float32
    assert np.all(fc.info.boxes == fc.info.boxes[0])  # fixed by default: one still crop
    np.testing.assert_array_equal(fc.track.boxes, track.boxes)
    np.testing.assert_array_equal(fc.mask, mask)
    crops, info = face.crop_faces(frames, track, size=64, fixed=True)
    np.testing.assert_array_equal(fc.crops, crops)
    np.testing.assert_array_equal(fc.info.boxes, info.boxes)
    assert (fc.info.frame_size, fc.info.size) == (info.frame_size, info.size)
    # The mask is cropped along the same squares as the frames.
    mask_crops, _ = face.crop_faces(np.repeat(mask[..., None], 3, axis=-1), track, size=64, fixed=True)
    np.testing.assert_array_equal(fc.mask_crops, mask_crops[..., 0])
    assert 0.05 < fc.mask_crops.mean() < 0.9


def test_face_crops_uses_the_track_and_mask_it_is_given(clip):
    frames, track, mask = clip
    given = np.zeros_like(mask)
    given[:, 40:120, 100:200] = 1.0
    fc = face.face_crops(frames, FPS, 48, track=track, mask=given, margin=0.5, fixed=False)
    assert fc.track is track and fc.mask is given
    crops, info = face.crop_faces(frames, track, size=48, margin=0.5, fixed=False)
    np.testing.assert_array_equal(fc.crops, crops)
    np.testing.assert_array_equal(fc.info.boxes, info.boxes)
    mask_crops, _ = face.crop_faces(np.repeat(given[..., None], 3, axis=-1), track, size=48, margin=0.5)
    np.testing.assert_array_equal(fc.mask_crops, mask_crops[..., 0])
    with pytest.raises(InputError, match="mask"):
        _ = face.face_crops(frames, FPS, 48, track=track, mask=mask[:, :100]).mask_crops


# ----------------------------------------------------------------------------- composite


def test_composite_blends_by_the_mask():
    rng = np.random.default_rng(3)
    orig = rng.random((3, 20, 30, 3), dtype=np.float32)
    edit = rng.random((3, 20, 30, 3), dtype=np.float32)
    mask = np.zeros((3, 20, 30), np.float32)
    mask[:, 5:15, 10:20] = 1.0
    mask[1] *= 0.25
    out = face.composite(orig, edit, mask)
    np.testing.assert_allclose(out, mask[..., None] * edit + (1 - mask[..., None]) * orig, atol=1e-6)
    assert np.array_equal(out[0, 0, 0], orig[0, 0, 0]) and np.allclose(out[0, 10, 15], edit[0, 10, 15])
    # One [H,W] mask for every frame, and [T,H,W,1] masks, are accepted.
    np.testing.assert_allclose(face.composite(orig, edit, mask[0]), face.composite(orig, edit, mask[[0, 0, 0]]))
    np.testing.assert_allclose(face.composite(orig, edit, mask[..., None]), out)
    # Feathering softens the edge but keeps far-away pixels.
    soft = face.composite(orig, edit, mask, feather_px=2)
    assert np.array_equal(soft[:, 0, 0], orig[:, 0, 0])
    edge = (slice(None), 10, 10)  # on the mask boundary
    assert not np.allclose(soft[edge], out[edge])


def test_composite_rejects_mismatched_inputs():
    a = np.zeros((3, 20, 30, 3), np.float32)
    with pytest.raises(InputError, match="frame size mismatch"):
        face.composite(a, np.zeros((3, 20, 31, 3), np.float32), np.zeros((3, 20, 30), np.float32))
    with pytest.raises(InputError, match="mask length mismatch"):
        face.composite(a, a, np.zeros((2, 20, 30), np.float32))
    with pytest.raises(InputError, match="mask is"):
        face.composite(a, a, np.zeros((3, 10, 30), np.float32))
    with pytest.raises(InputError, match="frames"):
        face.composite(a, a[:2], np.zeros((3, 20, 30), np.float32))
    with pytest.raises(InputError, match="NaN"):
        face.composite(a, a, np.full((3, 20, 30), np.nan, np.float32))
    with pytest.raises(InputError, match="feather_px"):
        face.composite(a, a, np.zeros((3, 20, 30), np.float32), feather_px=-1)


# ----------------------------------------------------------------------------- real videos


def _real_videos():
    return sorted(SHARED_DATA.glob("*.mp4")) if SHARED_DATA.is_dir() else []


@pytest.mark.shared_data
@pytest.mark.skipif(not _real_videos(), reason="needs ../shared/data (real face videos)")
@pytest.mark.parametrize("path", _real_videos(), ids=lambda p: p.name)
def test_real_videos_have_a_face_on_most_frames(path):
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 30)
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 150:
                break
    frames = np.stack(frames)  # uint8 is accepted as well
    tracker = face.FaceTracker(fps)
    tracker.update(frames)
    track = tracker.finish()
    keyframes = range(0, len(frames), tracker.detect_every)
    detected = np.mean([t in tracker.detections for t in keyframes])
    assert track.found.mean() >= 0.9 and detected >= 0.9, (track.found.mean(), detected)
    mask = face.skin_mask(frames[:10], track.slice(0, 10))
    assert (mask > 0.5).mean() > 0.02  # a real skin area, not an empty mask
