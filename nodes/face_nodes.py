"""Face stage: mask (the largest face, or one chosen by Face Select), crop/uncrop around
the tracked face, and composite an edit back.

PHYSIO_CROP (Face Crop -> Face Uncrop) is a dict {"info": face.CropInfo, "track":
face.FaceTrack, "size": (H, W), "num_frames": T}: it describes how crops map back into
the full frames, so Uncrop can refuse a crop that came from another clip.
"""

from __future__ import annotations

import numpy as np

from physiolatent_core.errors import InputError

from ._common import (check_fps, check_same_shape, image_to_numpy, mask_to_numpy, numpy_to_image,
                      numpy_to_mask)

CATEGORY = "PhysioLatent/Face"

_FPS = ("FLOAT", {"default": 30.0, "min": 0.01, "max": 1000.0, "step": 0.01,
                  "tooltip": "Frame rate of the clip (from Get Video Components); used to smooth the face track over time."})


def mask_preview(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Frames with the background dimmed and the mask tinted green: [T,H,W,3]."""
    m = mask[..., None]
    tint = np.array([0.2, 1.0, 0.2], dtype=np.float32)
    return (frames * (0.35 + 0.65 * m) * (1 - 0.3 * m) + 0.3 * m * tint).astype(np.float32)


class FaceMask:
    DESCRIPTION = ("Finds and tracks the largest face and returns a soft skin mask per frame "
                   "(no eyes, brows, mouth, hair or background) plus a preview.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MASK", "IMAGE")
    RETURN_NAMES = ("mask", "preview")
    OUTPUT_TOOLTIPS = ("Soft skin mask [T,H,W] in 0..1.", "Frames with the mask tinted green.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The video frames (from Get Video Components)."}),
            "fps": _FPS,
        }}

    def run(self, images, fps):
        from physiolatent_core.face import face_mask

        frames = image_to_numpy(images)
        mask, _track = face_mask(frames, check_fps(fps))
        return numpy_to_mask(mask), numpy_to_image(mask_preview(frames, mask))


class FaceSelect:
    DESCRIPTION = ("Finds every face in the clip (numbered 1, 2, ... by first appearance, left to right; a face "
                   "keeps its number through short occlusions) and returns the skin mask of one: connect it to "
                   "Pulse Edit / Pulse Remove to edit only that face. (Those nodes edit every face, each with "
                   "its own pulse, when no mask is connected.)")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("MASK", "IMAGE", "STRING")
    RETURN_NAMES = ("mask", "preview", "faces")
    OUTPUT_TOOLTIPS = ("Soft skin mask [T,H,W] of the chosen face: zero where other faces are, and in frames "
                       "where it is not in the shot.",
                       "Frames with the chosen face's mask tinted green.",
                       "JSON: every face found (id, median box x0,y0,x1,y1, first and last frame).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The video frames (from Get Video Components)."}),
            "fps": _FPS,
            "face": ("STRING", {"default": "largest",
                                "tooltip": "Which face: 'largest', or its number (1 = first to appear, then left "
                                           "to right). The faces output lists them."}),
        }}

    def run(self, images, fps, face):
        import json

        from physiolatent_core.face import largest_face, track_faces
        from physiolatent_core.faces import FacesMasker

        frames = image_to_numpy(images)
        tracks = track_faces(frames, check_fps(fps))
        chosen = _choose_face(tracks, face)
        mask = FacesMasker(tracks)(frames)[[t.face_id for t in tracks].index(chosen.face_id)]
        largest = largest_face(tracks).face_id
        faces = [{"id": t.face_id, "box": [round(float(v), 1) for v in np.median(t.boxes, axis=0)],
                  "frames": list(t.span or (0, len(t) - 1)), "largest": t.face_id == largest} for t in tracks]
        info = json.dumps({"selected": chosen.face_id, "faces": faces}, indent=1)
        return numpy_to_mask(mask), numpy_to_image(mask_preview(frames, mask)), info


def _choose_face(tracks, face: str):
    """The track that ``face`` ('largest' or an id) names; InputError naming the faces found."""
    from physiolatent_core.face import largest_face

    text = str(face).strip().lower()
    if text in ("", "largest"):
        return largest_face(tracks)
    ids = [t.face_id for t in tracks]
    if not text.isdigit() or int(text) not in ids:
        raise InputError(f"face {face!r} is not in the clip: the faces found are {', '.join(map(str, ids))} "
                         "(numbered by first appearance, left to right). Write 'largest' or one of those numbers.")
    return tracks[ids.index(int(text))]


class FaceCrop:
    DESCRIPTION = ("Tracks the face and cuts a square, stabilised crop per frame for the "
                   "PhysioLatent network; also returns the full-frame skin mask for compositing.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE", "PHYSIO_CROP", "MASK")
    RETURN_NAMES = ("crops", "crop", "mask")
    OUTPUT_TOOLTIPS = ("Face crops [T,S,S,3].",
                       "Where each crop came from: connect to Face Uncrop.",
                       "Full-frame soft skin mask [T,H,W] for Face Composite.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The video frames."}),
            "fps": _FPS,
            "size": ("INT", {"default": 256, "min": 64, "max": 1024, "step": 8,
                             "tooltip": "Crop side in pixels (a multiple of 8 for the VAE)."}),
            "margin": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.05,
                                 "tooltip": "Extra border around the face box, as a fraction of its size."}),
            "fixed": ("BOOLEAN", {"default": True,
                                  "tooltip": "One still crop for the whole clip (what the network expects); "
                                             "off = the crop follows the face."}),
        }}

    def run(self, images, fps, size, margin, fixed):
        from physiolatent_core.face import face_crops

        frames = image_to_numpy(images)
        faces = face_crops(frames, check_fps(fps), int(size), margin=float(margin), fixed=bool(fixed))
        crop = {"info": faces.info, "track": faces.track, "size": frames.shape[1:3], "num_frames": frames.shape[0]}
        return numpy_to_image(faces.crops), crop, numpy_to_mask(faces.mask)


class FaceUncrop:
    DESCRIPTION = "Pastes (edited) face crops back into the full frames they were cut from."
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Full frames with the crops pasted back.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "crops": ("IMAGE", {"tooltip": "Face crops, e.g. from FiLM Decode."}),
            "crop": ("PHYSIO_CROP", {"tooltip": "The crop description from Face Crop."}),
            "original": ("IMAGE", {"tooltip": "The full frames that Face Crop was given."}),
        }}

    def run(self, crops, crop, original):
        from physiolatent_core.face import uncrop_faces

        frames = image_to_numpy(original, "original")
        crop_frames = image_to_numpy(crops, "crops")
        if tuple(frames.shape[1:3]) != tuple(crop["size"]) or frames.shape[0] != crop["num_frames"]:
            raise InputError(
                f"'original' is {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]} but the crop "
                f"was made from {crop['num_frames']} frames of {crop['size'][1]}x{crop['size'][0]}: "
                "connect the same frames that went into Face Crop."
            )
        if crop_frames.shape[0] != frames.shape[0]:
            raise InputError(
                f"'crops' has {crop_frames.shape[0]} frames but the video has {frames.shape[0]}: "
                "decode the whole clip before uncropping."
            )
        return (numpy_to_image(uncrop_faces(crop_frames, crop["info"], frames)),)


class FaceComposite:
    DESCRIPTION = ("Keeps the edited pixels only inside the mask: mask*edited + (1-mask)*original, "
                   "with a feathered edge so no seam shows.")
    CATEGORY = CATEGORY
    FUNCTION = "run"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Composited frames.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "original": ("IMAGE", {"tooltip": "The unedited frames."}),
            "edited": ("IMAGE", {"tooltip": "The edited frames (same length and size)."}),
            "mask": ("MASK", {"tooltip": "Where to take the edited pixels (e.g. from Face Mask or Face Crop)."}),
            "feather_px": ("INT", {"default": 8, "min": 0, "max": 128, "step": 1,
                                   "tooltip": "Blur radius of the mask edge in pixels (0 = hard edge)."}),
        }}

    def run(self, original, edited, mask, feather_px):
        from physiolatent_core.face import composite

        a = image_to_numpy(original, "original")
        b = image_to_numpy(edited, "edited")
        check_same_shape(a, b, "original", "edited")
        m = mask_to_numpy(mask, a)
        return (numpy_to_image(composite(a, b, m, feather_px=int(feather_px))),)


NODE_CLASS_MAPPINGS = {
    "PhysioLatentFaceMask": FaceMask,
    "PhysioLatentFaceSelect": FaceSelect,
    "PhysioLatentFaceCrop": FaceCrop,
    "PhysioLatentFaceUncrop": FaceUncrop,
    "PhysioLatentFaceComposite": FaceComposite,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PhysioLatentFaceMask": "Face Mask (PhysioLatent)",
    "PhysioLatentFaceSelect": "Face Select (PhysioLatent)",
    "PhysioLatentFaceCrop": "Face Crop (PhysioLatent)",
    "PhysioLatentFaceUncrop": "Face Uncrop (PhysioLatent)",
    "PhysioLatentFaceComposite": "Face Composite (PhysioLatent)",
}
