#!/usr/bin/env bash
# Start a one-node SLURM 22.05 cluster on this machine, for testing the workflow's SLURM profile
# (tests/test_slurm.py, perf/bench_slurm.sh). Debian/Ubuntu only; must run as root.
#
#   scripts/slurm/start-local-cluster.sh          # install if needed, start, wait for the node
#   sinfo; snakemake --profile profiles/slurm ...
#   scripts/slurm/stop-local-cluster.sh           # stop exactly the daemons started here
#
# What it sets up, all under $SLURM_STATE_DIR (default /tmp/bonbon-slurm), plus the link
# /etc/slurm/slurm.conf -> $STATE/slurm.conf (refused if a real config is there):
#   - munged on its own socket and key (munge/), so it cannot clash with a system munge;
#   - slurm.conf + gres.conf: one node on 127.0.0.1 with this machine's CPU/memory layout (slurmd -C),
#     two partitions over it, "cpu" (default) and "gpu" (the names profiles/slurm/config.yaml uses),
#     and SLURM_GPU_COUNT fake GPUs (char devices dev/fakegpuN made with mknod c 1 3, type "fake"), so
#     that --gpus=1 / --gpus=fake:1 are scheduled like on a GPU cluster; the jobs run on the CPU;
#   - no accounting database: sacct does not work, so Snakemake must poll with
#     --slurm-status-command squeue; MinJobAge=300 keeps finished jobs visible to squeue long enough
#     (the plugin wants MinJobAge >= 3 x --slurm-init-seconds-before-status-checks, else it falls back
#     to sacct and waits for ever);
#   - slurmctld and slurmd started directly (no systemd), their pids recorded in $STATE/pids.
# Idempotent: if the recorded daemons are alive and the node answers, it only says so.
#
# Environment: SLURM_STATE_DIR, SLURM_GPU_COUNT (2 fake GPUs), SLURMCTLD_PORT (6817), SLURMD_PORT (6818),
# SLURM_START_TIMEOUT (seconds to wait for the node, 60), SLURM_NO_INSTALL=1 (never run apt-get).
# On a machine with real GPUs, SLURM_GPU_DEVICES="/dev/nvidia0 /dev/nvidia1" uses those device files
# instead of fakes (and SLURM_GPU_TYPE, e.g. a100, types them; untyped by default): SLURM then gives
# each GPU job its own GPU and sets CUDA_VISIBLE_DEVICES in it, which a plain
# `snakemake --resources gpu=N` does not do.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/tmp/bonbon-slurm}
GPU_COUNT=${SLURM_GPU_COUNT:-2}
GPU_DEVICES=${SLURM_GPU_DEVICES:-}
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
CONF=$STATE/slurm.conf
PIDS=$STATE/pids

