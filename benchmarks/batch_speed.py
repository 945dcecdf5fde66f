"""Batch throughput: clips per minute on the real clips of ../shared/data, by engine.

The first ``--seconds`` of every clip in ../shared/data is copied (H.264 crf 18, our
writer) into a folder dataset; then the same ``batch`` job (edit to ``--target-hr``,
verified on the saved .mp4 as the command line does) runs on it with the local pool at 1
and 2 workers and with Ray (local) at 2 workers, each into a fresh output root, in one
run. Scaling efficiency = (clips/min with N workers) / (N x clips/min with 1 worker).

    python benchmarks/batch_speed.py --out out/batch_speed          # ~4 min on 2 cores
    python benchmarks/batch_speed.py --out out/bs --engines local:1 local:2

Prints one JSON line per engine and writes ``results.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # pool/Ray workers

from physiolatent_core.batch import BatchRequest, run_batch  # noqa: E402
from physiolatent_core.video import iter_frames, probe_video, write_video  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished child processes."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def make_dataset(folder: Path, seconds: float) -> list[str]:
    """The first ``seconds`` of each shared clip as ``folder/<name>.mp4``."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for clip in sorted(SHARED.glob("*.mp4")):
        info = probe_video(clip)
        frames = list(iter_frames(clip, chunk_frames=64, stop=int(round(seconds * info.fps))))
        write_video(folder / clip.name, np.concatenate(frames), info.fps, crf=18, overwrite=True)
        names.append(clip.name)
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/batch_speed")
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of each clip (default 10)")
    ap.add_argument("--target-hr", default="100")
    ap.add_argument("--engines", nargs="+", default=["local:1", "local:2", "ray:2"], help="engine:workers")
    args = ap.parse_args()
    if not SHARED.is_dir():
        print(f"{SHARED} is not here: nothing to measure.", file=sys.stderr)
        return 1
    out = Path(args.out)
    dataset = out / "dataset"
    names = make_dataset(dataset, args.seconds)
    results = []
    for spec in args.engines:
        engine, workers = spec.split(":")
        target = out / f"run_{engine}_{workers}"
        shutil.rmtree(target, ignore_errors=True)
        t0, c0 = time.perf_counter(), cpu_seconds()
        summary = run_batch(BatchRequest(dataset, target, target=args.target_hr, engine=engine, workers=int(workers),
                                         quiet=True))
        wall = time.perf_counter() - t0  # everything: listing, hashing, engine start, clips, summary
        cpu = cpu_seconds() - c0
        row = {"engine": engine, "workers": int(workers), "clips": len(names), "done": summary["counts"]["done"],
               "failed": summary["counts"]["failed"], "wall_s": round(wall, 1),
               "clips_per_minute": round(60 * len(names) / wall, 2),
               # this process and its pool workers (Ray's workers are not its children: not counted)
               "cpu_s_per_clip": round(cpu / len(names), 1) if engine == "local" else None,
               "load_average_1min": round(os.getloadavg()[0], 1),
               "psnr_db_median": summary["psnr_db"].get("median"),
               "hit_rate_by_reader": {k: v["rate"] for k, v in summary["hit_rate_by_reader"].items()}}
        results.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in results if r["engine"] == "local" and r["workers"] == 1), None)
    for r in results:
        if base and r is not base:
            r["scaling_efficiency"] = round(r["clips_per_minute"] / (r["workers"] * base["clips_per_minute"]), 3)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.processor() or
            platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
            "seconds_per_clip": args.seconds, "clips": names, "command": " ".join(sys.argv)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(json.dumps({r["engine"] + ":" + str(r["workers"]): r.get("scaling_efficiency") for r in results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
