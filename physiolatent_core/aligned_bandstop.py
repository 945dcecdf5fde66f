"""Pulse-band colour removal at every spatial scale, in a frame that follows the face.

The pooled editor (``editor.PulseEditor``) removes the pulse that a 6x6 grid of skin
colour shows: what readers that average the skin see. A reader that looks at the face
pixel by pixel (a 3D CNN on a 72-128 px face crop) can also use the pulse's fine spatial
structure, its other colour directions, and whatever pooled removal leaves between the
grid's cells. This stage takes all of those out:

1. **Follow the skin.** Every frame, the region the skin mask can cover (``face.mask_region``
   of the tracked box) is resampled, anti-aliased and at sub-pixel precision, onto a fixed
   grid of ``cells_across`` columns (aspect kept): grid pixel (i, j) is the same spot of
   the face in every frame, so head motion does not move the skin under it.
2. **Band-stop every grid pixel and colour channel** over time: the log colour's
   component in the heart-rate band (zero-phase Butterworth band-pass, 0.6-3.3 Hz by
   default) is the change to undo, in whatever colour direction and at whatever spatial
   scale down to one grid pixel.
3. **Leave content alone.** Pulse colour changes are well under 1 % of a skin pixel;
   speech, blinks and motion across texture change pixels by more. Each grid pixel's
   band component is gated by its size (``1 / (1 + (|x| / gate)^4)``: full removal well
   under ``gate``, none well over it) and by the aligned skin weight, so what is removed
   is small, skin and in the band. The strength is the gate; a fidelity floor lowers it
   until the predicted PSNR of the whole frames holds.
4. **Put it back.** The correction of each frame is warped back from the grid to the
   frame and applied as a gain inside the mask: ``out = frame * (1 + w * (exp(-c) - 1))``
   with ``w`` the mask's apply weight (as the pooled editor applies its own). The head is
   steadied first (below), and the colour band is measured on the steadied grid, so the
   two never undo each other.
5. **Steady the head.** The face's frame-to-frame shift (phase correlation refined by
   Lucas-Kanade, on the tracked box) summed into a path; its pulse-band part, gated by
   size like the colour (``MOTION_GATE_PX_FOR``: a ballistocardiographic bob is a fraction
   of a pixel, a nod is not), is undone by moving the head region back (a smooth weight
   that fades out around the mask region).

The stored grid is float16 log colour (the 8-bit source quantises each pixel to ~0.4 %,
far coarser than float16's 0.05 %) and the aligned mask weight: ~16 KB a frame, 280 MB for
10 minutes at 30 fps. ``plan`` works on float32 copies of it (the colour, the steadied grid,
its band and envelope, the correction): about 120 KB a frame while it runs, 2 GB for 10
minutes, the largest memory cost of a long ``strong``/``max`` removal.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import InputError
from .face.mask import mask_region

__all__ = ["AlignedBandStop", "GATE_FOR", "aligned_grid_shape"]

#: Pulse-band gate per strength (fraction of a skin pixel's colour): band changes well under it
#: are removed, well over it are left as content (speech, blinks, motion over texture).
GATE_FOR = {"strong": 0.006, "max": 0.02}
#: Pulse-band head motion gate per strength (frame pixels): the ballistocardiographic motion of a
#: head is a fraction of a pixel; a nod or speech moves it by more and is left alone.
MOTION_GATE_PX_FOR = {"strong": 0.25, "max": 0.6}
BAND_HZ = (0.55, 3.5)  # 33-210 bpm: every heart rate the readers search (40-180), with the filter's edges outside it
_CORRELATION_PX = 160  # the face's width where its shift is measured (sub-pixel precision is plenty)
_FADE_BOXES = 0.3  # the stabilised region fades out over this fraction of the box around the mask region
ENVELOPE_S = 1.0  # the gate's window: about one beat
_FLOOR_STEPS = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1)  # gate multipliers tried under a fidelity floor


def aligned_grid_shape(cells_across: int) -> tuple[int, int]:
    """(rows, cols) of the aligned grid: the mask region's aspect (1.16 x 1.42 box units)."""
    region = mask_region(np.array([0.0, 0.0, 1.0, 1.0]))
    aspect = (region[3] - region[1]) / (region[2] - region[0])
    return int(round(cells_across * aspect)), int(cells_across)


