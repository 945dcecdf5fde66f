"""Colour traces from frames, and the pre/post-processing every estimator shares.

* ``extract_rgb``: frames ``[T, H, W, 3]`` (+ soft mask) -> mean skin colour per frame ``[T, 3]``.
* ``detrend``: smoothness-priors detrending (Tarvainen et al. 2002), lambda = 100 as in rPPG-Toolbox.
* ``bandpass``: zero-phase Butterworth band-pass (order 2, as rPPG-Toolbox's evaluation).
* ``postprocess``: detrend then band-pass, applied to every estimator's output pulse.

Frequencies are in Hz inside this module (``band_hz``); the public HR APIs take bpm.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import InputError

#: Physiological HR band 40-180 bpm, in Hz.
DEFAULT_BAND_HZ: tuple[float, float] = (40.0 / 60.0, 180.0 / 60.0)
#: extract_rgb sums at most this many pixels per BLAS call (see there).
_BLOCK_PIXELS = 32768
#: Smoothness-priors regularisation (rPPG-Toolbox uses 100 at every frame rate).
DETREND_LAMBDA = 100.0


def check_fps(fps) -> float:
    """Return ``fps`` as a positive finite float or raise ``InputError``."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError(f"fps must be a number, got {fps!r}. Pass the video's frame rate.") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"fps must be positive and finite, got {fps!r}. Pass the video's frame rate.")
    return value


def check_rgb(rgb, min_frames: int = 3) -> np.ndarray:
    """Validate a colour trace ``[T, 3]`` and return it as float64."""
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(
            f"expected an RGB trace of shape [T, 3], got {arr.shape}. "
            "Use rppg.extract_rgb(frames, mask) to turn frames [T,H,W,3] into a trace."
        )
    if arr.shape[0] < min_frames:
        raise InputError(f"the trace has {arr.shape[0]} frames; at least {min_frames} are needed.")
    if not np.all(np.isfinite(arr)):
        raise InputError("the RGB trace contains NaN or inf values; check the frames and the mask.")
    return arr


