"""The default DAG from an empty results/, for two checkouts side by side on one machine (issue 23).

    python perf/bench_dag.py /tmp/before /tmp/after [--rounds 2] [--config warm_start=false]

Each round runs every checkout once, in alternating order (before, after; then after, before), from an
empty results/, logs/, benchmarks/ and .snakemake/, with the interpreter of this script. Per run it
prints:

- wall: from `snakemake --cores 2` starting to its exit;
- CPU: user + system seconds of every process the run started, Snakemake, its jobs, and processes
  that left the tree (warm servers and their workers: this process becomes their subreaper, stops the
  run's warm servers when Snakemake exits and waits for them, so their CPU is counted too);
- start-up: the seconds every Python process of the run spent importing modules, summed over the
  top-level imports that `PYTHONPROFILEIMPORTTIME` reports (the jobs', the warm servers' and
  Snakemake's own), and its share of CPU. Import times are wall time, so on a quiet machine this is
  the CPU spent before a job's first line of work, plus a job's first model-class import;
- jobs: how many jobs ran.

Each checkout's own `src/` is put first on PYTHONPATH, so the same interpreter runs either package.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")  # a top-level import: no indent


def become_subreaper() -> None:
    """Orphans of the run (warm servers, their workers) become this process's children."""
    PR_SET_CHILD_SUBREAPER = 36
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def reap_all() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def import_seconds(text: str) -> float:
    return sum(int(m.group(1)) for m in map(IMPORT_LINE.match, text.splitlines()) if m) / 1e6


def run_once(checkout: Path, extra: list[str]) -> dict[str, float]:
    for part in ("results", "logs", "benchmarks", ".snakemake"):
        shutil.rmtree(checkout / part, ignore_errors=True)
    servers = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))  # this run's warm servers alone
    env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "PYTHONPROFILEIMPORTTIME": "1",
           "BONBON_WARM_DIR": str(servers)}
    cpu0, start = children_cpu(), time.perf_counter()
    with open(checkout / "bench_dag.err", "w") as err:
        done = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *extra], cwd=checkout,
                              env=env, stdout=subprocess.DEVNULL, stderr=err)
    wall = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "bonbon.warm", "stop"], env=env, capture_output=True)
    reap_all()
    cpu = children_cpu() - cpu0
    text = (checkout / "bench_dag.err").read_text(errors="replace")
    for log in servers.rglob("*.log"):
        text += "\n" + log.read_text(errors="replace")
    shutil.rmtree(servers, ignore_errors=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: snakemake failed ({done.returncode}); see bench_dag.err")
    startup = import_seconds(text)
    jobs = len(list((checkout / "benchmarks").rglob("*.tsv")))
    return {"wall": wall, "cpu": cpu, "startup": startup, "share": startup / cpu, "jobs": jobs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkouts", nargs=2, type=Path, help="before and after")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--config", nargs="*", default=[], help="--config overrides for both runs")
    args = ap.parse_args()
    become_subreaper()
    extra = ["--config", *args.config] if args.config else []
    rows = []
    for round_ in range(args.rounds):
        order = args.checkouts if round_ % 2 == 0 else args.checkouts[::-1]
        for checkout in order:
            result = run_once(checkout.resolve(), extra)
            rows.append((round_, checkout, result))
            print(f"round {round_} {checkout}: wall {result['wall']:.0f} s, CPU {result['cpu']:.0f} s, "
                  f"start-up {result['startup']:.0f} s ({100 * result['share']:.0f}% of CPU), "
                  f"{result['jobs']} jobs", flush=True)
    for checkout in args.checkouts:
        walls = [r["wall"] for _, c, r in rows if c == checkout]
        print(f"{checkout}: wall {min(walls):.0f}-{max(walls):.0f} s over {len(walls)} run(s)")


if __name__ == "__main__":
    main()
