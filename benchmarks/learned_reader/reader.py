"""Read a clip's pulse and heart rate with the trained PhysNet.

    net = load_reader()                               # trains it first if its weights are absent
    wave = read_wave(net, crops)                      # crops [T,64,64,3] from crops.reader_crops
    hr_bpm = rppg.estimate_hr(wave, fps)              # Welch-free zero-padded PSD peak, 40-180 bpm

The HR and SNR come from the library's own functions (``rppg.hr``), as for the classical
readers, so the learned reader differs from them only in where its waveform comes from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from physnet import PhysNet, standardise  # noqa: E402

from physiolatent_core.rppg.hr import estimate_hr, snr_db  # noqa: E402

CACHE = Path.home() / ".cache" / "physiolatent" / "learned_reader"
#: Frames per window the network reads (a multiple of 4), and the hop between windows.
WINDOW = 128
HOP = 64


def weights_path(seed: int = 0) -> Path:
    return CACHE / f"physnet_seed{seed}.safetensors"


def load_reader(seed: int = 0, train_if_missing: bool = True) -> PhysNet:
    """The trained PhysNet in eval mode (``train.main`` runs first when its weights are absent)."""
    from safetensors.torch import load_file

    path = weights_path(seed)
    if not path.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"{path} is missing: run python benchmarks/learned_reader/train.py --seed {seed}")
        import train

        train.main(["--seed", str(seed)])
    meta = json.loads(path.with_suffix(".json").read_text())
    net = PhysNet(meta["c1"], meta["c2"])
    net.load_state_dict(load_file(str(path)))
    return net.eval()


@torch.no_grad()
def read_wave(net: PhysNet, crops: np.ndarray, window: int = WINDOW, hop: int = HOP) -> np.ndarray:
    """Face crops ``[T,S,S,3]`` -> the network's waveform ``[T]``: overlapping windows, each
    output standardised, averaged where windows overlap (a Hann taper weights each)."""
    crops = np.asarray(crops, dtype=np.float32)
    n = len(crops)
    window = min(window, n - n % 4)
    starts = list(range(0, max(n - window, 0) + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    total, weight = np.zeros(n), np.zeros(n)
    taper = np.hanning(window + 2)[1:-1]
    for s in starts:
        x = standardise(torch.from_numpy(crops[s:s + window])[None])
        y = net(x)[0].numpy().astype(np.float64)
        y = (y - y.mean()) / (y.std() + 1e-8)
        total[s:s + window] += taper * y
        weight[s:s + window] += taper
    return total / np.maximum(weight, 1e-8)


def read_hr(net: PhysNet, crops: np.ndarray, fps: float, at_hr_bpm: float | None = None) -> dict:
    """``{"hr_bpm", "snr_db" (at its own HR), "snr_at_db" (at ``at_hr_bpm``), "wave"}``."""
    wave = read_wave(net, crops)
    hr_bpm = estimate_hr(wave, fps)
    return {"hr_bpm": hr_bpm, "snr_db": snr_db(wave, fps, hr_bpm),
            "snr_at_db": None if at_hr_bpm is None else snr_db(wave, fps, at_hr_bpm), "wave": wave}
