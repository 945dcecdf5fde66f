"""Face detection: OpenCV's Haar frontal-face cascades on one frame or a region of it.

Boxes are (x0, y0, x1, y1) float pixel coordinates where pixel k covers [k, k+1).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import FaceNotFoundError, InputError

__all__ = ["detect_faces"]

_CASCADE_FILES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
}
_cascades: dict[str, cv2.CascadeClassifier] = {}


def _cascade(name: str) -> cv2.CascadeClassifier:
    """The Haar cascade ``name`` ('default' or 'alt2'), loaded once per process."""
    if name not in _CASCADE_FILES:
        raise InputError(f"unknown face cascade {name!r}; use one of {sorted(_CASCADE_FILES)}.")
    if name not in _cascades:
        path = cv2.data.haarcascades + _CASCADE_FILES[name]
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise FaceNotFoundError(
                f"OpenCV's face detector could not be loaded from {path}; "
                "reinstall opencv-python-headless, or pass a mask."
            )
        _cascades[name] = cascade
    return _cascades[name]


def _to_grey_u8(image: np.ndarray) -> np.ndarray:
    """[h,w,3] RGB float 0..1 or uint8 -> [h,w] uint8 grey."""
    if image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    grey = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _detect_region(
    frame: np.ndarray,
    rect: tuple[int, int, int, int],
    scale: float,
    min_px: float,
    max_px: float | None,
    cascade: str,
    min_neighbors: int,
    scale_factor: float = 1.1,
) -> np.ndarray:
    """Run the cascade on frame[y0:y1, x0:x1] downscaled by ``scale``.

    rect: integer (x0, y0, x1, y1); min_px/max_px: face sizes in frame pixels.
    Returns [N,4] float boxes in frame pixels.
    """
    x0, y0, x1, y1 = rect
    grey = _to_grey_u8(frame[y0:y1, x0:x1])
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        scale_x, scale_y = size[0] / (x1 - x0), size[1] / (y1 - y0)
    else:
        scale_x = scale_y = 1.0
    # No histogram equalisation: it makes the cascade fire on textured clothing.
    min_side = max(24, int(min_px * scale_x))
    max_side = (0, 0) if max_px is None else (int(max_px * scale_x),) * 2
    if min(grey.shape) < min_side:
        return np.zeros((0, 4))
    found = _cascade(cascade).detectMultiScale(
        grey, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_side, min_side), maxSize=max_side
    )
    if len(found) == 0:
        return np.zeros((0, 4))
    xywh = np.asarray(found, dtype=np.float64)
    boxes = np.stack(
        [
            xywh[:, 0] / scale_x + x0,
            xywh[:, 1] / scale_y + y0,
            (xywh[:, 0] + xywh[:, 2]) / scale_x + x0,
            (xywh[:, 1] + xywh[:, 3]) / scale_y + y0,
        ],
        axis=1,
    )
    return boxes


def _largest_first(boxes: np.ndarray) -> np.ndarray:
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes[np.argsort(-area, kind="stable")]


def detect_faces(
    frame: np.ndarray,
    *,
    detect_size: int = 320,
    min_face_px: float = 40,
    cascade: str = "alt2",
    min_neighbors: int = 4,
) -> np.ndarray:
    """Detect frontal faces in one frame.

    Args:
        frame: [H,W,3] RGB, float 0..1 or uint8.
        detect_size: the frame is downscaled so its long side is at most this (speed).
        min_face_px: smallest face side searched, in frame pixels (at least 24 px
            after downscaling, the cascade's window).
        cascade: 'alt2' (default: fewer false faces, faster) or 'default' (OpenCV's
            frontal-face cascades).

    Returns:
        [N,4] float (x0, y0, x1, y1) boxes in frame pixels, largest first.
    """
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"detect_faces expects one RGB frame [H,W,3]; got shape {frame.shape}.")
    h, w = frame.shape[:2]
    scale = min(1.0, detect_size / max(h, w))
    boxes = _detect_region(frame, (0, 0, w, h), scale, min_face_px, None, cascade, min_neighbors)
    return _largest_first(boxes) if len(boxes) else boxes


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of [N,4] boxes with one [4] box -> [N]."""
    ix = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area0 = (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(area + area0 - inter, 1e-9)
