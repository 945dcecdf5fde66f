"""SSR (Wang, Stuijk & de Haan 2016, "A novel algorithm for remote photoplethysmography:
spatial subspace rotation"): the pulse from how the skin pixels' colour cloud turns.

Every other estimator here reads the mean skin colour. SSR reads the distribution of the
skin pixels instead: per frame, the (uncentred) colour correlation matrix of the skin
pixels, whose eigenvectors span the skin-colour subspace. The blood-volume pulse turns
the principal axis (the skin tone) a little towards the other two, once per beat; SSR
measures that rotation, scaled by the eigenvalue ratios, against a reference frame one
window earlier, and overlap-adds the windows. It is the pixel-level check among our
readers and responds to other things than they do: a brightness change of every pixel
alike leaves the subspace where it is (``tests/test_ssr.py``), while GREEN reads it.

    moments = colour_moments(frames, mask)     # [T,H,W,3] -> [T,3,3], streams by chunk
    pulse = ssr(moments, fps)                   # [T]

As pyVHR implements it: a window of one second (``l = fps`` frames), rotation of the
principal eigenvector of frame t onto the other two of the window's first frame, and
``p = SR_r - std(SR_r) / std(SR_g) * SR_g``. Two choices are ours: the principal
eigenvector's sign is fixed (positive colour sum), since a sign flip between frames would
flip the rotation; and the output gets the post-processing every estimator here gets
(detrending and the band-pass).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InputError
from .traces import DEFAULT_BAND_HZ, check_fps, fill_gaps, frames_and_weights, postprocess

EPS = 1e-12


def colour_moments(frames, mask=None) -> np.ndarray:
    """Per frame, the mask-weighted colour correlation matrix of the skin pixels.

    Args:
        frames: ``[T, H, W, 3]`` float RGB (0..1) or uint8.
        mask: ``[T, H, W]`` or ``[H, W]`` weights >= 0 (a soft skin mask), or None (every
            pixel counts).

    Returns:
        ``[T, 3, 3]`` float64, ``sum(w * v v^T) / sum(w)`` with ``v`` a pixel's RGB in 0..1.
        Frames whose mask is empty are filled from the nearest frames with skin.
    """
    x, m, (r0, r1, c0, c1) = frames_and_weights(frames, mask)
    t = len(x)
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    box = np.s_[r0:r1, c0:c1]  # only the mask's box is read
    moments = np.zeros((t, 3, 3))
    totals = np.zeros(t)
    for i in range(t):
        weights = m[i % len(m)][box].reshape(-1, 1).astype(np.float64)
        pixels = x[i][box].reshape(-1, 3).astype(np.float64) * scale  # [P, 3]
        totals[i] = weights.sum()
        if totals[i] > 0:
            moments[i] = (pixels * weights).T @ pixels / totals[i]
    return fill_gaps(moments.reshape(t, 9), totals > 0).reshape(t, 3, 3)


def ssr(moments, fps, band_hz=DEFAULT_BAND_HZ, window_s: float = 1.0) -> np.ndarray:
    """SSR pulse ``[T]`` from the per-frame colour correlation matrices ``[T, 3, 3]``
    (:func:`colour_moments`). Zero-mean, arbitrary scale and sign."""
    c = np.asarray(moments, dtype=np.float64)
    if c.ndim != 3 or c.shape[1:] != (3, 3):
        raise InputError(f"SSR needs colour correlation matrices [T, 3, 3] (rppg.colour_moments), got {c.shape}.")
    fps = check_fps(fps)
    n = len(c)
    if n < 3:
        raise InputError(f"SSR needs at least 3 frames, got {n}.")
    win = int(min(max(math.ceil(window_s * fps), 2), n - 1))
    eigvals, eigvecs = np.linalg.eigh(c)  # ascending
    eigvals, eigvecs = eigvals[:, ::-1], eigvecs[:, :, ::-1]  # [T,3] descending, columns u1 u2 u3
    eigvals = np.maximum(eigvals, EPS)
    u1 = eigvecs[:, :, 0] * np.where(eigvecs[:, :, 0].sum(axis=1) < 0, -1.0, 1.0)[:, None]  # [T,3]

    starts = np.arange(n - win)  # reference frame tau; the window is tau .. tau + win - 1
    u1_win = sliding_window_view(u1, win, axis=0)[: len(starts)]  # [W, 3, win]
    l1_win = sliding_window_view(eigvals[:, 0], win)[: len(starts)]  # [W, win]
    sr = np.zeros((len(starts), win, 3))
    for j in (1, 2):  # rotation of u1(t) towards u2(tau) and u3(tau), scaled by sqrt(l1(t)/lj(tau))
        uj = eigvecs[starts, :, j]  # [W, 3]
        rotation = np.einsum("wct,wc->wt", u1_win, uj)
        scale = np.sqrt(l1_win / eigvals[starts, j][:, None])
        sr += (scale * rotation)[:, :, None] * uj[:, None, :]  # back to RGB
    s_r, s_g = sr[..., 0], sr[..., 1]
    p = s_r - s_r.std(axis=1, keepdims=True) / (s_g.std(axis=1, keepdims=True) + EPS) * s_g
    p -= p.mean(axis=1, keepdims=True)
    pulse = np.zeros(n)
    for tau, segment in zip(starts, p):
        pulse[tau : tau + win] += segment
    return postprocess(pulse, fps, band_hz)
