"""Warm start: a workflow job runs in a fork of a process that has already imported torch, transformers,
pandas and the package, instead of paying about 4 s of imports in a fresh interpreter.

Each workflow script calls ``hand_over(globals())`` before its own imports. Where a warm server for
this interpreter, environment and package code is listening, the script's process (the *client*)
sends it the script file Snakemake wrote (preamble included), its working directory, environment,
umask and its standard streams (the file descriptors themselves, over a Unix socket); the server
forks, and the fork (the *worker*) runs the script exactly as ``python script`` would, in a session
of its own. The client forwards the signals it gets to the worker's process group and exits with
the worker's status; a worker whose client dies (SIGKILL included) kills its own process group. Where
no server is up, the client starts one in the background and runs its job cold, so a run never
waits for a server, and a server ends after ``BONBON_WARM_IDLE`` seconds (default 300) without a job.

The server is keyed by the interpreter, every environment variable (Snakemake sets the job's thread
counts there, which BLAS libraries read when they load), the package's source files and the
installed packages, so a changed file or setting gets a fresh server: a worker never runs stale code.

What it changes, besides start-up time: Snakemake's ``benchmark:`` files measure the job's process
tree, which no longer holds the worker, so they keep the job's wall time (``s``) but not its CPU
time or memory; the worker writes its own CPU seconds and peak RSS as the last line of the job's
log. Off with config key ``warm_start: false`` (or ``BONBON_WARM_START=0``); always off in a SLURM
job, where each job has a node to itself. ``python -m bonbon.warm stop`` stops this user's servers.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER_ENV = "BONBON_WARM_WORKER"
IDLE_ENV = "BONBON_WARM_IDLE"
# imported before the server forks: what the model and table jobs import (a module that fails to
# import is skipped: the job then imports it itself)
PRELOAD = ("torch", "pandas", "pyarrow.parquet", "transformers", "snakemake.logging",
           "snakemake.iocontainers", "transformers.models.gpt_neox.modeling_gpt_neox",
           "transformers.models.llama.modeling_llama", "transformers.models.deberta_v2.modeling_deberta_v2",
           "bonbon.generate", "bonbon.score", "bonbon.train", "bonbon.evaluate", "bonbon.aggregate",
           "bonbon.pairs", "bonbon.reference", "bonbon.toy", "bonbon.exact", "bonbon.plots")
# variables a shell or pytest sets on their own: they differ from job to job and no library reads them
_UNKEYED_ENV = {"PWD", "OLDPWD", "SHLVL", "_", "PYTEST_CURRENT_TEST", WORKER_ENV}
_HEADER = struct.Struct("!Q")


def hand_over(script_globals: dict[str, Any]) -> None:
    """Run the calling workflow script in a warm worker and exit with its status, where warm start is
    on and a server is up; otherwise return (and start a server for the next jobs) so that the script
    runs here, cold."""
    script = script_globals.get("__real_file__")  # the file Snakemake wrote: preamble + script
    smk = script_globals.get("snakemake")
    if os.environ.get(WORKER_ENV) or not script or smk is None or not enabled(smk.config):
        return
    try:
        path = socket_path(fingerprint())
    except OSError as error:
        print(f"bonbon.warm: warm start off for this job: {error}", file=sys.stderr)
        return
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(path))
    except OSError:
        start_server(path)
        return
    status = _delegate(client, script)
    if status is not None:
        _exit_like(status)


def enabled(config: dict[str, Any]) -> bool:
    """Warm start is on unless config key ``warm_start`` or ``BONBON_WARM_START=0`` says off, and never
    inside a SLURM job."""
    if os.environ.get("SLURM_JOB_ID") or os.environ.get("BONBON_WARM_START", "1") == "0":
        return False
    return bool(config.get("warm_start", True))


def fingerprint() -> str:
    """Which server may run this job: the interpreter, the environment, the package's source files and
    the installed packages (their directories' modification times)."""
    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}".encode())
    env = {k: v for k, v in os.environ.items() if k not in _UNKEYED_ENV}
    digest.update(json.dumps(env, sort_keys=True).encode())
    package = Path(__file__).resolve().parent
    for file in sorted(package.rglob("*.py")) + sorted(package.rglob("*.yaml")):
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
    for entry in sys.path:
        if entry.endswith("-packages") and os.path.isdir(entry):
            digest.update(f"{entry}\0{os.stat(entry).st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


def server_dir() -> Path:
    """This user's directory of server sockets (mode 700: whoever can connect can run code as us)."""
    base = os.environ.get("BONBON_WARM_DIR") or os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    folder = Path(base) / f"bonbon-warm-{os.getuid()}"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise PermissionError(f"{folder}: not a private directory of this user; set BONBON_WARM_DIR")
    return folder


def socket_path(key: str) -> Path:
    path = server_dir() / f"{key}.sock"
    if len(os.fsencode(path)) > 100:  # AF_UNIX addresses hold 107 bytes
        raise OSError(f"{path}: too long for a Unix socket; set BONBON_WARM_DIR to a shorter directory")
    return path


def start_server(path: Path) -> None:
    """Start a server for ``path`` in the background unless one is already starting."""
    marker = path.with_suffix(".starting")
    try:
        if time.time() - marker.stat().st_mtime < 120:
            return  # another job started one a moment ago
        marker.unlink()
    except FileNotFoundError:
        pass
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return
    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the server process
    env = {k: v for k, v in os.environ.items() if k != WORKER_ENV}
    subprocess.Popen([sys.executable, "-m", "bonbon.warm", "serve", str(path)], stdin=subprocess.DEVNULL,
                     stdout=log, stderr=log, env=env, start_new_session=True, close_fds=True)
    log.close()


def _delegate(client: socket.socket, script: str) -> int | None:
    """Send the job to the server; the worker's wait status, or None where no worker started (the job
    then runs here)."""
    request = json.dumps({"script": os.path.abspath(script), "cwd": os.getcwd(), "argv": sys.argv,
                          "env": dict(os.environ), "umask": _umask()}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        socket.send_fds(client, [_HEADER.pack(len(request))], [0, 1, 2])
        client.sendall(request)
        started = _read(client, 9)
    except OSError:
        started = b""
    if len(started) < 9 or started[:1] != b"P":
        client.close()
        return None
    worker = struct.unpack("!q", started[1:])[0]
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda s, _frame: _signal_group(worker, s))
    ended = _read(client, 9)
    if len(ended) < 9:
        print(f"bonbon.warm: the server stopped before worker {worker} ended", file=sys.stderr)
        _signal_group(worker, signal.SIGKILL)
        return 1 << 8
    return struct.unpack("!q", ended[1:])[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _read(conn: socket.socket, size: int) -> bytes:
    """Exactly ``size`` bytes, or fewer where the peer closed the connection."""
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _exit_like(status: int) -> None:
    """End this process the way the worker ended: its exit code, or killed by its signal."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def serve(path: Path, idle_seconds: float | None = None) -> None:
    """Import PRELOAD, listen on ``path`` and fork a worker for every job until ``idle_seconds``
    (``BONBON_WARM_IDLE``, default 300) pass without one, or until ``path`` is removed or replaced."""
    import selectors

    idle = float(os.environ.get(IDLE_ENV, 300)) if idle_seconds is None else idle_seconds
    _preload(os.environ.get("BONBON_WARM_PRELOAD", ",".join(PRELOAD)).split(","))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = path.parent / f".{os.getpid()}.bind"
    listener.bind(str(staging))
    listener.listen(64)
    os.replace(staging, path)  # clients see the socket only once the imports are done
    inode = path.stat().st_ino
    path.with_suffix(".starting").unlink(missing_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: _stop(path, inode))
    wake, wake_writer = socket.socketpair()  # a worker's end (SIGCHLD) wakes the loop at once
    for end in (wake, wake_writer):
        end.setblocking(False)
    signal.set_wakeup_fd(wake_writer.fileno())
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake, selectors.EVENT_READ)
    workers: dict[int, socket.socket] = {}
    last_job = time.monotonic()
    while workers or time.monotonic() - last_job < idle:
        for key, _ in selector.select(timeout=1.0):
            if key.fileobj is wake:
                _drain(wake)
                continue
            conn, _ = listener.accept()
            pid = _fork_worker(conn, [listener, wake, wake_writer, *workers.values()])
            if pid:
                workers[pid] = conn
            last_job = time.monotonic()
        _reap(workers)
        if not _still_bound(path, inode):
            break  # removed (`stop`) or replaced by a newer server: no new jobs here
    while workers:  # jobs still running: their clients wait for their status
        time.sleep(0.2)
        _reap(workers)
    _stop(path, inode)


def _preload(names: list[str]) -> None:
    import importlib

    for name in filter(None, names):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - a job that needs it imports it (and fails) itself
            print(f"bonbon.warm: not preloaded: {name}: {error}", flush=True)


def _drain(wake: socket.socket) -> None:
    try:
        while wake.recv(512):
            pass
    except BlockingIOError:
        pass


def _still_bound(path: Path, inode: int) -> bool:
    try:
        return path.stat().st_ino == inode
    except FileNotFoundError:
        return False


def _stop(path: Path, inode: int) -> None:
    if _still_bound(path, inode):
        path.unlink(missing_ok=True)
    os._exit(0)


def _reap(workers: dict[int, socket.socket]) -> None:
    """Send each ended worker's wait status to its client."""
    for pid in list(workers):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn = workers.pop(pid)
            try:
                conn.sendall(b"X" + struct.pack("!q", status))
            except OSError:
                pass  # the client is gone
            conn.close()


def _fork_worker(conn: socket.socket, server_sockets: list[socket.socket]) -> int | None:
    """Read one request and fork its worker; the worker's pid, or None for a broken request. The
    worker closes ``server_sockets`` (the listener, other clients' connections)."""
    try:
        conn.settimeout(10)
        header, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
        request = json.loads(_read(conn, _HEADER.unpack(header)[0]))
        conn.settimeout(None)
    except (OSError, ValueError, struct.error) as error:
        print(f"bonbon.warm: bad request: {error}", flush=True)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for sock in server_sockets:
            sock.close()
        _run_worker(conn, fds, request)  # never returns
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(b"P" + struct.pack("!q", pid))
    except OSError:
        os.kill(pid, signal.SIGKILL)
    return pid


def _run_worker(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
    """In the fork: become the job's process (session, streams, directory, environment, argv) and run
    its script as ``python script`` would; exit with its status."""
    import runpy
    import threading
    import traceback

    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"], **{WORKER_ENV: str(os.getpid())})
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(request["script"])  # as `python script` sets it
    threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
    code = 0
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (stop.code is not None)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported the way the interpreter reports it
        traceback.print_exc()
        code = 1
    _finish(int(code))


def _die_with_client(conn: socket.socket) -> None:
    """A worker outlives no client: when the client's end closes, kill the worker's process group."""
    try:
        conn.recv(1)
    finally:
        os.killpg(os.getpgrp(), signal.SIGKILL)


# A warm job's last log line: the worker's own CPU time and peak memory, which its benchmark file (the
# client's) does not have; scripts/real_world_tables.py reads it back with worker_usage
WORKER_LINE = "warm worker %d: %.1f CPU-s (children included), peak RSS %.0f MB"


def worker_usage(log_text: str) -> list[tuple[float, float]]:
    """(CPU seconds, peak RSS in MB) of every :data:`WORKER_LINE` in a job log's text."""
    import re

    pattern = r"warm worker \d+: ([\d.]+) CPU-s \(children included\), peak RSS (\d+) MB"
    return [(float(cpu), float(rss)) for cpu, rss in re.findall(pattern, log_text)]


def _finish(code: int) -> None:
    """What the interpreter does at exit (non-daemon threads joined, atexit handlers, streams flushed),
    then the worker's CPU time and peak memory as the job log's last line."""
    import atexit
    import logging
    import resource
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    logging.getLogger("bonbon").info(
        WORKER_LINE, os.getpid(), sum(u.ru_utime + u.ru_stime for u in usage),
        max(u.ru_maxrss for u in usage) / 1024)
    atexit._run_exitfuncs()  # logging.shutdown among them
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def stop_servers() -> int:
    """Stop this user's servers (their sockets removed: each ends once its running jobs end)."""
    folder = server_dir()
    sockets = list(folder.glob("*.sock"))
    for sock in sockets:
        sock.unlink(missing_ok=True)
    return len(sockets)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["serve"] and len(args) == 2:
        serve(Path(args[1]))
    elif args == ["stop"]:
        print(f"stopped {stop_servers()} warm server(s) in {server_dir()}")
    else:
        sys.exit("usage: python -m bonbon.warm serve SOCKET | stop")


if __name__ == "__main__":
    main()