def extract_rgb(frames, mask=None) -> np.ndarray:
    """Mask-weighted spatial mean colour of each frame.

    Args:
        frames: ``[T, H, W, 3]`` float (RGB, 0..1), or a single frame ``[H, W, 3]``.
        mask: ``[T, H, W]`` or ``[H, W]`` (same for every frame) soft weights >= 0, or None
            (plain mean over the whole frame).

    Returns:
        ``[T, 3]`` float64. Frames whose mask is all zero (face lost) are filled by linear
        interpolation from the nearest frames with skin, so the trace has no gaps.

    Only the bounding box of the mask (over all frames) is read. Inside it, each frame is
    summed with BLAS matrix-vector products ``weights [P] @ pixels [P, 3]`` over blocks of
    at most ``_BLOCK_PIXELS`` pixels: a loop over frames and row blocks, never over pixels.
    Blocks stay below OpenBLAS's threading threshold; a whole-frame product spawns threads
    that thrash on a busy machine (10x slower measured on 2 shared cores).
    """
    x, m, (r0, r1, c0, c1) = frames_and_weights(frames, mask)
    t = len(x)
    block = max(1, _BLOCK_PIXELS // (c1 - c0))  # rows per block

    totals = m[:, r0:r1, c0:c1].sum(axis=(1, 2), dtype=np.float64)  # [1 or T]
    sums = np.zeros((t, 3))
    for i in range(t):
        weights = m[i % len(m)]
        for r in range(r0, r1, block):
            rr = slice(r, min(r + block, r1))
            pixels = x[i, rr, c0:c1].astype(np.float32, copy=False).reshape(-1, 3)
            sums[i] += np.ascontiguousarray(weights[rr, c0:c1]).reshape(-1) @ pixels
    totals = np.broadcast_to(totals, (t,))
    valid = totals > 0  # some frame has skin: frames_and_weights checked the mask
    rgb = np.zeros((t, 3))
    rgb[valid] = sums[valid] / totals[valid, None]
    rgb = fill_gaps(rgb, valid)
    if not np.all(np.isfinite(rgb)):
        raise InputError("frames contain NaN or inf values inside the mask; check the decoded video.")
    return rgb


def frames_and_weights(frames, mask=None):
    """Checked inputs of a masked reader: ``(frames [T,H,W,3], weights [1 or T,H,W] float32,
    (r0, r1, c0, c1))``, the last the bounding box of every pixel the mask ever weighs
    (readers look only inside it). A single frame [H,W,3] becomes a clip of one."""
    x = np.asarray(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"frames must have shape [T, H, W, 3] (RGB), got {x.shape}.")
    t, h, w, _ = x.shape
    if mask is None:
        m = np.ones((1, h, w), dtype=np.float32)
    else:
        m = np.asarray(mask, dtype=np.float32)
        if m.shape not in ((h, w), (t, h, w)):
            raise InputError(f"mask shape {m.shape} does not match frames {x.shape}; expected [T,H,W] or [H,W].")
        if m.ndim == 2:
            m = m[None]
    peak = m.max(axis=0)  # [H, W]; NaN and inf propagate into it
    if m.min() < 0 or not np.isfinite(peak.max()):
        raise InputError("mask has negative or non-finite weights; masks are soft weights in 0..1.")
    occupied = peak > 0
    if not occupied.any():
        raise InputError("the mask is zero in every frame: no skin pixels to average. Check the face mask.")
    rows, cols = np.flatnonzero(occupied.any(axis=1)), np.flatnonzero(occupied.any(axis=0))
    return x, m, (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)


def fill_gaps(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``x [T, C]`` with the rows where ``ok [T]`` is False linearly interpolated from the
    others (held constant beyond the first and last ``ok`` row). Unchanged if all or none are ok."""
    if ok.all() or not ok.any():
        return x
    idx, t = np.flatnonzero(ok), np.arange(len(x))
    return np.stack([np.interp(t, idx, x[idx, c]) for c in range(x.shape[1])], axis=1)


def detrend(x, lam: float = DETREND_LAMBDA) -> np.ndarray:
    """Smoothness-priors detrending (Tarvainen, Ranta-aho & Karjalainen 2002).

    Removes the smooth trend ``z_trend = (I + lam^2 D2^T D2)^-1 z`` where D2 is the
    second-difference operator. ``x``: ``[T]`` or ``[T, C]`` (each column detrended).
    The system is pentadiagonal, so a sparse solve keeps this O(T).
    """
    z = np.asarray(x, dtype=np.float64)
    n = z.shape[0]
    if n < 3:
        return z - z.mean(axis=0)
    trend = _trend_solver(n, float(lam))(z)
    return z - np.asarray(trend).reshape(z.shape)


@lru_cache(maxsize=32)
def _trend_solver(n: int, lam: float):
    """LU factorisation of ``I + lam^2 D2^T D2`` for ``n`` samples, kept: the strength check
    and the sliding-window estimators detrend many traces of the same length."""
    import scipy.sparse.linalg  # noqa: PLC0415 (slow to import: loaded on first use)
    d2 = scipy.sparse.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n - 2, n), format="csc")
    system = (scipy.sparse.identity(n, format="csc") + (lam**2) * (d2.T @ d2)).tocsc()
    return scipy.sparse.linalg.factorized(system)


def band_sos(fps: float, band_hz=DEFAULT_BAND_HZ, order: int = 2) -> np.ndarray:
    """Butterworth band-pass in second-order sections; the upper edge is kept below Nyquist."""
    fps = check_fps(fps)
    return _band_sos(fps, float(band_hz[0]), float(band_hz[1]), int(order)).copy()  # scipy wants it writable


@lru_cache(maxsize=64)
def _band_sos(fps: float, low: float, high: float, order: int) -> np.ndarray:
    # Kept: designing the filter (~1 ms) cost more than filtering a 10 s trace, and the
    # strength check runs every estimator on many windows at the same rate and band.
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    nyquist = fps / 2.0
    edge = min(high, 0.95 * nyquist)  # HR above Nyquist cannot be seen anyway
    if not 0 < low < edge:
        raise InputError(
            f"band {(low, high)} Hz cannot be filtered at {fps:g} fps (Nyquist {nyquist:g} Hz). "
            "Use a higher frame rate or a lower band."
        )
    sos = signal.butter(order, [low, edge], btype="bandpass", fs=fps, output="sos")
    sos.flags.writeable = False
    return sos


def bandpass(x, fps: float, band_hz=DEFAULT_BAND_HZ, order: int = 2, axis: int = 0) -> np.ndarray:
    """Zero-phase (forward-backward) Butterworth band-pass along ``axis``."""
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    z = np.asarray(x, dtype=np.float64)
    sos = band_sos(fps, band_hz, order)
    # scipy's default pad length can exceed very short inputs; shrink it rather than fail.
    default_pad = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    padlen = min(default_pad, z.shape[axis] - 1)
    return signal.sosfiltfilt(sos, z, axis=axis, padlen=padlen)


def postprocess(pulse, fps: float, band_hz=DEFAULT_BAND_HZ) -> np.ndarray:
    """The post-processing every estimator shares: detrend (lambda=100), then band-pass. ``[T] -> [T]``."""
    return bandpass(detrend(pulse), fps, band_hz)
