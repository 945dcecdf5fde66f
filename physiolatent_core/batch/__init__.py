"""Whole datasets: every clip of a dataset edited (or its pulse removed) into the same layout.

    run_batch(BatchRequest(root="UBFC", out_root="UBFC_100", target="100"))

* **Layouts in and out.** The input is a dataset root in a layout ``data.readers`` reads
  (UBFC-rPPG, PURE, MMPD, a folder of videos) or a CSV/JSONL manifest of clips (columns
  ``path`` and optional ``mode``, ``target``). The output is the same layout under a new
  root, so the dataset's own loaders read it unchanged, with the ground truth rewritten in
  the dataset's own format (UBFC ``ground_truth.txt``, PURE JSON ``/FullPackage``, MMPD
  ``GT_ppg``, our ``<stem>.json`` sidecar for folders and manifests): the pulse injected
  and its heart rate, not the subject's.
* **Target policies** (:func:`parse_policy`): one target for every clip (``100``,
  ``70:120``, ``0s=70, 8s=110``), a list dealt out in clip order (``60,80,100``), a
  seeded uniform draw per clip (``uniform:40-180``), an HR-balanced set
  (``balanced:50-150``: targets evenly spaced over the band, given by rank of each clip's
  measured HR, so the output histogram is flat and every clip moves the least it can), or
  removal (``BatchRequest(remove=True)``).
* **Resumable.** ``OUT_ROOT/.physiolatent/`` holds the run: ``manifest.jsonl`` (one line
  appended per finished clip, keyed by the content hash of its input files and the
  settings), ``reports/`` (each clip's ``pipeline.run_job`` report), ``summary.json`` and
  ``summary.png``. A rerun skips clips done with the same key and retries failed ones; a
  kill loses only the clips in flight (their work is in ``staging/``, cleared on start).
  Inputs are only read; every output file is written atomically.
* **Engines.** ``local``: a process pool sized to the cores, with a progress bar and ETA.
  ``ray``: Ray Core tasks (one per clip, ``max_retries``, CPU/GPU hints) on a cluster
  (``ray_address``) or a local Ray; the network path runs in actors, so each worker loads
  the weights once. A clip that fails is recorded with its reason and the run goes on.

The per-clip work (:func:`process_clip`) runs in the workers; the manifest, the policies
and the summary stay in the calling process, which alone writes the run's records.

Modules, imported one way (each only from those above it): ``policies`` (target policies),
``layouts`` (dataset layouts in and out, ground truth), ``rundir`` (the run directory and
clip keys), ``clip`` (one clip in a worker), ``engines`` (local pool, Ray) and ``run``
(:class:`BatchRequest`, :func:`run_batch`, the summary).
"""

from .clip import HIT_TOLERANCE_BPM, ClipTask, process_clip
from .engines import ENGINES, ClipActor, LocalEngine, RayEngine, import_ray, make_engine
from .layouts import LAYOUTS, DatasetClip, GroundTruth, detect_layout, ground_truth, list_clips
from .policies import Policy, assign_targets, parse_policy
from .run import BatchRequest, run_batch, summarise_run
from .rundir import RUN_DIR, RunDir, clip_key

__all__ = ["BatchRequest", "DatasetClip", "GroundTruth", "LocalEngine", "Policy", "RayEngine", "RunDir",
           "assign_targets", "clip_key", "detect_layout", "ground_truth", "import_ray", "list_clips",
           "parse_policy", "process_clip", "run_batch",
           "ClipActor", "ClipTask", "ENGINES", "HIT_TOLERANCE_BPM", "LAYOUTS", "RUN_DIR", "make_engine",
           "summarise_run"]
