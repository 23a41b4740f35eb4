#!/usr/bin/env bash
# Sample the summed RSS of a process and all its descendants every few seconds until it exits; print the
# peak. Beside /usr/bin/time -v, whose "Maximum resident set size" is the largest single process, not the
# sum of jobs running at once.   perf/rss_tree.sh PID [seconds] > rss.log
pid=$1; every=${2:-5}; peak=0
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
while kill -0 "$pid" 2>/dev/null; do
    kb=0
    for p in $(tree "$pid"); do
        v=$(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null); kb=$((kb + ${v:-0}))
    done
    [ "$kb" -gt "$peak" ] && peak=$kb
    echo "$(date -u +%T) ${kb} kB"
    sleep "$every"
done
echo "peak summed RSS: $((peak / 1024)) MB"
