"""The run: :class:`BatchRequest`, :func:`run_batch` (list the clips, assign targets,
hand the clips still to do to an engine, record each as it finishes) and the run summary
(``summary.json``) with its plot (``summary.png``)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..pipeline import NetworkFiles
from ..rppg import DEFAULT_METHODS
from .clip import HIT_TOLERANCE_BPM, ClipTask
from .engines import ENGINES, make_engine
from .layouts import LAYOUTS, _write_labels, detect_layout, list_clips
from .policies import assign_targets, parse_policy
from .rundir import RUN_DIR, RunDir, clip_key

# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class BatchRequest:
    """One batch run. ``target``: a policy (:func:`parse_policy`); ``remove``: remove the
    pulse instead (``decoy``: show this HR instead of noise). ``layout`` None: detected
    from the folder (:func:`detect_layout`). ``workers`` None: one per core."""

    root: Path
    out_root: Path
    target: str | None = None
    remove: bool = False
    decoy: str | float | None = None
    layout: str | None = None
    engine: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    gpus_per_clip: float = 0.0
    retries: int = 2
    methods: tuple[str, ...] = DEFAULT_METHODS
    crf: int = 18
    preset: str = "medium"
    robust_to: str | None = None
    amplitude: float | None = None
    min_psnr_db: float | None = None
    seed: int = 0
    verify: bool = True
    figures: bool = False
    network: NetworkFiles | None = None
    quiet: bool = False
    hrv_rmssd_ms: float | None = None  # the injected pulse's RMSSD (training-free edits, or removal with a decoy)
    resp_rate: str | float | None = None  # its breathing rate, breaths/min, or a trajectory
    bit_depth: int = 8  # of each output video (8, 10 or 16, as for edit)
    strength: str | None = None  # removal strength (removal.py; default max)

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root).expanduser())
        object.__setattr__(self, "out_root", Path(self.out_root).expanduser())
        if self.engine not in ENGINES:
            raise InputError(f"engine must be one of {ENGINES}; got {self.engine!r}.")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS} (or None to detect it); got {self.layout!r}.")
        if self.remove and self.target is not None:
            raise InputError("give either a target heart rate (--target-hr) or --remove, not both.")
        if self.decoy is not None and not self.remove:
            raise InputError("a decoy HR goes with --remove (it replaces the removed pulse).")
        if (self.hrv_rmssd_ms is not None or self.resp_rate is not None) and (self.remove and self.decoy is None):
            raise InputError("HRV and breathing targets shape an injected pulse: give them with --target-hr, or "
                             "with --remove and a --decoy-hr.")
        if self.strength is not None and not self.remove:
            raise InputError("--strength sets what removal takes out: it goes with --remove.")
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1; got {self.workers}.")
        if self.retries < 0:
            raise InputError(f"retries must be >= 0; got {self.retries}.")
        if self.target is not None:
            parse_policy(self.target)  # fail before any work


# --------------------------------------------------------------------------- the run


def run_batch(request: BatchRequest, log=None) -> dict:
    """Run (or resume) a batch; returns the run summary (also ``summary.json``)."""
    log = log or (lambda message: None)
    layout = request.layout or detect_layout(request.root)
    _check_roots(request.root, request.out_root)
    clips = list_clips(request.root, layout)
    if request.remove is False and request.target is None and any(c.target is None for c in clips):
        raise InputError("say what to do: --target-hr (e.g. 100, balanced:50-150) or --remove, or give every "
                         "manifest row a target.")
    request.out_root.mkdir(parents=True, exist_ok=True)
    run = RunDir(request.out_root)
    records = run.open()
    engine = None
    try:
        hash_file = run.path / "hashes.json"
        hashes = {k: tuple(v) for k, v in json.loads(hash_file.read_text()).items()} if hash_file.exists() else {}
        started = time.perf_counter()
        job = _job_settings(request)
        engine = make_engine(request)
        log(f"{layout} layout, {len(clips)} clips: {request.root} -> {request.out_root} ({engine.description})")
        measured = _measure(request, clips, job, run, records, hashes, engine, log)
        tasks, skipped = _tasks(request, clips, job, run, records, hashes, measured)
        _save_hashes(hash_file, hashes)
        if skipped:
            log(f"{skipped} clips already done with these settings: skipped")
        for record in engine.run(tasks, "clips"):
            run.append(record)
            records[f"{record['kind']}:{record['clip']}"] = record
            if record["status"] == "failed":
                log(f"failed: {record['clip']}: {record['reason']}")
        if layout in ("folder", "manifest"):
            _write_labels(request, layout, clips, records)
        return summarise_run(request, layout, clips, records, run, measured, skipped,
                             time.perf_counter() - started, engine.description, len(tasks))
    finally:
        if engine is not None:
            engine.close()
        run.close()


def _check_roots(root: Path, out_root: Path) -> None:
    root_r, out_r = root.resolve(), out_root.resolve()
    data_dir = root_r.parent if root_r.is_file() else root_r
    if out_r == data_dir or data_dir in out_r.parents or out_r in data_dir.parents:
        raise InputError(f"the output root {out_root} must lie outside the dataset ({root}) and not hold it: "
                         "choose a new folder beside it.")
    if out_r.exists() and not out_r.is_dir():
        raise InputError(f"the output root {out_root} is a file: give a folder.")
    if out_r.is_dir() and any(out_r.iterdir()) and not (out_r / RUN_DIR).is_dir():
        raise InputError(f"{out_root} holds files that no batch run wrote: choose an empty or new folder "
                         "(a rerun into a batch's own output root resumes it).")


def _job_settings(request: BatchRequest) -> dict:
    """JobRequest fields every clip shares (and the network's files), JSON-able for the key."""
    job = dict(methods=tuple(request.methods), crf=request.crf, preset=request.preset, robust_to=request.robust_to,
               amplitude=request.amplitude, min_psnr_db=request.min_psnr_db, seed=request.seed,
               verify=request.verify, figures=request.figures, bit_depth=request.bit_depth)
    # Only where set, so that runs from before these settings existed keep their keys (and resume).
    job.update({k: v for k, v in (("hrv_rmssd_ms", request.hrv_rmssd_ms), ("strength", request.strength),
                                  ("resp_rate_bpm", None if request.resp_rate is None else str(request.resp_rate)))
                if v is not None})
    if request.network is not None:
        job["network"] = {k: (None if v is None else str(v) if isinstance(v, Path) else v)
                          for k, v in asdict(request.network).items()}
    return job


def _measure(request, clips, job, run, records, hashes, engine, log) -> dict[str, float | None]:
    """Each clip's HR before the edit: the dataset's ground truth, else (only for balanced
    targets, which need it up front) an estimate run on the engine, kept in the manifest."""
    measured = {c.id: c.truth_hr_bpm for c in clips}
    policy = parse_policy(request.target) if request.target is not None else None
    if policy is None or policy.kind != "balanced":
        return measured
    tasks = []
    settings = {"kind": "measure", "methods": list(job["methods"])}
    for clip in clips:
        if measured[clip.id] is not None:
            continue
        key = clip_key(clip, settings, hashes)
        old = records.get(f"measure:{clip.id}")
        if old and old["key"] == key and old["status"] == "measured":
            measured[clip.id] = old["measured_hr_bpm"]
            continue
        tasks.append(ClipTask(clip, "measure", None, None, key, str(request.out_root), str(run.path), job))
    if tasks:
        log(f"measuring the HR of {len(tasks)} clips without ground truth (balanced targets need it)")
    for record in engine.run(tasks, "measuring"):
        run.append(record)
        records[f"measure:{record['clip']}"] = record
        if record["status"] == "measured":
            measured[record["clip"]] = record["measured_hr_bpm"]
    failed = [c.id for c in clips if measured[c.id] is None]
    if failed:
        raise InputError(f"could not measure the HR of {', '.join(failed[:5])} (see {run.manifest}); balanced "
                         "targets need every clip's HR: remove those clips or use uniform:LO-HI.")
    return measured


def _tasks(request, clips, job, run, records, hashes, measured) -> tuple[list[ClipTask], int]:
    """The clips still to do (not done with the same key), with their targets."""
    policy = parse_policy(request.target) if request.target is not None else None
    assigned = assign_targets(policy, [c.id for c in clips], measured, request.seed) if policy else {}
    decoy = None if request.decoy is None else str(request.decoy)
    tasks, skipped = [], 0
    for clip in clips:
        mode = clip.mode or ("remove" if request.remove else "edit")
        target = clip.target if clip.target is not None else assigned.get(clip.id)
        if mode == "edit" and target is None:
            raise InputError(f"clip {clip.id} has no target: give --target-hr or a target in its manifest row.")
        settings = {k: v for k, v in job.items() if k != "figures"}
        settings.update(kind=mode, target=target if mode == "edit" else None, decoy=decoy if mode == "remove" else None,
                        layout=clip.layout, out=clip.out)
        key = clip_key(clip, settings, hashes)
        old = records.get(f"{mode}:{clip.id}")
        if old and old["key"] == key and old["status"] == "done" and all(Path(p).exists() for p in old["outputs"]):
            skipped += 1
            continue
        tasks.append(ClipTask(clip, mode, target if mode == "edit" else None, decoy if mode == "remove" else None,
                              key, str(request.out_root), str(run.path), job))
    return tasks, skipped


def _save_hashes(path: Path, hashes: dict) -> None:
    from ..atomic import write_json

    write_json(path, {k: list(v) for k, v in hashes.items()})



# --------------------------------------------------------------------------- the summary


def summarise_run(request, layout, clips, records, run, measured, skipped, seconds, engine, submitted) -> dict:
    """``summary.json`` (counts, failures, HR before/after, per-reader hit rates, PSNR)
    and ``summary.png`` (HR histograms before/after, PSNR distribution)."""
    from ..atomic import write_json
    from ..verify import jsonable

    latest = []
    for clip in clips:
        mode = clip.mode or ("remove" if request.remove else "edit")
        latest.append(records.get(f"{mode}:{clip.id}") or {"clip": clip.id, "status": "pending"})
    done = [r for r in latest if r["status"] == "done"]
    failed = [{"clip": r["clip"], "reason": r.get("reason")} for r in latest if r["status"] == "failed"]
    before = [r["hr_before_bpm"] for r in done if r.get("hr_before_bpm") is not None]
    after = [r["hr_after_bpm"] for r in done if r.get("hr_after_bpm") is not None]
    targets = [r["target_hr_bpm"] for r in done if r.get("target_hr_bpm")]
    psnr = [r["psnr_db"] for r in done if r.get("psnr_db") is not None]
    readers: dict[str, list[bool]] = {}
    for r in done:
        for name, hit in (r.get("hits") or {}).items():
            readers.setdefault(name, []).append(hit)
    summary = jsonable({
        "root": str(request.root), "out_root": str(request.out_root), "layout": layout, "engine": engine,
        "policy": "remove" if request.remove else request.target,
        "counts": {"clips": len(clips), "done": len(done), "failed": len(failed),
                   "pending": sum(r["status"] == "pending" for r in latest), "skipped_as_done": skipped,
                   "processed_this_run": submitted},
        "failures": failed,
        "hr_before_bpm": _stats(before), "hr_after_bpm": _stats(after), "target_hr_bpm": _stats(targets),
        "hit_rate_by_reader": {name: {"hits": int(sum(v)), "clips": len(v), "rate": float(np.mean(v))}
                               for name, v in readers.items()},
        "hit_rule": f"edit: reader within {HIT_TOLERANCE_BPM:g} bpm of a constant target; remove: reader more than "
                    f"{HIT_TOLERANCE_BPM:g} bpm from its own reading before",
        "psnr_db": _stats(psnr),
        "seconds": round(seconds, 2),
        "clips_per_minute": round(60.0 * submitted / seconds, 2) if seconds > 0 and submitted else None,
        "figure": str(run.path / "summary.png"),
    })
    write_json(run.path / "summary.json", summary)
    _plot_summary(run.path / "summary.png", before, after, targets, psnr, summary)
    return summary


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"n": 0}
    return {"n": len(v), "min": float(v.min()), "p10": float(np.percentile(v, 10)), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "max": float(v.max()), "values": v.round(2).tolist()}


def _plot_summary(path: Path, before, after, targets, psnr, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..verify import save_figure

    fig, (ax_hr, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.6))
    values = [v for v in (*before, *after, *targets) if v is not None]
    # 5-bpm bins centred on multiples of 5, so a target of 100 and its readings share one
    centre_lo, centre_hi = (round(v / 5) * 5 for v in (min(values, default=40), max(values, default=180)))
    bins = np.arange(centre_lo - 2.5, centre_hi + 5, 5)
    ax_hr.hist(before, bins=bins, color="0.6", alpha=0.7, label=f"before ({len(before)})")
    ax_hr.hist(after, bins=bins, histtype="step", color="C0", lw=2, label=f"after, read from the files ({len(after)})")
    ax_hr.set(xlabel="heart rate (bpm)", ylabel="clips", title="HR before / after")
    ax_hr.legend(fontsize=8)
    if psnr:
        ax_psnr.hist(psnr, bins=min(20, max(5, len(psnr))), color="C2")
    ax_psnr.set(xlabel="PSNR of the saved file against the input (dB)", ylabel="clips", title="fidelity")
    c = summary["counts"]
    fig.suptitle(f"{c['done']} done, {c['failed']} failed of {c['clips']} clips", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True)
    plt.close(fig)
