"""Datasets for training and evaluating the PhysioLatent network.

* ``records``: the ``Clip`` record, subject-wise splits, target-HR sampling.
* ``readers``: UBFC-rPPG, PURE, MMPD, a generic video folder, synthetic subjects.
* ``windows``: fixed-length face-cropped windows as model-ready tensors.
"""

from .readers import read_dataset, read_folder, read_mmpd, read_pure, read_synthetic, read_ubfc
from .records import PAPER_TARGETS_BPM, Clip, sample_target_hr, split_clips, split_subjects
from .windows import WindowDataset, crop_window, window_starts

__all__ = [
    "PAPER_TARGETS_BPM",
    "Clip",
    "WindowDataset",
    "crop_window",
    "read_dataset",
    "read_folder",
    "read_mmpd",
    "read_pure",
    "read_synthetic",
    "read_ubfc",
    "sample_target_hr",
    "split_clips",
    "split_subjects",
    "window_starts",
]
