#!/usr/bin/env bash
# Stops the single-node cluster of .ci/slurm-up.sh: slurmd and slurmctld by the pids in their pid
# files, and munged only when slurm-up.sh started it. Safe to call when nothing runs.
set -uo pipefail

DIR="${LVIT_SLURM_DIR:-/tmp/lvit-slurm}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

stop() {
  local pidfile="$1" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  kill -0 "$pid" 2>/dev/null || return 0
  $SUDO kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  $SUDO kill -KILL "$pid" 2>/dev/null || true
}

stop "$DIR/slurmd.pid"
stop "$DIR/slurmctld.pid"
if [ -e "$DIR/munged.ours" ]; then
  stop /run/munge/munged.pid
  $SUDO rm -f "$DIR/munged.ours"
fi
echo "slurm-down: stopped the cluster of $DIR" >&2
