"""Train the learned reader (PhysNet) on CPU and save it as safetensors.

    python benchmarks/learned_reader/train.py --seed 0 --minutes 50
    python benchmarks/learned_reader/train.py --seed 0 --evaluate     # its accuracy on held-out clips

Renders its training data first when absent (``data.py``: synthetic subjects and the real
clips' segments edited to known HRs, the clips in ``data.HELD_OUT_CLIPS`` kept out).
Windows of 128 frames are drawn at random from the training items, augmented (horizontal
flip, crop jitter: a random 56-64 px square of the 64 px crop resized back, a per-window
gain), and fitted with the negative Pearson loss (AdamW). One thread, so the machine's
other core stays free. The weights are rewritten atomically every 25 steps with the step
count in a JSON sidecar, so an interrupted run resumes from its last save; ``--minutes``
bounds the wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import data  # noqa: E402
from physnet import PhysNet, neg_pearson, standardise  # noqa: E402
from reader import WINDOW, load_reader, read_wave, weights_path  # noqa: E402

from physiolatent_core.rppg.hr import estimate_hr  # noqa: E402

C1, C2 = 8, 16
BATCH = 4
SAVE_EVERY = 25
RELOAD_EVERY = 100


def _save(net: PhysNet, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.safetensors")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(path)
    side = path.with_suffix(".json")
    tmp_side = side.with_suffix(".tmp.json")
    tmp_side.write_text(json.dumps(meta, indent=1))
    tmp_side.replace(side)


def _batch(items: list[dict], rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for _ in range(BATCH):
        item = items[rng.integers(len(items))]
        n = len(item["wave"])
        s = int(rng.integers(0, n - WINDOW + 1))
        crops = torch.from_numpy(item["crops"][s:s + WINDOW].astype(np.float32))  # [T,S,S,3]
        size = crops.shape[1]
        if rng.random() < 0.5:
            crops = crops.flip(2)
        side = int(rng.integers(size - 8, size + 1))
        y0, x0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        crops = crops[:, y0:y0 + side, x0:x0 + side]
        if side != size:
            crops = torch.nn.functional.interpolate(crops.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                                    align_corners=False).permute(0, 2, 3, 1)
        crops = crops * float(rng.uniform(0.7, 1.2))
        xs.append(crops)
        ys.append(torch.from_numpy(item["wave"][s:s + WINDOW].astype(np.float32)))
    return standardise(torch.stack(xs)), torch.stack(ys)


def train(seed: int, minutes: float, max_steps: int, lr: float = 1e-3) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    items = data.load_items(data.CACHE / "data", split="train")
    if not items:
        raise SystemExit("no training data: run python benchmarks/learned_reader/data.py --real --synth 60 first")
    print(f"{len(items)} training items: {sum(i['source'].startswith('synth') for i in items)} synthetic", flush=True)
    path = weights_path(seed)
    net, step = PhysNet(C1, C2), 0
    if path.exists():  # resume
        from safetensors.torch import load_file

        net.load_state_dict(load_file(str(path)))
        step = json.loads(path.with_suffix(".json").read_text())["steps"]
        rng = np.random.default_rng([seed, step])
        print(f"resuming at step {step}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    net.train()
    t0, losses = time.time(), []
    while step < max_steps and time.time() - t0 < 60 * minutes:
        x, y = _batch(items, rng)
        loss = neg_pearson(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if step % RELOAD_EVERY == 0:  # pick up items data.py rendered meanwhile
            items = data.load_items(data.CACHE / "data", split="train")
        if step % SAVE_EVERY == 0:
            _save(net, path, dict(c1=C1, c2=C2, steps=step, seed=seed, window=WINDOW, batch=BATCH, lr=lr,
                                  train_items=len(items), held_out_clips=list(data.HELD_OUT_CLIPS)))
            print(f"step {step}: loss {np.mean(losses[-SAVE_EVERY:]):.3f} ({time.time() - t0:.0f} s)", flush=True)
    _save(net, path, dict(c1=C1, c2=C2, steps=step, seed=seed, window=WINDOW, batch=BATCH, lr=lr,
                          train_items=len(items), held_out_clips=list(data.HELD_OUT_CLIPS)))
    return path


def evaluate(seed: int, split: str = "eval") -> list[dict]:
    """The reader's HR against the known HR on every item of ``split``; prints MAE per group."""
    torch.set_num_threads(1)
    net = load_reader(seed, train_if_missing=False)
    rows = []
    for item in data.load_items(data.CACHE / "data", split=split):
        hr_bpm = estimate_hr(read_wave(net, item["crops"]), item["fps"])
        rows.append(dict(name=item["name"], source=item["source"], path=item["path"], true_hr_bpm=item["hr_bpm"],
                         hr_bpm=hr_bpm, error_bpm=abs(hr_bpm - item["hr_bpm"])))
        print(json.dumps(rows[-1]), flush=True)
    for kind in sorted({r["path"] for r in rows}):
        for synthetic in (False, True):
            errors = [r["error_bpm"] for r in rows if r["path"] == kind and r["source"].startswith("synth") == synthetic]
            if errors:
                print(f"{kind:>11} {'synthetic' if synthetic else 'real edits'}: {len(errors)} clips, MAE "
                      f"{np.mean(errors):.2f} bpm, max {np.max(errors):.2f}, within 5 bpm {sum(e <= 5 for e in errors)}")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=60.0, help="wall-time bound of this run")
    ap.add_argument("--steps", type=int, default=1500, help="total optimiser steps")
    ap.add_argument("--evaluate", action="store_true", help="only measure the saved reader on the eval items")
    args = ap.parse_args(argv)
    if args.evaluate:
        rows = evaluate(args.seed)
        out = weights_path(args.seed).with_suffix(".accuracy.json")
        out.write_text(json.dumps(rows, indent=1))
        return
    if not any((data.CACHE / "data").glob("*.npz")):
        data.main(["--real", "--synth", "60", "--eval", "--seed", str(args.seed)])
    if not any((data.CACHE / "data").glob("*.npz")):
        raise SystemExit("data.py made no training items")
    train(args.seed, args.minutes, args.steps)


if __name__ == "__main__":
    main()
