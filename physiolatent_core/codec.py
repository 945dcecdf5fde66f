"""What a lossy output path keeps of a small skin-colour change, measured on the clip itself.

H.264 at crf 18-23 in yuv420p does not keep a 1 % colour change as it is: its dead zone
erases part of every small temporal change, and it erases more of the chroma part (a
pulse is mostly luminance; its chroma change is a fraction of a grey level) than of the
luminance part. A pulse injected along the blood-volume direction therefore comes out
weaker **and turned** towards other colours (measured: green keeps 57-77 %, red and blue
72-88 %, depending on the clip). Estimators that rely on the blood-volume direction
(PBV is a minimum-variance beamformer steered to it) then treat a strong but turned
pulse as noise and cancel it.

:func:`colour_response` measures the per-channel gain of the path on a sample of the
clip: it encodes the face region twice, as it is and with a known test pulse along the
blood-volume direction, and regresses the difference of the two decoded skin traces on
the test pulse. The editor divides the pulse it injects by this gain, so that what the
saved file holds points along the blood-volume direction. (The subtraction of the own
pulse is left as measured: the codec acts on the original's own pulse too.)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import InputError

#: Gains outside this range mean the measurement failed (a face too small, a clip too
#: dark); they are clipped so the correction never grows more than 2.5x.
RESPONSE_RANGE = (0.4, 1.2)
CHUNK_PIXELS = 4_000_000  # per chunk of a round trip
PARALLEL_MAX_PIXELS = 640 * 480  # both round trips at once up to this sample size


def sample_box(face_mask: np.ndarray, margin: float = 0.25, align: int = 16) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around every mask > 0.05 pixel of ``face_mask [t,H,W]``, grown by
    ``margin`` of its size, snapped to multiples of ``align`` (the codec's macroblocks)
    and clipped to the frame."""
    on = face_mask > 0.05
    h, w = face_mask.shape[1:]
    if not on.any():
        return 0, 0, w, h
    ys, xs = np.flatnonzero(on.any(axis=(0, 2))), np.flatnonzero(on.any(axis=(0, 1)))
    x0, x1, y0, y1 = xs[0], xs[-1] + 1, ys[0], ys[-1] + 1
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0 = max(0, int(x0 - mx) // align * align), max(0, int(y0 - my) // align * align)
    x1, y1 = min(w, -(-int(x1 + mx) // align) * align), min(h, -(-int(y1 + my) // align) * align)
    return x0, y0, x1, y1


def cap_box(box: tuple[int, int, int, int], max_pixels: int, align: int = 16) -> tuple[int, int, int, int]:
    """``box`` (x0, y0, x1, y1) shrunk about its centre, both sides by the same factor and
    snapped to ``align``, to at most ``max_pixels`` pixels; unchanged if it is that small."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w * h <= max_pixels:
        return box
    scale = (max_pixels / (w * h)) ** 0.5
    nw, nh = max(align, int(w * scale) // align * align), max(align, int(h * scale) // align * align)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    nx0, ny0 = min(max(x0, (cx - nw // 2) // align * align), x1 - nw), min(max(y0, (cy - nh // 2) // align * align), y1 - nh)
    return nx0, ny0, nx0 + nw, ny0 + nh


def colour_response(
    frames: np.ndarray,
    face_mask: np.ndarray,
    fps: float,
    direction: np.ndarray,
    amplitude: float = 0.012,
    crf: int = 23,
    quantize: str = "dither",
    preset: str = "medium",
    test_hz: float = 1.5,
) -> np.ndarray:
    """Per-channel gain [3] (R, G, B) of an H.264 round trip for a pulse along ``direction``.

    Args:
        frames: [t,h,w,3] float 0..1 or uint8, a sample of the clip (2-4 s is enough),
            already cropped around the face (see :func:`sample_box`).
        face_mask: [t,h,w] soft skin mask of the sample, float 0..1 or uint8 0..255.
        fps: frame rate.
        direction: [3] relative colour change per unit pulse (green component ~1).
        amplitude: RMS of the test pulse, as a fraction of the pixel value: the strength
            the editor will use, since the dead zone makes the gain depend on it.
        crf, quantize, preset: the output path to measure (libx264 crf, 8-bit quantiser,
            x264 preset).
        test_hz: frequency of the test pulse: the rate that will be injected (the codec keeps
            different rates differently).

    Returns:
        float64 [3], each channel's kept fraction of the test pulse in the mask-weighted
        mean skin colour, clipped to :data:`RESPONSE_RANGE`.
    """
    from scipy import signal  # noqa: PLC0415 (slow to import: loaded on first use)
    t = len(frames)
    test_hz = min(test_hz, 0.3 * fps)  # below Nyquist with room for the band-pass
    if t < 4 * fps / test_hz:  # four cycles of the test pulse
        raise InputError(f"a codec sample of {t} frames is too short: use at least {int(4 * fps / test_hz) + 1}.")
    if face_mask.max() <= 0:
        raise InputError("the codec sample has an empty face mask: no skin to measure the codec on.")
    wave = np.sqrt(2.0) * np.sin(2 * np.pi * test_hz * np.arange(t) / fps)  # unit RMS
    # The test pulse with both signs: the difference of the two encodes holds it twice,
    # while the codec's other differences between two encodes stay the same size.
    change = (-amplitude, wave, direction)
    # Two threads: x264 and most of the rest release the GIL, and one encode alone leaves
    # a core idle during its dither and decode. Not for large samples: with a 1080p face
    # the second x264 instance raised the CLI's memory at this stage from 1.64 to 2.24 GB.
    workers = 2 if frames.shape[1] * frames.shape[2] <= PARALLEL_MAX_PIXELS else 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codec") as pool:
        up, down = (pool.submit(_round_trip, frames, face_mask, fps, change, sign, crf, quantize, preset)
                    for sign in (+1.0, -1.0))
        (sent_up, kept_up), (sent_down, kept_down) = up.result(), down.result()
    intended = sent_up / np.maximum(sent_down, 1e-6) - 1.0
    kept = kept_up / np.maximum(kept_down, 1e-6) - 1.0
    # Only the test frequency: the codec's other differences between the two encodes are noise.
    sos = signal.butter(2, [0.8 * test_hz, 1.2 * test_hz], btype="bandpass", fs=fps, output="sos")
    intended, kept = signal.sosfiltfilt(sos, intended, axis=0), signal.sosfiltfilt(sos, kept, axis=0)
    gain = (kept * intended).sum(axis=0) / np.maximum((intended * intended).sum(axis=0), 1e-18)
    return np.clip(gain, *RESPONSE_RANGE)


def _round_trip(frames, face_mask, fps, change, sign, crf, quantize, preset):
    """Add ``sign * frames * scale * wave(t) * direction`` inside the mask (``change`` is
    ``(scale, wave [t], direction [3])``), save with H.264 and read back, chunk by chunk (a
    1080p face sample is gigabytes as float32). Returns the mean skin colour [t,3] of what
    was sent and of what came back."""
    from .rppg import extract_rgb
    from .video import encode_decode_chunks, to_float

    # About 4 Mpixel per chunk (16 frames of a 640x480 face region, 4 of a 1080p one):
    # two of these run at once, each with a few float32 copies of its chunk.
    chunk = int(np.clip(CHUNK_PIXELS // max(frames.shape[1] * frames.shape[2], 1), 2, 16))
    scale, wave, direction = np.float32(change[0]), change[1].astype(np.float32), np.asarray(change[2], np.float32)
    sent = []

    def edited_chunks():
        for s in range(0, len(frames), chunk):
            edited, mask = to_float(frames[s : s + chunk]), to_float(face_mask[s : s + chunk])
            if np.shares_memory(edited, frames):  # float input: edited in place below
                edited = edited.copy()
            # Only the mask's bounding box changes (the sample box has a wide margin around it).
            rows, cols = np.flatnonzero(mask.any(axis=(0, 2))), np.flatnonzero(mask.any(axis=(0, 1)))
            if len(rows):
                inside = edited[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                weight = np.minimum(mask[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * 2.0, 1.0)
                delta = inside * weight[..., None] * scale
                delta *= wave[s : s + chunk, None, None, None] * direction
                np.clip(inside + sign * delta, 0.0, 1.0, out=inside)
            sent.append(extract_rgb(edited, mask))
            yield edited

    decoded = encode_decode_chunks(edited_chunks(), fps, crf=crf, quantize=quantize, preset=preset, chunk_frames=chunk)
    kept = [extract_rgb(d, to_float(face_mask[i * chunk : i * chunk + len(d)])) for i, d in enumerate(decoded)]
    return np.concatenate(sent), np.concatenate(kept)
