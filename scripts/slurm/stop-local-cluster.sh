#!/usr/bin/env bash
# Stop the test cluster that scripts/slurm/start-local-cluster.sh started: only the daemons whose pids
# it recorded in $SLURM_STATE_DIR/pids (default /tmp/bonbon-slurm), never anything found by name.
# Jobs still running on the node are cancelled first. The state dir is kept (logs); pass --purge to
# delete it as well.
set -uo pipefail

STATE=${SLURM_STATE_DIR:-/tmp/bonbon-slurm}
PIDS=$STATE/pids
say() { echo "[stop-local-cluster] $*"; }

if [ ! -f "$PIDS" ]; then
    say "nothing recorded in $PIDS: no cluster started from $STATE is running"
else
    # cancel jobs while slurmctld still answers, so that none keeps running after slurmd is gone
    if [ -f "$STATE/slurm.conf" ]; then
        SLURM_CONF=$STATE/slurm.conf timeout 10 scancel --user="$(id -un)" 2>/dev/null || true
    fi
    # reverse order of start: slurmd, slurmctld, munged
    tac "$PIDS" | while read -r name pid; do
        [ -n "${pid:-}" ] || continue
        # the pid must still belong to the daemon recorded (pids get reused)
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        if [ "$comm" != "$name" ]; then
            say "$name (pid $pid) is not running"
            continue
        fi
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null
            say "$name (pid $pid) did not stop within 10 s: killed"
        else
            say "stopped $name (pid $pid)"
        fi
    done
    rm -f "$PIDS"
fi

# the link start-local-cluster.sh made, only if it still points into this state dir
ETC_CONF=/etc/slurm/slurm.conf
if [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$STATE/slurm.conf" ]; then
    rm -f "$ETC_CONF"
    say "removed the link $ETC_CONF"
fi

if [ "${1:-}" = --purge ]; then
    rm -rf "$STATE"
    say "removed $STATE"
fi
exit 0
