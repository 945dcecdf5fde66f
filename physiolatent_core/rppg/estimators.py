"""Classical rPPG estimators: colour trace ``[T, 3]`` -> pulse ``[T]``.

Every estimator is a pure function ``fn(rgb, fps, band_hz=DEFAULT_BAND_HZ) -> pulse``.
``rgb`` is the mean skin colour per frame (``traces.extract_rgb``), RGB order, any
positive scale. The core of each method follows its paper and the way rPPG-Toolbox /
pyVHR implement it; all outputs then get the same post-processing as rPPG-Toolbox:
smoothness-priors detrending (lambda = 100) and a zero-phase order-2 Butterworth
band-pass over ``band_hz``. Outputs are float64 ``[T]``, zero-mean, arbitrary scale and
sign (PCA/ICA components have no defined sign).

Notation: a "normalised" trace is ``rgb / temporal_mean - 1``; there the blood-volume
pulse moves along roughly (0.33, 0.77, 0.53) and a pure intensity change (motion,
illumination level) along (1, 1, 1).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .traces import DEFAULT_BAND_HZ, bandpass, check_fps, check_rgb, detrend, postprocess

#: Normalised blood-volume-pulse signature for RGB cameras (de Haan & van Leest 2014).
PBV_SIGNATURE = np.array([0.33, 0.77, 0.53])
#: POS projection plane, orthogonal to the intensity direction (1, 1, 1) (Wang et al. 2017).
POS_PROJECTION = np.array([[0.0, 1.0, -1.0], [-2.0, 1.0, 1.0]])
#: Guards divisions by a standard deviation; shared with torch_pos so both agree.
EPS = 1e-9


def _window_length(fps: float, window_s: float, n_frames: int) -> int:
    """Frames per window: ceil(window_s * fps) as rPPG-Toolbox, clipped to [2, T]."""
    return int(min(max(math.ceil(window_s * fps), 2), n_frames))


# --------------------------------------------------------------------------- GREEN


def green(rgb, fps, band_hz=DEFAULT_BAND_HZ) -> np.ndarray:
    """GREEN (Verkruysse, Svaasand & Nelson 2008): the green channel carries the strongest
    plethysmographic signal. Normalised by its mean so the amplitude is relative."""
    x = check_rgb(rgb)
    fps = check_fps(fps)
    g = x[:, 1] / max(x[:, 1].mean(), EPS) - 1.0
    return postprocess(g, fps, band_hz)


# --------------------------------------------------------------------------- CHROM


def chrom(rgb, fps, band_hz=DEFAULT_BAND_HZ, window_s: float = 1.6) -> np.ndarray:
    """CHROM (de Haan & Jeanne 2013), windowed with Hann overlap-add as in the paper.

    Per 1.6 s window (50 % overlap): normalise by the window mean, build the chrominance
    signals X = 3R - 2G and Y = 1.5R + G - 1.5B, band-pass them, combine
    S = Xf - (std Xf / std Yf) Yf, taper with a Hann window and overlap-add.
    The trace is reflect-padded at the end so the last frames get a full window.
    """
    x = check_rgb(rgb)
    fps = check_fps(fps)
    n = x.shape[0]
    win = _window_length(fps, window_s, n)
    win += win % 2  # even, so the hop is exactly half a window
    hop = win // 2
    n_windows = max(1, math.ceil((n - win) / hop) + 1)
    padded_len = (n_windows - 1) * hop + win
    xp = np.pad(x, ((0, padded_len - n), (0, 0)), mode="reflect") if padded_len > n else x

    windows = sliding_window_view(xp, win, axis=0)[::hop]  # [W, 3, win]
    cn = windows / np.maximum(windows.mean(axis=2, keepdims=True), EPS)
    xs = 3.0 * cn[:, 0] - 2.0 * cn[:, 1]
    ys = 1.5 * cn[:, 0] + cn[:, 1] - 1.5 * cn[:, 2]
    xf = bandpass(xs, fps, band_hz, axis=1)
    yf = bandpass(ys, fps, band_hz, axis=1)
    alpha = xf.std(axis=1) / (yf.std(axis=1) + EPS)
    taper = np.hanning(win + 1)[:-1]  # periodic Hann: 50 %-overlapped copies sum to 1
    segments = (xf - alpha[:, None] * yf) * taper  # [W, win]

    out = np.zeros(padded_len)
    for i, seg in enumerate(segments):
        out[i * hop : i * hop + win] += seg
    return postprocess(out[:n], fps, band_hz)


# --------------------------------------------------------------------------- POS


def pos_raw(rgb, fps, window_s: float = 1.6) -> np.ndarray:
    """POS core (Wang, den Brinker, Stuijk & de Haan 2017) before detrend/band-pass.

    For every window of ``ceil(window_s * fps)`` frames (stride 1): normalise by the window
    mean, project on the plane orthogonal to (1,1,1) (``POS_PROJECTION``), alpha-tune
    h = S1 + (std S1 / std S2) S2, remove its mean and overlap-add into the output.
    ``[T, 3] -> [T]``. Unlike rPPG-Toolbox, the window that ends on the last frame is used
    too. ``torch_pos.pos_torch`` computes exactly this, differentiably.
    """
    x = check_rgb(rgb, min_frames=2)
    fps = check_fps(fps)
    n = x.shape[0]
    win = _window_length(fps, window_s, n)
    windows = sliding_window_view(x, win, axis=0)  # [W, 3, win], W = n - win + 1
    cn = windows / np.maximum(windows.mean(axis=2, keepdims=True), EPS)
    s = np.einsum("kc,wcl->wkl", POS_PROJECTION, cn)  # [W, 2, win]
    alpha = s[:, 0].std(axis=1) / (s[:, 1].std(axis=1) + EPS)
    h = s[:, 0] + alpha[:, None] * s[:, 1]
    h -= h.mean(axis=1, keepdims=True)

    out = np.zeros(n)
    n_windows = h.shape[0]
    for offset in range(win):  # loop over window positions (~48), not over frames
        out[offset : offset + n_windows] += h[:, offset]
    return out


def pos(rgb, fps, band_hz=DEFAULT_BAND_HZ, window_s: float = 1.6) -> np.ndarray:
    """POS (Wang et al. 2017): ``pos_raw`` then the shared detrend + band-pass."""
    return postprocess(pos_raw(rgb, fps, window_s), check_fps(fps), band_hz)


# --------------------------------------------------------------------------- PCA / ICA


def _standardised(x: np.ndarray) -> np.ndarray:
    """Detrend each channel and scale it to zero mean, unit variance (Poh 2010 pre-processing)."""
    z = detrend(x)
    z = z - z.mean(axis=0)
    return z / np.maximum(z.std(axis=0), EPS)


def _most_periodic(components: np.ndarray, fps: float, band_hz) -> np.ndarray:
    """The column of ``components [T, K]`` whose normalised power spectrum has the highest
    peak inside ``band_hz`` (Poh, McDuff & Picard 2011's selection, restricted to the band)."""
    spectrum = np.abs(np.fft.rfft(components - components.mean(axis=0), axis=0)) ** 2
    freqs = np.fft.rfftfreq(components.shape[0], d=1.0 / fps)
    spectrum /= np.maximum(spectrum.sum(axis=0, keepdims=True), EPS)
    in_band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    if not in_band.any():
        return components[:, 0]
    return components[:, int(np.argmax(spectrum[in_band].max(axis=0)))]


def pca(rgb, fps, band_hz=DEFAULT_BAND_HZ) -> np.ndarray:
    """PCA (Lewandowska et al. 2011): principal components of the standardised RGB traces;
    the component with the strongest in-band spectral peak is the pulse."""
    x = check_rgb(rgb)
    fps = check_fps(fps)
    z = _standardised(x)
    _, vectors = np.linalg.eigh(z.T @ z / len(z))
    components = z @ vectors[:, ::-1]  # [T, 3], largest variance first
    return postprocess(_most_periodic(components, fps, band_hz), fps, band_hz)


def _fastica(z: np.ndarray, seed: int = 0, max_iter: int = 200, tol: float = 1e-7) -> np.ndarray:
    """Symmetric FastICA (Hyvarinen 1999) with the log-cosh contrast. ``[T, n] -> sources [T, n]``.

    ``z`` must be zero-mean. It is whitened first; the unmixing matrix starts from a
    seeded random rotation so the result is reproducible.
    """
    cov = z.T @ z / len(z)
    values, vectors = np.linalg.eigh(cov)
    keep = values > EPS * values.max()
    white = z @ (vectors[:, keep] / np.sqrt(values[keep]))  # [T, k], identity covariance
    k = white.shape[1]

    def decorrelate(w: np.ndarray) -> np.ndarray:  # (W W^T)^(-1/2) W keeps the rows orthonormal
        s, u = np.linalg.eigh(w @ w.T)
        return (u / np.sqrt(np.maximum(s, EPS))) @ u.T @ w

    w = decorrelate(np.random.default_rng(seed).standard_normal((k, k)))
    for _ in range(max_iter):
        y = white @ w.T
        g = np.tanh(y)
        w_new = decorrelate(g.T @ white / len(white) - np.diag((1.0 - g**2).mean(axis=0)) @ w)
        converged = np.max(np.abs(np.abs(np.einsum("ij,ij->i", w_new, w)) - 1.0)) < tol
        w = w_new
        if converged:
            break
    return white @ w.T


def ica(rgb, fps, band_hz=DEFAULT_BAND_HZ, seed: int = 0) -> np.ndarray:
    """ICA (Poh, McDuff & Picard 2010): detrend and standardise the RGB traces, separate three
    independent sources (FastICA here; rPPG-Toolbox uses JADE) and keep the source with the
    strongest in-band spectral peak."""
    x = check_rgb(rgb)
    fps = check_fps(fps)
    sources = _fastica(_standardised(x), seed=seed)
    return postprocess(_most_periodic(sources, fps, band_hz), fps, band_hz)


# --------------------------------------------------------------------------- LGI / OMIT


def _project_out(direction: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Remove the component of each column of ``x [3, T]`` along the unit vector ``direction``."""
    return x - np.outer(direction, direction @ x)


def lgi(rgb, fps, band_hz=DEFAULT_BAND_HZ) -> np.ndarray:
    """LGI (Pilz et al. 2018, local group invariance): project the raw colour trace off its
    dominant direction (first left singular vector, ~ the skin colour, which carries
    intensity changes) and take the green channel of what remains."""
    x = check_rgb(rgb).T  # [3, T]
    fps = check_fps(fps)
    u, _, _ = np.linalg.svd(x, full_matrices=False)
    return postprocess(_project_out(u[:, 0], x)[1], fps, band_hz)


def omit(rgb, fps, band_hz=DEFAULT_BAND_HZ) -> np.ndarray:
    """OMIT (Casado & Lopez 2022, orthogonal matrix image transformation): like LGI, but the
    direction removed is the first column of Q in the QR decomposition of the raw trace
    ``[3, T]`` (as rPPG-Toolbox and pyVHR compute it); the pulse is the green channel."""
    x = check_rgb(rgb).T  # [3, T]
    fps = check_fps(fps)
    q, _ = np.linalg.qr(x)
    return postprocess(_project_out(q[:, 0], x)[1], fps, band_hz)


# --------------------------------------------------------------------------- PBV


def pbv(rgb, fps, band_hz=DEFAULT_BAND_HZ, signature=PBV_SIGNATURE) -> np.ndarray:
    """PBV (de Haan & van Leest 2014): the pulse is the combination S = C^T w of the normalised,
    band-passed traces C with w proportional to Q^-1 P_bv (Q = C C^T), i.e. the least-power
    combination that keeps unit gain along the blood-volume signature P_bv.

    ``signature=None`` estimates P_bv from the data (std of each normalised channel) as
    rPPG-Toolbox does; the default is the paper's fixed signature, which does not follow
    motion when motion dominates the variance.
    """
    x = check_rgb(rgb)
    fps = check_fps(fps)
    c = bandpass(x / np.maximum(x.mean(axis=0), EPS) - 1.0, fps, band_hz)  # [T, 3]
    sig = c.std(axis=0) if signature is None else np.asarray(signature, dtype=np.float64)
    sig = sig / max(np.linalg.norm(sig), EPS)
    q = c.T @ c
    q += np.eye(3) * (1e-9 * np.trace(q) + 1e-30)  # grey video (R=G=B) makes Q singular
    w = np.linalg.solve(q, sig)
    return postprocess(c @ w / (sig @ w), fps, band_hz)


ESTIMATORS: dict[str, Callable[..., np.ndarray]] = {
    "green": green,
    "chrom": chrom,
    "pos": pos,
    "pca": pca,
    "ica": ica,
    "lgi": lgi,
    "pbv": pbv,
    "omit": omit,
}
