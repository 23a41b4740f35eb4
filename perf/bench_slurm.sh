#!/usr/bin/env bash
# Wall time of the generate stage run locally (--cores 2) against the same stage submitted through
# profiles/slurm to the local one-node SLURM (scripts/slurm/start-local-cluster.sh; started here if
# nothing answers to sinfo, and then stopped again at the end). Root, Debian/Ubuntu.
#
#   SNAKEMAKE=/work/venv/bin/snakemake perf/bench_slurm.sh [SHARDS] [REPEATS]
#
# The toy world and the prompts (config/config.yaml, or BENCH_CONFIG) are built once, locally, in a scratch directory;
# then `--forcerun generate --until generate` is timed REPEATS times each way, alternating. Both
# sides run the same shards with the same threads (2) and CPUs, so the difference is what SLURM adds
# per job: sbatch, the job's own Snakemake evaluating the Snakefile again, srun, and the status polls
# (squeue here, every 1 s at first, 10 s longer after each poll that finds nothing finished).
# The job's own runtime comes from its Snakemake benchmark file. Appends nothing; paste the table
# into perf/RESULTS.md (section "SLURM").
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SHARDS=${1:-1}
REPEATS=${2:-2}
SNAKEMAKE=${SNAKEMAKE:-snakemake}
SCRATCH=${BENCH_DIR:-/tmp/bonbon-bench-slurm}
CONFIG=${BENCH_CONFIG:-$REPO/config/config.yaml}
PYTHONPATH=$REPO/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONPATH

started=0
if ! sinfo -h >/dev/null 2>&1; then
    scripts/slurm/start-local-cluster.sh
    started=1
fi
cleanup() { if [ $started = 1 ]; then scripts/slurm/stop-local-cluster.sh; fi; }
trap cleanup EXIT

mkdir -p "$SCRATCH"
LAYER=$SCRATCH/profile-local-cluster
mkdir -p "$LAYER"
# the local cluster has no accounting (poll with squeue) and 24 GB: cap generate's memory
cat > "$LAYER/config.yaml" <<EOF
slurm-status-command: squeue
slurm-init-seconds-before-status-checks: 1
seconds-between-status-checks: 1
latency-wait: 5
set-resources:
  generate: {slurm_partition: gpu, gpu: 1, mem_mb: 4000, runtime: 240}
EOF

WORK=$SCRATCH/work
echo "building the toy world and prompts in $WORK (local, once)"
"$SNAKEMAKE" -s "$REPO/Snakefile" -d "$WORK" --configfile "$CONFIG" --cores 2 --quiet rules --set-scatter "generate=$SHARDS" \
    -- results/prompts/toy.parquet results/toy/base_model >/dev/null 2>&1

generate_seconds() {  # sum of the job runtimes (s) from the generate benchmark files
    awk 'FNR == 2 {s += $1} END {printf "%.1f", s}' "$WORK"/benchmarks/generate/toy/*.tsv
}
time_run() {  # label, extra snakemake args...
    local label=$1 start end
    shift
    start=$(date +%s.%N)
    timeout -s INT 1800 "$SNAKEMAKE" -s "$REPO/Snakefile" -d "$WORK" --configfile "$CONFIG" --set-scatter "generate=$SHARDS" \
        --forcerun generate --until generate --quiet rules "$@" >"$SCRATCH/$label.log" 2>&1 \
        || { tail -n 30 "$SCRATCH/$label.log" >&2; echo "$label run failed" >&2; exit 1; }
    end=$(date +%s.%N)
    printf '| %s | %s | %s | %s |\n' "$label" "$SHARDS" "$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.1f", b - a}')" \
        "$(generate_seconds)"
}

echo
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
echo
echo "| run | shards | wall s (snakemake command) | generate job s (benchmark) |"
echo "| --- | --- | --- | --- |"
for ((r = 0; r < REPEATS; r++)); do
    time_run local --cores 2
    time_run slurm --profile "$REPO/profiles/slurm" --profile "$LAYER"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
