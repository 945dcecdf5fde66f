"""The per-clip skin colour model: fitted by the tracker on the cheeks of its keyframe
detections, applied by the skin mask to keep it off hair and background."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["SkinModel"]


@dataclass
class SkinModel:
    """Per-clip skin colour model in YCrCb (float, 0..1 per channel).

    mean: [3]; inv_cov: [3,3]; threshold: Mahalanobis distance at which the skin
    probability is 0.5; softness: width of the logistic transition (distance units).
    """

    mean: np.ndarray
    inv_cov: np.ndarray
    threshold: float
    softness: float = 0.6

    @classmethod
    def fit(cls, samples: np.ndarray) -> SkinModel:
        """Fit to [N,3] YCrCb samples from the face centre (robust to stray pixels)."""
        samples = np.asarray(samples, dtype=np.float64)
        # Floors: a flat synthetic face has ~zero spread.
        floor = np.diag(np.array([0.03, 0.01, 0.01]) ** 2)
        mean, cov = np.median(samples, axis=0), np.cov(samples.T) + floor
        for _ in range(3):  # trim outliers (hair, glasses, shadow) and refit
            d = _mahalanobis(samples, mean, np.linalg.inv(cov))
            keep = d < 3.0
            if keep.sum() < 10:
                keep = d <= np.median(d)
            mean, cov = samples[keep].mean(axis=0), np.cov(samples[keep].T) + floor
        # Brightness (Y) varies with shading across the face far more than chroma:
        # allow it twice the spread seen on the cheeks.
        cov[0, :] *= 2.0
        cov[:, 0] *= 2.0
        inv = np.linalg.inv(cov)
        d = _mahalanobis(samples, mean, inv)
        threshold = float(max(3.0, 1.25 * np.quantile(d, 0.9)))
        return cls(mean=mean, inv_cov=inv, threshold=threshold)

    def probability(self, ycrcb: np.ndarray) -> np.ndarray:
        """[...,3] YCrCb -> [...] skin probability 0..1."""
        d = _mahalanobis(ycrcb, self.mean, self.inv_cov)
        z = np.clip((d - self.threshold) / self.softness, -50.0, 50.0)  # no overflow far from skin
        return (1.0 / (1.0 + np.exp(z))).astype(np.float32)


def _mahalanobis(x: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    diff = x - mean
    return np.sqrt(np.maximum(((diff @ inv_cov) * diff).sum(axis=-1), 0.0))


# Cheek/nose patch of a Haar box (u0, v0, u1, v1): below the eyes, above the mouth.
_COLOUR_PATCH = (0.22, 0.5, 0.78, 0.72)


def _colour_samples(frame: np.ndarray, box: np.ndarray, n: int = 8) -> np.ndarray:
    """[n*n, 3] YCrCb samples (area-averaged) from the cheek patch of ``box``."""
    h, w = frame.shape[:2]
    bw, bh = box[2] - box[0], box[3] - box[1]
    x0 = int(np.clip(round(box[0] + _COLOUR_PATCH[0] * bw), 0, w - 1))
    x1 = int(np.clip(round(box[0] + _COLOUR_PATCH[2] * bw), x0 + 1, w))
    y0 = int(np.clip(round(box[1] + _COLOUR_PATCH[1] * bh), 0, h - 1))
    y1 = int(np.clip(round(box[1] + _COLOUR_PATCH[3] * bh), y0 + 1, h))
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1], dtype=np.float32)
    if frame.dtype == np.uint8:
        patch = patch / 255.0
    patch = cv2.resize(patch, (n, n), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_RGB2YCrCb).reshape(-1, 3)