say() { echo "[start-local-cluster] $*"; }
die() {
    echo "[start-local-cluster] ERROR: $*" >&2
    for log in "$STATE"/log/*.log; do
        [ -s "$log" ] && { echo "--- last lines of $log:" >&2; tail -n 15 "$log" >&2; }
    done
    # leave nothing half-started behind: stop the daemons this run started (not an earlier run's)
    if [ "${STARTING:-0}" = 1 ] && [ -s "$PIDS" ]; then "$(dirname "$0")/stop-local-cluster.sh" >&2 || true; fi
    exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts munged/slurmctld/slurmd as root)"

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
recorded_pid() { [ -f "$PIDS" ] && awk -v n="$1" '$1 == n {print $2}' "$PIDS" | tail -n 1; }
node_state() { { SLURM_CONF=$CONF timeout 10 sinfo -h -N -o '%t' 2>/dev/null || true; } | head -n 1; }

# SLURM clients find the config through SLURM_CONF or /etc/slurm/slurm.conf (see below for why the
# latter is needed); a config there that is not ours belongs to a real cluster: leave it alone.
ETC_CONF=/etc/slurm/slurm.conf
etc_conf_is_ours() { [ -L "$ETC_CONF" ] && [ "$(readlink "$ETC_CONF")" = "$CONF" ]; }
if ! etc_conf_is_ours && { [ -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; }; then
    die "$ETC_CONF exists and is not a link to $CONF: not replacing a real SLURM config (use that cluster)"
fi
link_etc_conf() { etc_conf_is_ours || { mkdir -p /etc/slurm && ln -s "$CONF" "$ETC_CONF"; }; }

# --- already running? -------------------------------------------------------------------------------
if [ -f "$PIDS" ]; then
    all_alive=1
    for name in munged slurmctld slurmd; do alive "$(recorded_pid $name)" || all_alive=0; done
    if [ $all_alive = 1 ] && [[ "$(node_state)" =~ ^(idle|mix|alloc) ]]; then
        link_etc_conf
        say "already running (pids: $(tr '\n' ' ' < "$PIDS")), node $(node_state)"
        exit 0
    fi
    say "a previous start left $PIDS but the cluster is not healthy: stopping what it recorded"
    "$(dirname "$0")/stop-local-cluster.sh" || true
fi

# --- install -----------------------------------------------------------------------------------------
need=()
for cmd in munged mungekey slurmctld slurmd sbatch squeue sinfo; do
    command -v "$cmd" >/dev/null || need+=("$cmd")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "${SLURM_NO_INSTALL:-0}" = 1 ] && die "missing ${need[*]} and SLURM_NO_INSTALL=1"
    command -v apt-get >/dev/null || die "missing ${need[*]}; install slurm-wlm and munge (no apt-get here)"
    say "installing slurm-wlm and munge with apt-get (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; then
        apt-get update -qq >/dev/null || die "apt-get update failed"
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
            || die "apt-get install slurm-wlm munge failed"
    fi
fi
say "$(slurmctld -V)"

# --- state dir ---------------------------------------------------------------------------------------
mkdir -p "$STATE"/{ctld,spool,log,dev,munge}
chmod 755 "$STATE"
rm -f "$STATE"/log/*.log
: > "$PIDS"
STARTING=1

# --- GPUs: fake char devices (like /dev/null) unless real ones are given ---------------------------
if [ -n "$GPU_DEVICES" ]; then
    GPU_TYPE=${SLURM_GPU_TYPE:-}
    read -r -a devices <<< "$GPU_DEVICES"
    for dev in "${devices[@]}"; do [ -c "$dev" ] || die "SLURM_GPU_DEVICES: $dev is not a character device"; done
else
    GPU_TYPE=${SLURM_GPU_TYPE-fake}
    devices=()
    for ((i = 0; i < GPU_COUNT; i++)); do
        dev=$STATE/dev/fakegpu$i
        [ -c "$dev" ] || mknod "$dev" c 1 3 \
            || die "mknod $dev failed (no CAP_MKNOD?); SLURM_GPU_DEVICES=\"/dev/null /dev/zero\" SLURM_GPU_TYPE=fake uses existing char devices instead"
        devices+=("$dev")
    done
fi
GPU_COUNT=${#devices[@]}
: > "$STATE/gres.conf"
for dev in "${devices[@]}"; do
    echo "Name=gpu${GPU_TYPE:+ Type=$GPU_TYPE} File=$dev" >> "$STATE/gres.conf"
done
NODE_GRES=gpu:${GPU_TYPE:+$GPU_TYPE:}$GPU_COUNT

# --- munge -------------------------------------------------------------------------------------------
chown munge:munge "$STATE/munge"
chmod 711 "$STATE/munge"  # clients need to reach the socket; no listing
MUNGE_SOCKET=$STATE/munge/munge.socket
if [ ! -s "$STATE/munge/munge.key" ]; then
    mungekey --create --keyfile="$STATE/munge/munge.key" >/dev/null 2>&1 \
        || dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    chown munge:munge "$STATE/munge/munge.key"
    chmod 400 "$STATE/munge/munge.key"
fi
rm -f "$STATE/munge/munged.pid" "$MUNGE_SOCKET"
runuser -u munge -- munged --socket="$MUNGE_SOCKET" --key-file="$STATE/munge/munge.key" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" \
    --seed-file="$STATE/munge/munged.seed" \
    || { cat "$STATE/munge/munged.log" >&2 2>/dev/null; die "munged did not start"; }
for _ in $(seq 50); do [ -s "$STATE/munge/munged.pid" ] && [ -S "$MUNGE_SOCKET" ] && break; sleep 0.1; done
MUNGED_PID=$(cat "$STATE/munge/munged.pid" 2>/dev/null || true)
alive "$MUNGED_PID" || die "munged did not start (see $STATE/munge/munged.log)"
echo "munged $MUNGED_PID" >> "$PIDS"
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null || die "munge round trip failed"
say "munged running (pid $MUNGED_PID, socket $MUNGE_SOCKET)"

# --- slurm.conf --------------------------------------------------------------------------------------
HOST=$(hostname -s)
# CPU and memory layout as slurmd sees it, e.g. "CPUs=2 Boards=1 ... RealMemory=24105"
LAYOUT=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
[ -n "$LAYOUT" ] || die "slurmd -C printed no node layout"
cat > "$CONF" <<EOF
# Written by scripts/slurm/start-local-cluster.sh: a one-node test cluster, GPUs in gres.conf.
ClusterName=bonbon
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no cgroups in a container: track processes by parent pid, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
# cores and memory are consumable, so jobs share the node; without DefMemPerCPU a job without --mem
# would take all of the node's memory
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
# no accounting: Snakemake must poll with squeue, which sees a finished job for MinJobAge seconds
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
# a node that restarts comes back by itself
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 $LAYOUT Gres=$NODE_GRES State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
say "wrote $CONF ($HOST: $LAYOUT, Gres=$NODE_GRES (${devices[*]}), partitions cpu and gpu)"

# SLURM_CONF alone is not enough: inside a job the slurm-jobstep plugin drops every SLURM_* variable
# but the job's identity before it calls srun, so srun must find the config at the compiled-in path.
link_etc_conf
say "linked $ETC_CONF -> $CONF"

# --- daemons -----------------------------------------------------------------------------------------
export SLURM_CONF=$CONF
start_daemon() {  # name pidfile command...
    local name=$1 pidfile=$2 pid=""
    shift 2
    rm -f "$pidfile"
    "$@" || die "$name did not start"
    for _ in $(seq 100); do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        alive "$pid" && break
        sleep 0.1
    done
    alive "$pid" || die "$name did not start (no live pid in $pidfile)"
    echo "$name $pid" >> "$PIDS"
    say "$name running (pid $pid)"
}
# -c: a clean start (no jobs from an earlier run of this state dir); -i: ignore bad saved state
start_daemon slurmctld "$STATE/slurmctld.pid" slurmctld -c -i -f "$CONF"
start_daemon slurmd "$STATE/slurmd.pid" slurmd -N "$HOST" -f "$CONF"

for ((t = 0; t < TIMEOUT * 2; t++)); do
    state=$(node_state)
    [ "$state" = idle ] && break
    for name in slurmctld slurmd; do alive "$(recorded_pid $name)" || die "$name died while starting"; done
    sleep 0.5
done
[ "${state:-}" = idle ] || die "node not idle after ${TIMEOUT}s (state: ${state:-none}); see $STATE/log"
SLURM_CONF=$CONF sinfo
say "cluster up in ${SECONDS}s; pids in $PIDS; sinfo, sbatch, squeue work without SLURM_CONF"
