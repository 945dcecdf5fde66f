"""Restore keys (``remove --key-out``, ``restore``): key size, time, and what comes back.

For each real clip of ``../shared/data`` (or the files given) and each output (.mkv FFV1,
.mp4 H.264 crf 18): ``remove`` with a key (verification off: this measures the key, not
the removal), then ``restore`` to .mkv (is it the input's frames, bit for bit?) and, for
the .mp4 output, to .mp4 at crf 18 (PSNR/SSIM against the input's frames). Prints a
Markdown table and writes the rows as JSON.

    python benchmarks/restore_keys.py                      # every clip of ../shared/data
    python benchmarks/restore_keys.py a.mp4 b.mp4 --out rows.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from physiolatent_core.pipeline import JobRequest, run_job  # noqa: E402
from physiolatent_core.restore import RestoreRequest, run_restore  # noqa: E402
from physiolatent_core.video import probe_video  # noqa: E402


def measure(clip: Path, work: Path) -> list[dict]:
    info = probe_video(clip)
    rows = []
    for ext in (".mkv", ".mp4"):
        out, key = work / f"{clip.stem}{ext}", work / f"{clip.stem}{ext}.key.json"
        report = run_job(JobRequest(input=clip, mode="remove", output=out, key_out=key, figure=False, verify=False,
                                    report=work / f"{clip.stem}{ext}.report.json", quiet=True, crf=18))
        row = {"clip": clip.name, "size": f"{info.width}x{info.height}", "frames": report["key"]["frames"],
               "output": ext, "payload": report["key"]["payload"], "key_mb": report["key"]["bytes"] / 1e6,
               "input_mb": clip.stat().st_size / 1e6,
               "key_bytes_per_pixel": report["key"]["bytes"] / (report["key"]["frames"] * info.width * info.height),
               "key_s": report["timings_s"]["key"], "job_s": report["timings_s"]["total"]}
        t0 = time.perf_counter()
        exact = run_restore(RestoreRequest(input=out, key=key, output=work / f"{clip.stem}{ext}.restored.mkv",
                                           quiet=True))
        row.update(restore_mkv_s=round(time.perf_counter() - t0, 2), bit_exact_mkv=exact["bit_exact"],
                   restore_only_s=exact["timings_s"]["restore"])
        if ext == ".mp4":
            lossy = run_restore(RestoreRequest(input=out, key=key, output=work / f"{clip.stem}.restored.mp4",
                                               crf=18, quiet=True))
            row.update(psnr_mp4_db=lossy["psnr_db"], ssim_mp4=lossy["ssim"])
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| clip | size, frames | output | key holds | key (input file) | key pass | restore to .mkv | "
             "restore to .mp4 (crf 18) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mp4 = "" if "psnr_mp4_db" not in r else f"PSNR {r['psnr_mp4_db']:.2f} dB, SSIM {r['ssim_mp4']:.4f}"
        lines.append(f"| {r['clip']} | {r['size']}, {r['frames']} | {r['output']} | {r['payload']} | "
                     f"{r['key_mb']:.1f} MB ({r['input_mb']:.1f} MB) | {r['key_s']:.1f} s | "
                     f"{'bit-exact' if r['bit_exact_mkv'] else 'NOT exact'}, {r['restore_only_s']:.1f} s | {mp4} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", type=Path, help="videos (default: ../shared/data/*.mp4)")
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    clips = args.clips or sorted((ROOT.parent / "shared" / "data").glob("*.mp4"))
    if not clips:
        raise SystemExit("no clips: give video files, or put them in ../shared/data")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in clips:
            rows += measure(clip, Path(tmp))
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
