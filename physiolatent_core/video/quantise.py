"""8-bit levels and float frames, both ways, keeping a pulse smaller than one level.

A skin pulse is often below one grey level, and rounding to uint8 erases it.
``quantize_to_uint8(method="dither")`` diffuses each pixel's rounding residual to the same
pixel of the next frame, so the running mean over time keeps the sub-level signal (the
.mkv and PNG writers use it). H.264 drops scattered ±1 pixel changes as noise but keeps
whole blocks stepping by one level, so the .mp4 writer dithers its Y plane with
``_TileDither`` (pixels hold their level; the tile means step) and its chroma with
``DitherState`` residuals that start equal within tiles; what each keeps through crf 18 is
in docs/BENCHMARKS.md (section 3). ``add_in_whole_levels`` makes an edit in whole levels for
outputs that a saver will truncate; ``to_float`` is the way back to float.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from einops import repeat

from ..errors import InputError

QUANTIZE_METHODS = ("dither", "round", "truncate")
# Conversions run a cache-sized block at a time: numpy's whole-array mixed-type arithmetic
# was several times slower (docs/BENCHMARKS.md, section 2).
TO_FLOAT_BLOCK = 1 << 18  # values (1 MiB of float32)
#: What a pixel that steps gets on top of its whole levels: float32 rounding of k/255 * 255
#: is ~1e-5 of a level, so truncation never takes the step away, and a dithering saver
#: downstream carries it for a thousand frames before it adds a level.
WHOLE_LEVEL_MARGIN = 1e-3


def to_float(pixels: np.ndarray) -> np.ndarray:
    """uint8/uint16 → float32 0..1 in one pass (float input: as float32, unscaled)."""
    if pixels.dtype.kind == "f":
        return np.asarray(pixels, np.float32)
    scale = np.float32(1.0 / np.iinfo(pixels.dtype).max)
    src = np.ascontiguousarray(pixels).reshape(-1)
    out = np.empty(src.shape, np.float32)
    # Cast, then scale in place: numpy's mixed-type multiply (uint8 * float32) is slower.
    for at in range(0, len(src), TO_FLOAT_BLOCK):
        block = out[at : at + TO_FLOAT_BLOCK]
        np.copyto(block, src[at : at + TO_FLOAT_BLOCK], casting="unsafe")
        block *= scale
    return out.reshape(pixels.shape)


@dataclass
class DitherState:
    """Per-pixel rounding residual carried from one frame to the next, in code units.

    Starts random in [-0.5, 0.5) (from ``seed``), shared by ``block`` x ``block``
    pixels, so pixels do not all step on the same frame. Updated in place.
    """

    seed: int = 0
    block: int = 1
    residual: np.ndarray | None = None

    def get(self, shape: tuple) -> np.ndarray:
        if self.residual is None:
            rng = np.random.default_rng(self.seed)
            if self.block == 1 or len(shape) < 2:
                self.residual = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
            else:
                h, w, b = shape[0], shape[1], self.block
                start = rng.uniform(-0.5, 0.5, (-(-h // b), -(-w // b), *shape[2:])).astype(np.float32)
                self.residual = repeat(start, "h w ... -> (h bh) (w bw) ...", bh=b, bw=b)[:h, :w]
        elif self.residual.shape != tuple(shape):
            raise InputError(f"dither state is for frames of shape {self.residual.shape}, got {tuple(shape)}: "
                             "use one state per video.")
        return self.residual


def code_dtype(top: int) -> np.dtype:
    """The integer type that holds codes 0..``top`` (255: uint8, 1023 or 65535: uint16)."""
    return np.dtype(np.uint8 if top <= 255 else np.uint16)


def _dither_codes(codes: np.ndarray, state: DitherState, top: int = 255) -> np.ndarray:
    """Error diffusion over time. codes float [T, ...] in 0..top → uint8/uint16 [T, ...]."""
    out = np.empty(codes.shape, code_dtype(top))
    residual = state.get(codes.shape[1:]).copy()
    level = np.empty_like(residual)
    for t in range(codes.shape[0]):  # in place: this loop is the writer's hot path
        np.add(codes[t], residual, out=residual)  # the level wanted, before rounding
        np.clip(np.rint(residual, out=level), 0, top, out=level)
        np.subtract(residual, level, out=residual)  # in [-0.5, 0.5]: codes are within 0..255
        out[t] = level
    state.residual = residual
    return out


class _TileDither:
    """H.264-friendly temporal dither of one plane: codes float [H, W] → uint8 [H, W].

    Each pixel holds its level until the wanted value moves more than ``0.5 + margin``
    away, so a sub-level change flips no scattered pixels (which the encoder would drop).
    What the held levels miss, averaged over ``tile`` x ``tile`` pixels, goes through
    error diffusion over time; a tile then steps by one level as a whole, which the
    encoder keeps.
    """

    def __init__(self, tile: int, seed: int, margin: float = 0.25, top: int = 255):
        self.tile, self.seed, self.margin, self.top = tile, seed, margin, top
        self.held = self.residual = None

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        (h, w), k = codes.shape, self.tile
        if self.held is None:
            self.held = np.rint(codes)
            self.residual = np.random.default_rng(self.seed).uniform(-0.5, 0.5, (-(-h // k), -(-w // k)))
        np.copyto(self.held, np.rint(codes), where=np.abs(codes - self.held) > 0.5 + self.margin)
        missed = codes - self.held
        if h % k or w % k:
            missed = np.pad(missed, ((0, -h % k), (0, -w % k)), mode="edge")
        tiles = (missed.shape[1] // k, missed.shape[0] // k)
        # Tile means from OpenCV's area resize by a whole factor: faster than a numpy mean over
        # axes (docs/ARCHITECTURE.md, "Video I/O: accuracy and speed").
        wanted = cv2.resize(missed, tiles, interpolation=cv2.INTER_AREA) + self.residual
        steps = np.rint(wanted)
        self.residual = wanted - steps
        # Whole levels: float32 holds them exactly, and the full-size sum moves half the bytes of float64.
        out = self.held + repeat(steps.astype(np.float32), "h w -> (h a) (w c)", a=k, c=k)[:h, :w]
        return np.clip(out, 0, self.top, out=out).astype(code_dtype(self.top))


def add_in_whole_levels(frame: np.ndarray, box: tuple[int, int, int, int], change: np.ndarray,
                        weight: np.ndarray, residual: np.ndarray, tile: int = 8) -> None:
    """``frame += change`` inside ``box`` in whole 8-bit levels, tile by tile; in place.

    For outputs that will be truncated to 8 bit (ComfyUI's core SaveVideo: ``(x*255).byte()``)
    from frames that lie on k/255 levels, as decoded video does: truncation turns a sub-level
    change into nothing when it is positive and a whole level when it is negative, in every
    channel alike. Here each ``tile`` x ``tile`` tile of the frame grid steps by whole levels
    per channel as one (H.264's dead zone drops pixels that step on their own), the tile's
    mean change going through error diffusion over time; a pixel that steps gets
    :data:`WHOLE_LEVEL_MARGIN` on top, so truncation, rounding and dithering all keep it.

    Args:
        frame: [H, W, 3] float32 0..1, edited in place.
        box: (x0, y0, x1, y1) of the region ``change`` covers.
        change: [y1-y0, x1-x0, 3] float, the wanted change in 0..1 units.
        weight: [y1-y0, x1-x0] 0..1; pixels above 0.5 step, carrying the whole tile's change
            (the tile's other pixels stay as they are), so the tile's sum moves as wanted.
        residual: [ceil(H/tile), ceil(W/tile), 3] float32, each tile's rounding residual in
            levels from the previous frame (start it with :class:`DitherState`); updated in place.
    """
    x0, y0, x1, y1 = box
    tx0, ty0 = x0 // tile, y0 // tile
    tx1, ty1 = -(-x1 // tile), -(-y1 // tile)
    th, tw = ty1 - ty0, tx1 - tx0
    padded = np.zeros((th * tile, tw * tile, 3), np.float32)
    steps_on = np.zeros(padded.shape[:2], np.float32)
    oy, ox = y0 - ty0 * tile, x0 - tx0 * tile
    steps_on[oy : oy + y1 - y0, ox : ox + x1 - x0] = weight > 0.5
    padded[oy : oy + y1 - y0, ox : ox + x1 - x0] = change
    # Tile sums from OpenCV's area resize by a whole factor (a mean), as in _TileDither.
    area = np.float32(tile * tile)
    n_on = np.rint(cv2.resize(steps_on, (tw, th), interpolation=cv2.INTER_AREA).reshape(th, tw, 1) * area)
    wanted = cv2.resize(padded, (tw, th), interpolation=cv2.INTER_AREA).reshape(th, tw, 3)
    wanted *= area * np.float32(255) / np.maximum(n_on, np.float32(1))
    tile_residual = residual[ty0:ty1, tx0:tx1]
    wanted += tile_residual
    steps = np.where(n_on > 0, np.rint(wanted), np.float32(0)).astype(np.float32)
    np.copyto(tile_residual, wanted - steps, where=n_on > 0)
    steps[steps != 0] += np.float32(WHOLE_LEVEL_MARGIN)
    steps /= np.float32(255)
    per_pixel = cv2.resize(steps, (tw * tile, th * tile), interpolation=cv2.INTER_NEAREST).reshape(padded.shape)
    per_pixel *= steps_on[..., None]
    h, w = frame.shape[:2]
    target = frame[ty0 * tile : ty1 * tile, tx0 * tile : tx1 * tile]
    target += per_pixel[: min(h, ty1 * tile) - ty0 * tile, : min(w, tx1 * tile) - tx0 * tile]
    np.clip(target, 0.0, 1.0, out=target)


def quantize_codes(frames, bits: int, method: str = "dither", state: DitherState | None = None,
                   seed: int = 0) -> np.ndarray:
    """float [T, ...] in 0..1 → codes of ``bits`` bits (uint8 for 8, else uint16), as
    :func:`quantize_to_uint8` does for 8: the dither carries a sub-level pulse at any depth."""
    if bits == 8:
        return quantize_to_uint8(frames, method, state, seed)
    if method not in QUANTIZE_METHODS:
        raise InputError(f"unknown quantize method {method!r}: choose one of {QUANTIZE_METHODS}.")
    top = (1 << bits) - 1
    codes = np.clip(np.asarray(frames, np.float32), 0.0, 1.0) * np.float32(top)
    if method == "dither":
        return _dither_codes(codes, state if state is not None else DitherState(seed=seed), top)
    return (np.floor(codes) if method == "truncate" else np.rint(codes)).astype(code_dtype(top))


def quantize_to_uint8(frames, method: str = "dither", state: DitherState | None = None, seed: int = 0) -> np.ndarray:
    """float [T, ...] in 0..1 → uint8 [T, ...] (value * 255; out-of-range values are clipped).

    ``"dither"``: temporal error diffusion per pixel (pass one ``DitherState`` for all
    chunks of a video; None starts a fresh one from ``seed``). ``"round"``: nearest
    level. ``"truncate"``: floor, as ComfyUI's SaveVideo does (``(x*255).byte()``).
    """
    if method not in QUANTIZE_METHODS:
        raise InputError(f"unknown quantize method {method!r}: choose one of {QUANTIZE_METHODS}.")
    frames = np.asarray(frames, np.float32)
    if method == "dither":
        codes = np.clip(frames, 0.0, 1.0) * np.float32(255)
        return _dither_codes(codes, state if state is not None else DitherState(seed=seed))
    # Truncate / round: a cache-sized block at a time, like to_float.
    src = np.ascontiguousarray(frames).reshape(-1)
    out = np.empty(src.shape, np.uint8)
    block = np.empty(min(TO_FLOAT_BLOCK, len(src)), np.float32)
    for at in range(0, len(src), TO_FLOAT_BLOCK):
        part = src[at : at + TO_FLOAT_BLOCK]
        codes = block[: len(part)]
        np.clip(part, 0.0, 1.0, out=codes)
        codes *= np.float32(255)
        if method == "round":
            codes += np.float32(0.5)
        np.copyto(out[at : at + len(part)], codes, casting="unsafe")  # codes >= 0: the cast floors
    return out.reshape(frames.shape)


def prequantize_for_truncation(frames, seed: int = 0) -> np.ndarray:
    """float [T, ...] → float32 on (k + 0.5)/255, k the temporally dithered 8-bit level.

    For frames that a saver will truncate (ComfyUI's core SaveVideo: ``(x*255).byte()``):
    truncation of (k + 0.5)/255 gives exactly k (float32 error ~1e-5 of a level), and so
    does rounding, so the dither's sub-level pulse survives instead of being rectified
    (truncation turns a small negative change into a whole level down and a positive one
    into nothing). k = 255 is clamped to 1.0, which truncates to 255.
    """
    k = quantize_to_uint8(frames, method="dither", seed=seed).astype(np.float32)
    return np.minimum((k + np.float32(0.5)) / np.float32(255), np.float32(1.0))
