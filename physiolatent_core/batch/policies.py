"""Target policies of a batch run: how each clip of a dataset gets its target heart rate.

``parse_policy`` reads the spec (one target, a list, ``uniform:LO-HI``, ``balanced:LO-HI``);
``assign_targets`` deals the targets out to the clips, deterministically.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Policy:
    """How clips get their targets: ``kind`` fixed | list | uniform | balanced."""

    kind: str
    values: tuple = ()  # fixed: (HRTarget,); list: bpm values; uniform/balanced: (low, high)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(self.values[0])
        if self.kind == "list":
            return ",".join(f"{v:g}" for v in self.values)
        return f"{self.kind}:{self.values[0]:g}-{self.values[1]:g}"


def parse_policy(spec) -> Policy:
    """``100`` / ``70:120`` / ``0s=70, 8s=110`` (every clip), ``60,80,100`` (a list dealt
    out in clip order), ``uniform:LO-HI`` (a seeded draw per clip), ``balanced:LO-HI``
    (a flat histogram over the band, by rank of each clip's measured HR)."""
    from ..pulse import _check_bpm, parse_hr_target

    text = str(spec).strip()
    kind, _, rest = text.partition(":")
    if kind.lower() in ("uniform", "balanced"):
        match = re.fullmatch(r"\s*([\d.]+)\s*-\s*([\d.]+)\s*", rest)
        if not match:
            raise InputError(f"{kind} targets need a band like {kind}:50-150 (bpm); got {text!r}.")
        low, high = (_check_bpm(float(v), f"{kind} band edge") for v in match.groups())
        if not low < high:
            raise InputError(f"the {kind} band must go from low to high, like {kind}:50-150; got {text!r}.")
        return Policy(kind.lower(), (low, high))
    if "," in text and "=" not in text:
        values = tuple(parse_hr_target(v.strip()).bpm[0] for v in text.split(",") if v.strip())
        if not values:
            raise InputError(f"a target list needs numbers like 60,80,100; got {text!r}.")
        return Policy("list", values)
    return Policy("fixed", (parse_hr_target(spec if not isinstance(spec, str) else text),))


def assign_targets(policy: Policy, clip_ids: list[str], measured_bpm: dict[str, float | None],
                   seed: int = 0) -> dict[str, str]:
    """Target (as text ``parse_hr_target`` reads) of every clip in ``clip_ids`` (in the
    dataset's order). Every policy is deterministic: a rerun assigns the same targets."""
    if policy.kind == "fixed":
        target = policy.values[0]
        text = f"{target.bpm[0]:g}" if target.kind == "constant" else _target_text(target)
        return {c: text for c in clip_ids}
    if policy.kind == "list":
        return {c: f"{policy.values[i % len(policy.values)]:g}" for i, c in enumerate(clip_ids)}
    low, high = policy.values
    if policy.kind == "uniform":
        # A clip's draw depends on its name and the seed only, not on the other clips.
        return {c: f"{np.random.default_rng([seed, zlib.crc32(c.encode())]).uniform(low, high):.1f}"
                for c in clip_ids}
    # balanced: n evenly spaced targets (bin centres), matched by rank to the measured HRs.
    unknown = [c for c in clip_ids if measured_bpm.get(c) is None]
    if unknown:
        raise InputError(f"balanced targets need each clip's HR; none measured for {', '.join(unknown[:5])}.")
    n = len(clip_ids)
    levels = low + (np.arange(n) + 0.5) * (high - low) / n
    order = sorted(clip_ids, key=lambda c: (measured_bpm[c], c))
    return {c: f"{levels[i]:.1f}" for i, c in enumerate(order)}


def _target_text(target) -> str:
    if target.kind == "ramp":
        return ":".join(f"{b:g}" for b in target.bpm)
    return ", ".join(f"{t:g}s={b:g}" for t, b in zip(target.times_s, target.bpm))
