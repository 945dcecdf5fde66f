"""Find, track and mask the face; crop it out and paste it back; composite edits.

Everything runs offline on the CPU with OpenCV's Haar cascades (shipped inside
opencv-python-headless), so no weights are downloaded.

Modules
-------
* ``detect``: Haar cascades, ``detect_faces``.
* ``skin``: the per-clip skin colour model (``SkinModel``), fitted by the tracker and
  applied by the mask.
* ``track``: ``FaceTracker``, ``track_face`` and the ``FaceTrack`` they make (the
  tracking policy is in its docstring).
* ``multi``: every face of a clip: ``MultiFaceTracker``, ``track_faces`` (one
  ``FaceTrack`` per face, numbered by first appearance, each with its span of presence).
* ``mask``: the soft skin mask: ``mask_region``, ``SkinMasker``, ``skin_mask``,
  ``face_mask`` (track + mask).
* ``crop``: ``crop_faces`` / ``uncrop_faces`` (``crop_squares`` and ``cut_crops`` for a
  clip cropped chunk by chunk), ``face_crops`` (track, mask and crop in one call) and
  ``composite``.

Long videos
-----------
Two passes, both chunked: pass 1 feeds chunks to ``FaceTracker.update`` (detections and
colour statistics only, nothing is kept but boxes), ``FaceTracker.finish`` returns the
smoothed ``FaceTrack`` of the whole clip (a few numbers per frame); pass 2 renders the
mask chunk by chunk with ``SkinMasker``. The result equals the whole-clip functions
exactly, whatever the chunk sizes. A later pass over the same clip can replay the masks
(``SkinMasker(track, record_bytes=...)``, then ``.replay()``) instead of rendering them.

Frames are float32 [T,H,W,3] RGB in 0..1; masks float32 [T,H,W] in 0..1; boxes are
(x0, y0, x1, y1) in pixel coordinates where pixel k covers [k, k+1).
"""

from .crop import CropInfo, FaceCrops, composite, crop_faces, crop_squares, cut_crops, face_crops, uncrop_faces
from .detect import detect_faces
from .mask import SkinMasker, face_mask, mask_region, skin_mask
from .skin import SkinModel
from .multi import MultiFaceTracker, largest_face, track_faces
from .track import NO_FACE_ADVICE, FaceTrack, FaceTracker, track_face

__all__ = [
    "CropInfo",
    "FaceCrops",
    "FaceTrack",
    "FaceTracker",
    "MultiFaceTracker",
    "NO_FACE_ADVICE",
    "SkinMasker",
    "SkinModel",
    "composite",
    "crop_faces",
    "crop_squares",
    "cut_crops",
    "detect_faces",
    "face_crops",
    "face_mask",
    "largest_face",
    "mask_region",
    "skin_mask",
    "track_face",
    "track_faces",
    "uncrop_faces",
]
