"""Distinct GPUs for concurrent jobs on one multi-GPU machine without a scheduler.

``snakemake --cores C --resources gpu=G`` runs at most G GPU jobs at once but sets no
``CUDA_VISIBLE_DEVICES``, so every job would use ``cuda:0``. :func:`claim_gpus` gives a job GPUs
that no other running job holds: one lock file per device in a directory shared by every job of
the machine, held with ``flock`` for the life of the process. The kernel drops the lock when the
process ends, however it ends (a SIGKILL too), so a crashed job never keeps a GPU.

Where ``CUDA_VISIBLE_DEVICES`` is already set (SLURM sets it for ``--gpus`` jobs, or the user did),
nothing is changed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["LOCK_DIR_ENV", "claim_gpus", "default_lock_dir", "release_gpus"]

LOCK_DIR_ENV = "BONBON_GPU_LOCK_DIR"
_held: list[int] = []  # file descriptors of the locks this process holds: closing one frees its GPU


def default_lock_dir() -> Path:
    """``$BONBON_GPU_LOCK_DIR``, else ``<tmp>/bonbon-gpu-locks``: the same for every job of a machine."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "bonbon-gpu-locks")


def _visible_gpu_count() -> int:
    import torch

    # NVML-based where available: counting does not initialise CUDA, which would fix the visible devices
    return torch.cuda.device_count()


def claim_gpus(
    count: int,
    *,
    device_count: int | None = None,
    lock_dir: str | Path | None = None,
    timeout_s: float | None = None,
    poll_s: float = 2.0,
) -> list[int] | None:
    """Set ``CUDA_VISIBLE_DEVICES`` of this process to ``count`` GPUs no other job holds; call it
    before anything touches CUDA. Returns the device indices, or None when nothing was changed: no
    GPU asked for, ``CUDA_VISIBLE_DEVICES`` already set, or fewer than two GPUs on the machine.

    Waits while other jobs hold the GPUs (Snakemake's ``--resources gpu=G`` with G no larger than the
    machine's GPU count means no wait within one workflow); ``timeout_s`` bounds the wait with a
    TimeoutError naming the lock directory.
    """
    if count <= 0 or "CUDA_VISIBLE_DEVICES" in os.environ:
        return None
    total = _visible_gpu_count() if device_count is None else device_count
    if total <= 1:
        return None
    if count > total:
        raise ValueError(f"resources gpu={count}: this machine has {total} GPUs")
    root = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        try:  # shared by every user's jobs, like /tmp itself
            root.chmod(0o1777)
        except OSError:
            pass
    started, reported = time.monotonic(), False
    while True:
        taken = _try_lock(root, total, count)
        if taken is not None:
            break
        waited = time.monotonic() - started
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(
                f"no {count} free GPU(s) of {total} after {waited:.0f} s: other jobs hold the locks in {root}"
            )
        if not reported:
            log.info("waiting for %d of %d GPUs: other jobs hold the locks in %s", count, total, root)
            reported = True
        time.sleep(poll_s)
    devices = [index for index, _ in taken]
    _held.extend(fd for _, fd in taken)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, devices))
    log.info("CUDA_VISIBLE_DEVICES=%s (locks in %s)", os.environ["CUDA_VISIBLE_DEVICES"], root)
    return devices


def _try_lock(root: Path, total: int, count: int) -> list[tuple[int, int]] | None:
    """``count`` (device, fd) pairs locked, or None with nothing held (all or nothing: two jobs that
    each got half of what they need would wait on each other for ever)."""
    taken: list[tuple[int, int]] = []
    for index in range(total):
        # read-only is enough for flock, and opens another user's lock file too
        fd = os.open(root / f"gpu-{index}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        taken.append((index, fd))
        if len(taken) == count:
            return taken
    for _, fd in taken:
        os.close(fd)  # closing the descriptor releases its lock
    return None


def release_gpus() -> None:
    """Free the GPUs this process claimed (a job need not: its end frees them)."""
    while _held:
        os.close(_held.pop())
