"""bonbon.warm: a job handed to a warm worker runs as `python script` would (streams, directory, argv,
environment, exit status, signals), and never outlives its client."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bonbon import warm

# a stand-in for the file Snakemake writes: its preamble defines `snakemake`, then the script hands over
JOB = '''
import os, sys, time
from types import SimpleNamespace
__real_file__ = __file__
snakemake = SimpleNamespace(config={"warm_start": True})
from bonbon.warm import hand_over
hand_over(globals())
print("worker", os.environ.get("BONBON_WARM_WORKER"), "pid", os.getpid(), "cwd", os.getcwd(),
      "argv", ",".join(sys.argv[1:]) or "-", "path0", sys.path[0], flush=True)
print("to stderr", file=sys.stderr, flush=True)
action = sys.argv[1] if len(sys.argv) > 1 else ""
if action == "raise":
    raise RuntimeError("boom")
if action.startswith("exit="):
    sys.exit(int(action[5:]))
if action == "sleep":
    time.sleep(60)
'''


@pytest.fixture
def warm_dir(monkeypatch):
    """A private server directory (short: a socket's path holds 107 bytes), a server that preloads one
    cheap module and idles out quickly."""
    folder = Path(tempfile.mkdtemp(prefix="bw", dir="/tmp"))
    monkeypatch.setenv("BONBON_WARM_DIR", str(folder))
    monkeypatch.setenv("BONBON_WARM_PRELOAD", "json")
    monkeypatch.setenv("BONBON_WARM_IDLE", "30")
    monkeypatch.delenv("BONBON_WARM_START", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    yield folder / f"bonbon-warm-{os.getuid()}"
    warm.stop_servers()
    shutil.rmtree(folder, ignore_errors=True)


def run_job(script: Path, cwd: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, **kwargs)


def fields(stdout: str) -> dict[str, str]:
    words = stdout.split("\n")[0].split()
    return dict(zip(words[::2], words[1::2], strict=False))


def start_server(script: Path, tmp_path: Path) -> None:
    """The first job runs cold and starts the server; wait until it listens."""
    first = run_job(script, tmp_path)
    assert first.returncode == 0, first.stderr
    assert fields(first.stdout)["worker"] == "None"
    deadline = time.time() + 30
    while not list(warm.server_dir().glob("*.sock")):
        assert time.time() < deadline, "no server came up"
        time.sleep(0.1)


@pytest.fixture
def job(tmp_path, warm_dir):
    script = tmp_path / "scripts" / "job.py"
    script.parent.mkdir()
    script.write_text(JOB)
    start_server(script, tmp_path)
    return script


def test_a_warm_job_runs_as_python_script_would(job, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_job(job, elsewhere, "a", "b")
    seen = fields(done.stdout)
    assert done.returncode == 0, done.stderr
    assert seen["worker"] == seen["pid"]  # ran in a worker, which knows itself
    assert seen["cwd"] == str(elsewhere)
    assert seen["argv"] == "a,b"
    assert seen["path0"] == str(job.parent)
    assert done.stderr.strip() == "to stderr"


def test_exit_codes_and_tracebacks_come_back(job, tmp_path):
    assert run_job(job, tmp_path, "exit=3").returncode == 3
    failed = run_job(job, tmp_path, "raise")
    assert failed.returncode == 1
    assert "RuntimeError: boom" in failed.stderr and "Traceback" in failed.stderr
    assert fields(failed.stdout)["worker"] != "None"


def worker_of(client: subprocess.Popen) -> int:
    line = client.stdout.readline()
    pid = fields(line)["worker"]
    assert pid != "None", line
    return int(pid)


def gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_killed_client_takes_its_worker_with_it(job, tmp_path):
    client = subprocess.Popen([sys.executable, str(job), "sleep"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    worker = worker_of(client)
    client.kill()  # SIGKILL: no handler runs; the worker sees its client's end close
    client.wait()
    assert gone(worker)


def test_a_signal_to_the_client_reaches_the_worker_and_its_status_comes_back(job, tmp_path):
    client = subprocess.Popen([sys.executable, str(job), "sleep"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    worker = worker_of(client)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=10) == -signal.SIGTERM  # killed by the worker's signal, as a cold job
    assert gone(worker)


def test_without_a_server_or_when_off_the_job_runs_cold(tmp_path, warm_dir):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    off = run_job(script, tmp_path, env={**os.environ, "BONBON_WARM_START": "0"})
    assert off.returncode == 0 and fields(off.stdout)["worker"] == "None"
    assert not list(warm_dir.glob("*.sock")) and not list(warm_dir.glob("*.starting"))
    assert warm.enabled({}) and not warm.enabled({"warm_start": False})
    os.environ["SLURM_JOB_ID"] = "1"
    try:
        assert not warm.enabled({"warm_start": True})  # each SLURM job runs on its own
    finally:
        del os.environ["SLURM_JOB_ID"]


def test_a_changed_setting_or_package_file_keys_another_server(warm_dir, monkeypatch, tmp_path):
    key = warm.fingerprint()
    monkeypatch.setenv("PWD", "/somewhere/else")  # a shell's own variable: the same server
    assert warm.fingerprint() == key
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # read when libraries load: another server
    assert warm.fingerprint() != key
    monkeypatch.delenv("OMP_NUM_THREADS")
    package = Path(warm.__file__).parent / "theory.py"
    stat = package.stat()
    try:
        os.utime(package, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # an edited module
        assert warm.fingerprint() != key
    finally:
        os.utime(package, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert warm.fingerprint() == key


def test_the_worker_line_reads_back():
    """worker_usage parses what the worker logs (scripts/real_world_tables.py sums it per stage)."""
    log = ("2026-12-06 19:04:09,195 INFO bonbon: done: {'prompts': 234}\n"
           f"2026-12-06 19:04:09,210 INFO bonbon: {warm.WORKER_LINE % (9648, 132.44, 1341.4)}\n"
           f"{warm.WORKER_LINE % (7, 0.04, 365.0)}\n")
    assert warm.worker_usage(log) == [(132.4, 1341.0), (0.0, 365.0)]
    assert warm.worker_usage("warm worker 1: 2.0 CPU-s") == []
