"""The demo: a synthetic subject with a known pulse, saved as a video, then edited by the
same job as any user file (``pipeline.run_job``). It needs no files, weights or GPU.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputError
from .pipeline import JobRequest, run_job
from .rppg import DEFAULT_METHODS

DEMO_FILES = {"input": "input.mp4", "edited": "edited.mp4", "report": "report.json", "figure": "figure.png"}


def run_demo(out_dir, *, duration_s: float = 12.0, size: tuple[int, int] = (360, 480), skin_tone: int | None = None,
             crf: int = 18, preset: str = "medium", methods=DEFAULT_METHODS, seed: int = 0, overwrite: bool = False,
             quiet: bool = False, log=lambda message: None) -> dict:
    """A synthetic subject (true HR 68) written as ``input.mp4``, edited to 100 bpm as
    ``edited.mp4`` with its report and figure: the job of ``pipeline.run_job`` on a clip that
    needs no files. Returns the edit's report."""
    from .synth import check_skin_tone, synth_subject
    from .video import check_crf, write_video

    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"the demo output {out_dir} is a file: give a folder for the demo outputs.")
    for name in DEMO_FILES.values():
        if (out_dir / name).exists() and not overwrite:
            raise InputError(f"{out_dir / name} already exists: pass --overwrite or choose another --out folder.")
    check_crf(crf)
    check_skin_tone(skin_tone, "--skin-tone")
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        true_hr, target_hr = 68.0, 100.0
        log(f"rendering a synthetic subject ({duration_s:g} s, true HR {true_hr:g} bpm)...")
        clip = synth_subject(duration_s=duration_s, fps=30.0, hr_bpm=true_hr, size=size, seed=seed,
                             skin_tone=skin_tone)
        input_path = write_video(out_dir / DEMO_FILES["input"], clip.frames, clip.fps, crf=crf, overwrite=overwrite,
                                 seed=seed)
        true_mean = clip.hr_bpm
        del clip
        return run_job(JobRequest(
            input=Path(input_path), mode="edit", output=out_dir / DEMO_FILES["edited"], target=target_hr,
            report=out_dir / DEMO_FILES["report"], figure=out_dir / DEMO_FILES["figure"], crf=crf, preset=preset,
            methods=tuple(methods), seed=seed, overwrite=overwrite, quiet=quiet, true_hr_bpm=true_mean))
    except BaseException:
        if created:
            import shutil

            shutil.rmtree(out_dir, ignore_errors=True)  # created by this run: removed again on failure
        else:
            (out_dir / DEMO_FILES["input"]).unlink(missing_ok=True)
        raise
