"""The restore job: the original frames back from an edited or removed file and its key.

``pipeline.run_job`` with ``key_out`` writes the key; :func:`run_restore` reads it
(``keys.restore_chunks``, streamed) and writes the original atomically, or refuses a file
or key that does not fit with ``InputError`` and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .pipeline import progress
from .verify import jsonable


@dataclass(frozen=True)
class RestoreRequest:
    """Undo an edit or removal made with a key (``JobRequest.key_out``): ``input`` is the
    edited file exactly as written, ``key`` its key, ``output`` where the original goes
    (.mkv or a PNG folder: the original's frames bit-exactly; .mp4: through H.264 at ``crf``)."""

    input: Path
    key: Path
    output: Path
    crf: int = 18
    preset: str = "medium"
    overwrite: bool = False
    verify: bool = True  # decode the restored file and compare it with the original's frames
    quiet: bool = False


def run_restore(request: RestoreRequest) -> dict:
    """Restore the original frames (``keys.restore_chunks``, streamed) and write them
    atomically: a file or key that does not fit raises ``InputError`` and writes nothing.
    Returns a summary: frames, key header, and with ``verify`` whether the restored file
    decodes to the original's frames exactly and its PSNR/SSIM against them."""
    from .keys import read_header, restore_chunks
    from .verify import FidelityMeter
    from .video import Behind, VideoWriter, check_crf, check_output_path, iter_frames, output_kind, to_float

    source, key_path = Path(request.input).expanduser(), Path(request.key).expanduser()
    check_crf(request.crf)
    kind = output_kind(str(request.output))
    output = check_output_path(Path(request.output).expanduser(), overwrite=request.overwrite, input_path=source)
    if output.resolve() == key_path.resolve():
        raise InputError(f"the restored video would overwrite its key {key_path}: choose another output path.")
    header = read_header(key_path)
    fps = float(header.get("fps") or 0) or None
    t0 = time.perf_counter()
    written = None
    try:
        with VideoWriter(str(output) + ("/" if kind == "png" else ""), fps, crf=request.crf, preset=request.preset,
                         overwrite=request.overwrite, input_path=source, upright=True) as writer, \
                Behind(writer.write) as write:  # upright frames, written back as stored under the kept rotation
            for original in progress(restore_chunks(source, key_path), request.quiet, desc="restoring", unit="chunk"):
                write(original)
        written = writer.path
        frames = writer.frames_written
        result = {"input": str(source), "key": str(key_path), "output": str(written), "output_codec": kind,
                  "frames": frames, "key_header": header, "timings_s": {"restore": round(time.perf_counter() - t0, 3)}}
        if request.verify:
            t1 = time.perf_counter()
            meter, exact = FidelityMeter(frames), True
            restored = iter_frames(written, chunk_frames=int(header["chunk_frames"]), raw=True, upright=True)
            for original in restore_chunks(source, key_path):
                saved = next(restored)[:, : original.shape[1], : original.shape[2]]
                exact = exact and np.array_equal(saved, original)
                meter.update(to_float(saved), to_float(original))
            result.update(bit_exact=bool(exact), psnr_db=meter.psnr_db, ssim=meter.ssim)
            result["timings_s"]["verify"] = round(time.perf_counter() - t1, 3)
        return jsonable(result)
    except BaseException:
        if written is not None and Path(written).exists():
            import shutil

            shutil.rmtree(written) if Path(written).is_dir() else Path(written).unlink()
        raise
