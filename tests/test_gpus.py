"""GPU claiming on a multi-GPU machine without a scheduler: concurrent jobs get distinct devices, a
killed job frees its device, a preset CUDA_VISIBLE_DEVICES (SLURM's) is left alone. The locks are
real flock()s between real processes; only the device count is given, as this machine has no GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bonbon.gpus import claim_gpus, release_gpus

JOB = """
import sys
from bonbon.gpus import claim_gpus
print(claim_gpus(int(sys.argv[1]), device_count=4, lock_dir=sys.argv[2]), flush=True)
sys.stdin.read()  # hold the GPUs until the test closes stdin
"""


def start_job(gpus: int, lock_dir) -> tuple[subprocess.Popen, list[int]]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    job = subprocess.Popen([sys.executable, "-c", JOB, str(gpus), str(lock_dir)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, env=env)
    line = job.stdout.readline()
    return job, eval(line)  # a list of ints printed by the job


@pytest.fixture
def no_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    yield
    release_gpus()


def test_concurrent_jobs_get_distinct_gpus_and_a_killed_job_frees_its_own(tmp_path, no_visible_devices):
    jobs = [start_job(1, tmp_path), start_job(2, tmp_path)]
    try:
        held = [d for _, devices in jobs for d in devices]
        assert sorted(held) == sorted(set(held)) and len(held) == 3 and set(held) <= {0, 1, 2, 3}
        # one GPU is left: a 2-GPU job waits, and gives up with a message naming the lock directory
        with pytest.raises(TimeoutError, match=f"no 2 free GPU\\(s\\) of 4 .* {tmp_path}"):
            claim_gpus(2, device_count=4, lock_dir=tmp_path, timeout_s=0.3, poll_s=0.1)
        assert "CUDA_VISIBLE_DEVICES" not in os.environ
        # SIGKILL the 2-GPU job: the kernel drops its locks, and exactly its devices come free
        killed, killed_devices = jobs.pop()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        free = sorted(set(range(4)) - set(jobs[0][1]))
        assert claim_gpus(3, device_count=4, lock_dir=tmp_path, timeout_s=5, poll_s=0.1) == free
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, free))
        assert set(killed_devices) <= set(free)
    finally:
        for job, _ in jobs:
            job.stdin.close()
            job.wait()


def test_nothing_changes_without_gpus_or_with_devices_set(tmp_path, monkeypatch, no_visible_devices):
    assert claim_gpus(0, device_count=4, lock_dir=tmp_path) is None
    assert claim_gpus(1, device_count=1, lock_dir=tmp_path) is None  # one GPU: nothing to choose
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # as SLURM sets it for a --gpus=1 job
    assert claim_gpus(1, device_count=4, lock_dir=tmp_path) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.iterdir())  # no lock taken


def test_more_gpus_than_the_machine_has_is_an_error(tmp_path, no_visible_devices):
    with pytest.raises(ValueError, match="resources gpu=5: this machine has 4 GPUs"):
        claim_gpus(5, device_count=4, lock_dir=tmp_path)
