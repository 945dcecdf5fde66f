"""Engines that run the clips: ``local`` (:class:`LocalEngine`, a process pool) and ``ray``
(:class:`RayEngine`: Ray Core tasks, or :class:`ClipActor` actors for the network path).
``run(tasks, desc)`` yields one record per clip as it finishes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .clip import ClipTask, process_clip

if TYPE_CHECKING:
    from .run import BatchRequest

ENGINES = ("local", "ray")


def make_engine(request: BatchRequest):
    workers = request.workers or _cores()
    if request.engine == "ray":
        return RayEngine(workers, request.ray_address, request.gpus_per_clip, request.retries,
                         request.network is not None, request.quiet)
    return LocalEngine(workers, request.quiet)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _init_worker(network: bool) -> None:
    """A pool worker: one OpenCV thread (the pool has a process per core), and the
    network kept loaded between its clips."""
    import cv2

    cv2.setNumThreads(1)
    if network:
        _init_network_worker()


def _init_network_worker() -> None:
    from .. import pipeline

    pipeline.keep_networks_loaded()


def _failed(task: ClipTask, reason: str) -> dict:
    return {"clip": task.clip.id, "key": task.key, "kind": task.kind, "status": "failed", "reason": reason}


class LocalEngine:
    """A process pool of ``workers`` processes; results arrive as clips finish, with a
    tqdm bar (clips, ETA) on a terminal. One worker is the calling process itself."""

    def __init__(self, workers: int, quiet: bool = False):
        self.workers, self.quiet = workers, quiet
        self.description = f"local pool, {workers} worker{'s' * (workers != 1)}"

    def run(self, tasks: list[ClipTask], desc: str):
        if not tasks:
            return
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        from ..pipeline import progress

        network = any(t.job.get("network") for t in tasks)
        if min(self.workers, len(tasks)) == 1:  # no pool to start, nothing to pickle
            if network:
                _init_network_worker()
            with progress(tasks, self.quiet, desc=desc, unit="clip") as bar:
                yield from map(process_clip, bar)
            return
        # spawn: workers start clean (no copied threads or locks of the caller), as on macOS and Windows.
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(network,))
        try:
            pending = {pool.submit(process_clip, t): t for t in tasks}
            with progress(range(len(tasks)), self.quiet, desc=desc, unit="clip") as bar:
                while pending:
                    finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        task = pending.pop(future)
                        try:
                            record = future.result()
                        except BrokenProcessPool:  # a worker died (killed, out of memory): not this clip's fault alone
                            record = _failed(task, "the worker process died (out of memory or killed); rerun to retry")
                        bar.update(1)
                        yield record
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


class RayEngine:
    """Ray Core: one task per clip (``max_retries`` when a worker dies, ``num_cpus`` /
    ``num_gpus`` hints), or for the network path one actor per worker that loads the
    weights once. ``address`` None: a local Ray with ``workers`` CPUs."""

    def __init__(self, workers: int, address: str | None, gpus_per_clip: float, retries: int, network: bool,
                 quiet: bool = False):
        self.ray = import_ray()
        self.workers, self.address, self.gpus, self.retries = workers, address, gpus_per_clip, retries
        self.network, self.quiet = network, quiet
        self._started = False
        self.description = f"ray ({address or f'local, {workers} CPUs'})"

    def _start(self):
        ray = self.ray
        if not ray.is_initialized():
            # The workers import this package: ship the folder that holds it when it is not installed.
            package = str(Path(__file__).resolve().parents[2])
            runtime_env = {"env_vars": {"PYTHONPATH": package}} if self.address is None else {}
            kwargs = dict(address=self.address) if self.address else dict(num_cpus=self.workers)
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env, **kwargs)
            self._started = True

    def run(self, tasks: list[ClipTask], desc: str):
        if not tasks:
            return
        self._start()
        ray = self.ray
        from ..pipeline import progress

        hints = dict(num_cpus=1, num_gpus=self.gpus)
        if self.network and tasks[0].kind != "measure":
            actor_cls = ray.remote(max_restarts=self.retries, max_task_retries=self.retries, **hints)(ClipActor)
            n = max(1, min(self.workers, len(tasks)))
            actors = [actor_cls.remote() for _ in range(n)]
            refs = {actors[i % n].process.remote(t): t for i, t in enumerate(tasks)}
        else:
            remote = ray.remote(max_retries=self.retries, **hints)(_ray_process_clip)
            refs = {remote.remote(t): t for t in tasks}
        with progress(range(len(tasks)), self.quiet, desc=desc, unit="clip") as bar:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                task = refs.pop(ready[0])
                try:
                    record = ray.get(ready[0])
                except Exception as exc:  # retries spent (a worker or node died): recorded, the run goes on
                    record = _failed(task, f"ray: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                bar.update(1)
                yield record

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


def _ray_process_clip(task: ClipTask) -> dict:
    """A Ray task: one clip, on one OpenCV thread (Ray reserves one CPU per task)."""
    _init_worker(network=False)
    return process_clip(task)


class ClipActor:
    """A Ray actor for the network path: the weights load with its first clip and stay
    (``pipeline.keep_networks_loaded``)."""

    def __init__(self):
        _init_worker(network=True)

    def process(self, task: ClipTask) -> dict:
        return process_clip(task)


def import_ray():
    """``ray``, imported only when asked for; a clear message when it is missing."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray: pip install 'physiolatent[ray]' (or pip install 'ray>=2.9'), "
                         "or use the local engine.") from None
    return ray
