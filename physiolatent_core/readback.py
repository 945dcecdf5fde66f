"""Pass 4 of the job: the file as saved, read back beside the input.

The report describes what users keep, so the written file is decoded again, chunk by
chunk beside the input: the readers' colour traces of both, PSNR/SSIM, for H.264 the
cost of the same writer on the untouched input (the edit's cost without the codec's),
an HR trajectory's error over time, and HRV and breathing against their targets.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import VideoError

CODEC_REFERENCE_S = 2.0  # seconds of input re-encoded to separate the codec's loss from the edit's
CODEC_REFERENCE_PIXELS = 32_000_000  # ... at most (0.5 s of 1080p): the copies are kept during the verify pass
REFERENCE_CHUNK_PIXELS = 8_000_000  # frames re-encoded at once (8 of 640x480, 3 of 1080p, 1 of 4K: float32 copies)


def band_for(*hr_values) -> tuple[float, float]:
    """HR band for verification: the default (40-180) widened to cover the HRs involved."""
    from .rppg.hr import DEFAULT_BAND_BPM

    values = [float(v) for v in hr_values if v is not None]
    low = min([DEFAULT_BAND_BPM[0]] + [v - 15 for v in values])
    high = max([DEFAULT_BAND_BPM[1]] + [v + 20 for v in values])
    return max(low, 25.0), high


def read_back(written_video: str, source, masker, kind: str, request, n_frames: int,
               traces_before, aim_constant, band, parts=None):
    """Pass 4: decode the saved file beside the input (``masker``: a fresh masker of the
    input giving one skin mask per face, ``faces.FacesMasker``; ``traces_before`` and
    ``aim_constant``: one per face; ``parts(start, length)``: per face, the slice of a chunk
    where it is present, ``faces.FacesEditor.parts``; None: every frame). Returns (colour traces of the saved file per face,
    verification dict per face, each with the whole frames' PSNR/SSIM, codec reference or
    None)."""
    from .codec import PARALLEL_MAX_PIXELS
    from .rppg import ColourTraces, read_traces
    from .verify import FidelityMeter, verify_traces
    from .video import iter_frames, prefetch, quantize_to_uint8

    fps = source.info.fps
    meter, traces_after = FidelityMeter(n_frames), []
    head_frames = min(n_frames, int(round(CODEC_REFERENCE_S * fps)),
                      max(8, CODEC_REFERENCE_PIXELS // max(source.info.width * source.info.height, 1)))
    head_in = head_saved = None  # the first frames of both clips, 8-bit, for the codec reference
    # The codec reference runs in a worker thread beside the rest of this pass, once both
    # heads are in; not for frames above codec.PARALLEL_MAX_PIXELS, where a second x264
    # instance during the pass would raise the peak memory.
    beside = source.info.width * source.info.height <= PARALLEL_MAX_PIXELS
    codec_reference = None

    def start_reference():
        return pool.submit(codec_reference_of, head_in, head_saved, fps, request.crf, request.seed, request.preset)

    saved_chunks = prefetch(iter_frames(Path(written_video), chunk_frames=source.chunk_frames, upright=True))
    seen = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="codec-reference") as pool:
        for original in source.chunks("verifying"):
            # Both files are decoded in chunks of the same length, so the chunks line up.
            saved = next(saved_chunks, None)
            if saved is None or len(saved) != len(original):
                raise VideoError(f"{written_video} decodes to fewer frames than the {n_frames} written: it is damaged.")
            saved = saved[:, : original.shape[1], : original.shape[2]]  # H.264 pads odd sizes
            masks = masker(original)
            where = parts(seen, len(original)) if parts is not None else [slice(None)] * len(masks)
            traces_after.append([read_traces(saved[part], mask[part], request.methods)
                                 if len(mask[part]) else None for part, mask in zip(where, masks)])
            meter.update(saved, original)
            if kind == "h264" and seen < head_frames:
                # 8-bit copies: both clips come from 8-bit video, and 2 s of 1080p float32 is 1.5 GB.
                if head_in is None:
                    head_in, head_saved = (np.empty((head_frames, *original.shape[1:]), np.uint8) for _ in range(2))
                at = slice(seen, min(seen + len(original), head_frames))
                head_in[at] = quantize_to_uint8(original[: at.stop - seen], "round")
                head_saved[at] = quantize_to_uint8(saved[: at.stop - seen], "round")
                if at.stop == head_frames and beside:
                    codec_reference = start_reference()
            seen += len(original)
        traces_after = [ColourTraces.join([t for t in face if t is not None]) for face in zip(*traces_after)]
        if next(saved_chunks, None) is not None:
            raise VideoError(f"{written_video} decodes to more frames than the {n_frames} written.")
        if head_in is not None and codec_reference is None:
            codec_reference = start_reference()

    checked = []
    for after, before, aim in zip(traces_after, traces_before, aim_constant):
        checked.append(verify_traces(after, fps, methods=list(request.methods), traces_before=before,
                                     target_hr_bpm=aim, band_bpm=band))
        checked[-1].update(psnr_db=meter.psnr_db, ssim=meter.ssim, ssim_frames=len(meter.ssim_at))
    return traces_after, checked, None if codec_reference is None else codec_reference.result()


def codec_reference_of(frames, saved, fps: float, crf: int, seed: int, preset: str = "medium") -> dict:
    """Fidelity of a lossy save against the input through the same writer (dither +
    libx264 at this crf): the edit's cost without the codec's own loss. Measured on the
    first ``CODEC_REFERENCE_S`` seconds (``frames``, ``saved``: uint8 [t,H,W,3]), so long
    clips need no second full encode; chunk by chunk, so 1080p stays small."""
    from .verify import FidelityMeter
    from .video import encode_decode_chunks, to_float

    n = len(frames)
    step = int(np.clip(REFERENCE_CHUNK_PIXELS // max(frames.shape[1] * frames.shape[2], 1), 1, 8))  # 1 frame of 4K
    edit_vs_reference, reference_vs_input = FidelityMeter(n), FidelityMeter(n)
    chunks = (to_float(frames[s : s + step]) for s in range(0, n, step))
    encoded_chunks = encode_decode_chunks(chunks, fps, crf=crf, quantize="dither", preset=preset, seed=seed,
                                          chunk_frames=step)
    for i, encoded in enumerate(encoded_chunks):
        at = slice(step * i, step * i + len(encoded))
        edit_vs_reference.update(to_float(saved[at]), encoded)
        reference_vs_input.update(encoded, to_float(frames[at]))
    return {
        "description": f"first {n} frames of the input encoded with the same settings "
                       f"(H.264 crf {crf}, dithered)",
        "psnr_db": edit_vs_reference.psnr_db,
        "ssim": edit_vs_reference.ssim,
        "codec_only_psnr_db": reference_vs_input.psnr_db,
    }


def vitals_check(request, traces_after, traces_before, n_frames: int, fps: float, band) -> dict:
    """HRV and breathing of the saved file against the request's targets (``verify.verify_vitals``)."""
    from .pulse import hr_curve
    from .verify import verify_vitals

    resp = request.resp_rate_bpm
    return verify_vitals(traces_after, fps, traces_before=traces_before, rmssd_target_ms=request.hrv_rmssd_ms,
                         resp_target_bpm=None if resp is None else float(np.mean(hr_curve(resp, n_frames, fps))),
                         band_bpm=band)


def trajectory_check(rgb, fps, aim_curve, band) -> dict:
    """For an HR trajectory: POS HR over sliding windows of the colour trace ``rgb [T,3]``
    against the target curve."""
    from .rppg import ESTIMATORS, hr_over_time

    duration = len(rgb) / fps
    window_s = min(8.0, duration / 2)
    pulse = ESTIMATORS["pos"](rgb, fps)
    times, hrs = hr_over_time(pulse, fps, window_s=window_s, step_s=1.0, band_bpm=band)
    times, hrs = np.asarray(times, float), np.asarray(hrs, float)
    want = np.interp(times * fps, np.arange(len(aim_curve)), aim_curve)
    ok = np.isfinite(hrs)
    return {
        "method": "pos", "window_s": window_s, "times_s": times, "hr_bpm": hrs, "target_bpm": want,
        "mae_bpm": float(np.mean(np.abs(hrs[ok] - want[ok]))) if ok.any() else None,
    }