def _grid_affine(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[2,3] affine from grid pixel (col, row) to frame pixel (x, y) for the tracked box
    ``box`` (x0, y0, x1, y1); pixel centres at +0.5 on both sides."""
    rows, cols = shape
    rx0, ry0, rx1, ry1 = mask_region(box)
    sx, sy = (rx1 - rx0) / cols, (ry1 - ry0) / rows
    return np.array([[sx, 0.0, rx0 + 0.5 * sx - 0.5], [0.0, sy, ry0 + 0.5 * sy - 0.5]])


def _window(box: np.ndarray, frame_shape, pad: int) -> tuple[int, int, int, int]:
    """Integer frame window holding the mask region of ``box`` plus ``pad`` pixels."""
    h, w = frame_shape[:2]
    rx0, ry0, rx1, ry1 = mask_region(box)
    return (max(0, math.floor(rx0) - pad), max(0, math.floor(ry0) - pad),
            min(w, math.ceil(rx1) + pad), min(h, math.ceil(ry1) + pad))


class AlignedBandStop:
    """Streaming stage (``editors.ChunkEditor``): ``observe`` every chunk, ``plan``, ``apply``.

    Args:
        fps: frame rate.
        track: the clip's ``face.FaceTrack`` (its smoothed boxes place the grid).
        strength: ``"strong"`` or ``"max"`` (the colour gate ``GATE_FOR`` and the motion gate
            ``MOTION_GATE_PX_FOR``), or a colour gate as a number (the motion gate scales with it).
        cells_across: grid columns across the mask region (rows follow its aspect).
        band_hz: the band removed.
        min_psnr_db: fidelity floor on whole frames (None: none); the gate is lowered in
            steps until the predicted PSNR holds (``info["gate"]``).
    """

    chunk_frames: int | None = None

    def __init__(self, fps: float, track, strength="max", cells_across: int = 40, band_hz=BAND_HZ,
                 min_psnr_db: float | None = None):
        if isinstance(strength, str):
            if strength not in GATE_FOR:
                raise InputError(f"strength must be one of {sorted(GATE_FOR)} or a number, got {strength!r}.")
            gate = GATE_FOR[strength]
        else:
            gate = float(strength)
            if not 0 < gate <= 0.1:
                raise InputError(f"a band-stop gate of {gate} is outside (0, 0.1]: use e.g. 0.006-0.02.")
        self.fps = float(fps)
        self.track = track
        self.gate = gate
        self.motion_gate_px = MOTION_GATE_PX_FOR.get(strength, MOTION_GATE_PX_FOR["max"]) if isinstance(
            strength, str) else MOTION_GATE_PX_FOR["max"] * gate / GATE_FOR["max"]
        self.shape = aligned_grid_shape(cells_across)
        self.band_hz = (band_hz[0], min(band_hz[1], 0.45 * self.fps))
        self.min_psnr_db = min_psnr_db
        self._log_rgb: list[np.ndarray] = []  # per chunk [t, rows, cols, 3] float16
        self._weight: list[np.ndarray] = []  # per chunk [t, rows, cols] float16: aligned apply weight
        self._pixels: list[np.ndarray] = []  # per chunk [t]: frame pixels one grid pixel covers
        self._step_px: list[np.ndarray] = []  # per chunk [t, 2]: the face's shift (x, y) since the frame before
        self._texture: list[np.ndarray] = []  # per chunk [t]: squared grey gradient summed over the box
        self._previous_grey: np.ndarray | None = None
        self._grey_buffer: np.ndarray | None = None  # the buffer the next frame's grey goes in  # the last observed frame, grey (float32)
        self._shift: np.ndarray | None = None  # [T, 2] planned stabilising shift, frame pixels
        self._frame_pixels = 0
        self._next = 0
        self._correction: np.ndarray | None = None  # [T, rows, cols, 3] float16, log units
        self._info: dict = {}

    # ------------------------------------------------------------------ observe
    def _sample(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``image`` [H,W(,C)] resampled onto the grid at ``box``: area-averaged to about two
        samples per grid pixel (anti-aliasing), then bilinear at the grid's sub-pixel places."""
        rows, cols = self.shape
        m = _grid_affine(box, self.shape)
        x0, y0, x1, y1 = _window(box, image.shape, pad=int(2 + 2 * max(m[0, 0], m[1, 1])))
        crop = image[y0:y1, x0:x1]
        size = (max(2, round((x1 - x0) * 2.0 / m[0, 0])), max(2, round((y1 - y0) * 2.0 / m[1, 1])))
        if size[0] < x1 - x0:
            crop = cv2.resize(np.ascontiguousarray(crop, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
        ax, ay = crop.shape[1] / (x1 - x0), crop.shape[0] / (y1 - y0)
        # Frame pixel x is crop pixel (x - x0 + 0.5) * ax - 0.5 (pixel centres at +0.5).
        to_crop = np.array([[ax * m[0, 0], 0.0, ax * (m[0, 2] - x0 + 0.5) - 0.5],
                            [0.0, ay * m[1, 1], ay * (m[1, 2] - y0 + 0.5) - 0.5]])
        return cv2.warpAffine(np.ascontiguousarray(crop, dtype=np.float32), to_crop, (cols, rows),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    @staticmethod
    def _gradient_energy(grey: np.ndarray, box: np.ndarray) -> float:
        """Sum over the tracked box of the squared grey gradient (per pixel moved): what moving
        the head by one pixel costs in squared error, about."""
        h, w = grey.shape
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        if x1 - x0 < 3 or y1 - y0 < 3:
            return 0.0
        crop = grey[y0:y1, x0:x1]
        gx, gy = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=1), cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=1)
        return 0.25 * float(cv2.sumElems(gx * gx + gy * gy)[0])  # ksize=1 Sobel: central difference x2

    @staticmethod
    def _face_step(previous: np.ndarray | None, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The face's sub-pixel shift (x, y) from ``previous`` to ``grey`` [H,W], measured on the
        same window (the tracked box) of both frames: phase correlation, refined by Lucas-Kanade."""
        if previous is None:
            return np.zeros(2)
        h, w = grey.shape
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return np.zeros(2)
        a, b = previous[y0:y1, x0:x1], grey[y0:y1, x0:x1]
        scale = min(1.0, _CORRELATION_PX / (x1 - x0))  # a large face: correlate a smaller copy
        if scale < 1.0:
            size = (max(16, round((x1 - x0) * scale)), max(16, round((y1 - y0) * scale)))
            a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (a, b))
        # Blurred: the Lucas-Kanade steps below are linear in the shift only where the image is smooth.
        a, b = (cv2.GaussianBlur(np.ascontiguousarray(x), (0, 0), 1.5) for x in (a, b))
        window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
        # (Copies: OpenCV windows its inputs in place when their size needs no padding.)
        (dx, dy), response = cv2.phaseCorrelate(a.copy(), b.copy(), window)
        if response < 0.1 or max(abs(dx), abs(dy)) > 8:
            return np.zeros(2)  # no reliable match (a cut, a blink over the whole box): no step
        # Phase correlation's sub-pixel peak is biased by up to a few tenths of a pixel, as large as
        # the motion wanted here; three Lucas-Kanade steps on the shifted copy make it exact.
        d = np.array([dx, dy])
        for _ in range(3):
            moved = cv2.warpAffine(a, np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]]), (a.shape[1], a.shape[0]),
                                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            gx = cv2.Sobel(moved, cv2.CV_32F, 1, 0, ksize=1) * 0.5
            gy = cv2.Sobel(moved, cv2.CV_32F, 0, 1, ksize=1) * 0.5
            r = (b - moved) * window
            normal = np.array([[np.sum(gx * gx * window), np.sum(gx * gy * window)],
                               [np.sum(gx * gy * window), np.sum(gy * gy * window)]])
            if np.linalg.cond(normal) > 1e6:
                break
            d = d - np.linalg.solve(normal, [np.sum(gx * r), np.sum(gy * r)])
        return np.array([d[0] * (x1 - x0) / a.shape[1], d[1] * (y1 - y0) / a.shape[0]])

    def observe(self, frames: np.ndarray, face_mask: np.ndarray) -> None:
        """frames [t,H,W,3] float 0..1, face_mask [t,H,W]; chunks in clip order."""
        boxes = self.track.boxes[self._next:self._next + len(frames)]
        if len(boxes) != len(frames):
            raise InputError(f"the face track has {len(self.track.boxes)} frames but frames up to "
                             f"{self._next + len(frames)} were observed: track the same clip.")
        rows, cols = self.shape
        log_rgb = np.empty((len(frames), rows, cols, 3), np.float16)
        weight = np.empty((len(frames), rows, cols), np.float16)
        pixels = np.empty(len(frames))
        steps = np.zeros((len(frames), 2))
        texture = np.zeros(len(frames))
        for i, (frame, mask, box) in enumerate(zip(frames, face_mask, boxes)):
            rgb = self._sample(frame, box)
            log_rgb[i] = np.log(np.maximum(rgb, 1.0 / 255.0))
            weight[i] = np.minimum(2.0 * self._sample(mask, box), 1.0)
            m = _grid_affine(box, self.shape)
            pixels[i] = m[0, 0] * m[1, 1]
            # Grey around the face only (the box, and room for the next frame's box to move).
            h, w = frame.shape[:2]
            side = box[2] - box[0]
            wx0, wy0 = max(0, int(box[0] - 0.2 * side)), max(0, int(box[1] - 0.2 * side))
            wx1, wy1 = min(w, int(box[2] + 0.2 * side) + 1), min(h, int(box[3] + 0.2 * side) + 1)
            if self._grey_buffer is None or self._grey_buffer.shape != (h, w):
                self._grey_buffer = np.zeros((h, w), np.float32)
            grey, self._grey_buffer = self._grey_buffer, self._previous_grey  # two frames, reused in turn
            grey[wy0:wy1, wx0:wx1] = cv2.cvtColor(np.ascontiguousarray(frame[wy0:wy1, wx0:wx1], dtype=np.float32),
                                                  cv2.COLOR_RGB2GRAY)
            steps[i] = self._face_step(self._previous_grey, grey, box)
            texture[i] = self._gradient_energy(grey, box)
            self._previous_grey = grey
        self._log_rgb.append(log_rgb)
        self._weight.append(weight)
        self._pixels.append(pixels)
        self._step_px.append(steps)
        self._texture.append(texture)
        self._frame_pixels = frames.shape[1] * frames.shape[2]
        self._next += len(frames)

    # ------------------------------------------------------------------ plan
    def plan(self, track=None) -> dict:
        """Band-pass every grid pixel, gate it, fit the fidelity floor. Returns info."""
        from scipy import ndimage, signal  # noqa: PLC0415 (slow import: first use only)

        if not self._log_rgb:
            raise InputError("no frames were observed: the clip is empty.")
        log_rgb = np.concatenate(self._log_rgb)
        weight = np.concatenate(self._weight).astype(np.float32)
        pixels = np.concatenate(self._pixels)
        self._log_rgb, self._weight, self._previous_grey, self._grey_buffer = [], [], None, None
        n, rows, cols, _ = log_rgb.shape
        sos = signal.butter(4, self.band_hz, btype="bandpass", fs=self.fps, output="sos")
        padlen = min(n - 1, int(3 * self.fps))
        sigma = ENVELOPE_S * self.fps / 2.0
        # What a gain of exp(-c) costs per frame: the skin colour times c, over the pixels each
        # grid pixel covers (the 8-bit output's own rounding aside).
        colour = np.exp(log_rgb.astype(np.float32))
        steps = np.array([_grid_affine(box, self.shape)[[0, 1], [0, 1]] for box in self.track.boxes[:n]])  # [T,2]

        # The face's path, summed from its frame-to-frame shifts: its pulse-band part is the head's
        # ballistocardiographic motion, which readers that track the face see as a pulse.
        path = np.cumsum(np.concatenate(self._step_px), axis=0)
        path_band = signal.sosfiltfilt(sos, path - path.mean(axis=0), axis=0, padlen=padlen)
        motion_envelope = np.sqrt(ndimage.gaussian_filter1d((path_band**2).sum(axis=1), sigma, mode="nearest"))
        texture = np.concatenate(self._texture)

        def stabilising_shift(gate_px: float) -> np.ndarray:
            return -path_band / (1.0 + (motion_envelope / gate_px) ** 4)[:, None]

        def colour_band(shift: np.ndarray):
            """The grid's pulse-band log colour [T,rows,cols,3] once the head is steadied by
            ``shift`` (frame pixels; the grid is moved by it, in grid pixels), and its envelope
            (RMS over ENVELOPE_S): the gate looks at envelopes, not single samples, so a steady
            pulse is removed whole and a burst of speech or a blink is left whole."""
            steadied = np.empty((n, rows, cols, 3), np.float32)
            for t in range(n):
                dx, dy = shift[t] / steps[t]
                grid = log_rgb[t].astype(np.float32)
                if abs(dx) < 1e-4 and abs(dy) < 1e-4:
                    steadied[t] = grid
                    continue
                # The steadied frame shows the input at p - shift: so does its grid.
                steadied[t] = cv2.warpAffine(grid, np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]]), (cols, rows),
                                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                             borderMode=cv2.BORDER_REPLICATE)
            flat = steadied.reshape(n, -1)
            flat -= flat.mean(axis=0)
            band = signal.sosfiltfilt(sos, flat, axis=0, padlen=padlen).astype(np.float32).reshape(steadied.shape)
            return band, np.sqrt(ndimage.gaussian_filter1d(band**2, sigma, axis=0, mode="nearest"))

        def psnr_db(change: np.ndarray, shift: np.ndarray) -> float:
            squared = np.einsum("t,tijc->", pixels, (change * colour) ** 2)
            squared += 3.0 * np.sum(texture * (shift**2).sum(axis=1))  # a small shift costs |grad . shift|^2
            mse = squared / (n * max(self._frame_pixels, 1) * 3)
            return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")

        for scale in _FLOOR_STEPS if self.min_psnr_db is not None else (1.0,):
            shift = stabilising_shift(self.motion_gate_px * scale)
            band, envelope = colour_band(shift)
            change = band / (1.0 + (envelope / (self.gate * scale)) ** 4)
            psnr = psnr_db(change, shift)
            if self.min_psnr_db is None or psnr >= self.min_psnr_db:
                break
        self._correction = change.astype(np.float16)
        self._shift = shift
        on_skin = weight > 0.5
        removed = np.sqrt(np.mean(change[on_skin] ** 2)) if on_skin.any() else 0.0
        in_band = np.sqrt(np.mean(band[on_skin] ** 2)) if on_skin.any() else 0.0
        self._info = {
            "grid": [rows, cols],
            "band_hz": [float(b) for b in self.band_hz],
            "gate": self.gate * scale,
            "gate_requested": self.gate,
            "removed_rms": float(removed),
            "band_rms": float(in_band),
            "predicted_psnr_db": psnr,
            "motion_gate_px": self.motion_gate_px,
            "motion_band_rms_px": float(np.sqrt(np.mean((path_band**2).sum(axis=1)))),
            "motion_gate_px_used": self.motion_gate_px * scale,
            "stabilised_rms_px": float(np.sqrt(np.mean((shift**2).sum(axis=1)))),
        }
        return dict(self._info)

    # ------------------------------------------------------------------ apply
    def apply(self, frames: np.ndarray, face_mask: np.ndarray, start: int, inplace: bool = False) -> np.ndarray:
        """Remove the planned band from frames ``start .. start+t``; float32 [t,H,W,3]."""
        if self._correction is None:
            raise RuntimeError("call plan() after observing every chunk, before apply().")
        if start + len(frames) > len(self._correction):
            raise InputError(f"apply() got frames {start}..{start + len(frames)} but only "
                             f"{len(self._correction)} were observed: observe and apply the same clip.")
        if inplace and frames.dtype != np.float32:
            raise InputError("inplace editing needs float32 frames.")
        out = frames if inplace else np.array(frames, dtype=np.float32, copy=True)
        for i in range(len(frames)):
            t = start + i
            box = self.track.boxes[t]
            x0, y0, x1, y1 = _window(box, out.shape[1:], pad=1)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            m = _grid_affine(box, self.shape) - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
            self._stabilise(out[i], box, self._shift[t])
            # The gain's change exp(-c) - 1 on the grid; grid pixel (c, r) sits at frame m @ (c, r, 1):
            # warp it there (forward map), weigh it by the mask's apply weight.
            grid = np.expm1(-self._correction[t].astype(np.float32))
            change = cv2.warpAffine(grid, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            weight = np.minimum(2.0 * face_mask[i, y0:y1, x0:x1], 1.0)
            change *= weight[..., None]
            change += 1.0
            region = out[i, y0:y1, x0:x1]
            np.multiply(region, change, out=region)
            np.clip(region, 0.0, 1.0, out=region)
        return out

    def _stabilise(self, frame: np.ndarray, box: np.ndarray, shift: np.ndarray) -> None:
        """Move the head region of ``frame`` [H,W,3] by ``shift`` (x, y) pixels, in place, with a
        weight that is 1 over the mask region and fades to 0 around it (``_FADE_BOXES``), so the
        surroundings stay where they are."""
        if not np.any(np.abs(shift) > 0.01):
            return  # under 1/100 pixel: nothing any reader or codec keeps
        fade = _FADE_BOXES * (box[2] - box[0])
        x0, y0, x1, y1 = _window(box, frame.shape, pad=int(fade) + 2)
        rx0, ry0, rx1, ry1 = mask_region(box)
        xs, ys = np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32)
        # Distance outside the mask region, in units of the fade width.
        wx = np.clip(1.0 - np.maximum(np.maximum(rx0 - xs, xs - rx1), 0.0) / fade, 0.0, 1.0)
        wy = np.clip(1.0 - np.maximum(np.maximum(ry0 - ys, ys - ry1), 0.0) / fade, 0.0, 1.0)
        weight = np.outer(wy, wx)
        weight = weight * weight * (3.0 - 2.0 * weight)  # smoothstep: no kink where the fade starts
        # Output pixel p shows the input at p - shift * weight.
        map_x = (xs[None, :] - np.float32(shift[0]) * weight).astype(np.float32) - x0
        map_y = (ys[:, None] - np.float32(shift[1]) * weight).astype(np.float32) - y0
        region = frame[y0:y1, x0:x1]
        region[:] = cv2.remap(np.ascontiguousarray(region), map_x, map_y, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    def pooled_correction(self, boxes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
        """The planned colour correction averaged over the cells of another editor's grid:
        ``boxes`` [T,4] integer (x0, y0, x1, y1) frame boxes cut into ``grid`` (rows, cols)
        cells -> [T, rows, cols, 3] log units (0 where a box is empty). The pooled editor
        uses it to see the colours this stage leaves, and removes only what remains."""
        if self._correction is None:
            raise RuntimeError("call plan() first.")
        gh, gw = grid
        out = np.zeros((len(boxes), gh, gw, 3), np.float32)
        rows, cols = self.shape
        for t, (x0, y0, x1, y1) in enumerate(boxes):
            if x1 - x0 < gw or y1 - y0 < gh:
                continue
            m = _grid_affine(self.track.boxes[t], self.shape)
            # Frame pixel edges x0, x1 -> grid pixel edges (grid pixel c spans m02 - sx/2 + 0.5 + c sx).
            c0, c1 = ((np.array([x0, x1]) - 0.5 - m[0, 2]) / m[0, 0] + 0.5)
            r0, r1 = ((np.array([y0, y1]) - 0.5 - m[1, 2]) / m[1, 1] + 0.5)
            c0, c1 = int(np.clip(round(c0), 0, cols - 1)), int(np.clip(round(c1), 1, cols))
            r0, r1 = int(np.clip(round(r0), 0, rows - 1)), int(np.clip(round(r1), 1, rows))
            if c1 - c0 < 1 or r1 - r0 < 1:
                continue
            part = self._correction[t, r0:r1, c0:c1].astype(np.float32)
            out[t] = cv2.resize(part, (gw, gh), interpolation=cv2.INTER_AREA if part.shape[0] >= gh else
                                cv2.INTER_LINEAR)
        return out

    @property
    def info(self) -> dict:
        return dict(self._info)
