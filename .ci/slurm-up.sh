#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine for the Slurm sweep tests
# (tests/sweep_slurm_test.ts), following ../shared/docs/slurm-local.md: Debian's slurm-wlm and
# munge, run as root (through sudo when not root). Its configuration, state, logs and pid files
# live in one folder of its own ($LVIT_SLURM_DIR, default /tmp/lvit-slurm) and never in
# /etc/slurm, so a machine that already belongs to a real cluster keeps its configuration;
# commands find it through SLURM_CONF, which this script prints as an `export` line (eval it).
# .ci/slurm-down.sh stops what this started.
#
# The node offers at most 2 CPUs (other work on the machine keeps the rest) and the requeue
# delay (cred_expire, 120 s by default) is cut to 5 s and the scheduler looks at pending jobs every
# second (60 s and 30 s by default), so that the tests' requeued tasks start again within
# seconds; neither matters for correctness.
set -euo pipefail

DIR="${LVIT_SLURM_DIR:-/tmp/lvit-slurm}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

for cmd in slurmctld slurmd munged sbatch scontrol; do
  command -v "$cmd" >/dev/null 2>&1 || {
    echo "slurm-up: $cmd not found (apt-get install slurm-wlm munge)" >&2
    exit 1
  }
done

$SUDO mkdir -p "$DIR/state" "$DIR/spool"
$SUDO chmod 755 "$DIR"

# munge: a key (the package usually made one) and a running daemon. munge -n | unmunge is the
# daemon's own health check; a daemon we start records its pid for slurm-down.sh.
if [ ! -s /etc/munge/munge.key ]; then
  $SUDO sh -c 'dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null'
  $SUDO chown munge:munge /etc/munge/munge.key
  $SUDO chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  $SUDO mkdir -p /run/munge
  $SUDO chown munge:munge /run/munge
  $SUDO runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null
  # Its pid file is /run/munge/munged.pid; the mark tells slurm-down.sh that it is ours.
  $SUDO touch "$DIR/munged.ours"
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
if [ "$CPUS" -gt 2 ]; then CPUS=2; fi
MEM="$(awk '/^MemTotal:/ { m = int($2 / 1024 / 2); print (m > 4096 ? 4096 : m) }' /proc/meminfo)"
$SUDO tee "$DIR/slurm.conf" >/dev/null <<EOF
# Single-node test cluster written by .ci/slurm-up.sh (slurm-local.md); not for production.
ClusterName=lvit-ci
SlurmctldHost=${HOST}
SlurmctldPort=${LVIT_SLURMCTLD_PORT:-6817}
SlurmdPort=${LVIT_SLURMD_PORT:-6818}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
ReturnToService=2
KillWait=10
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=600
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldPidFile=${DIR}/slurmctld.pid
SlurmdPidFile=${DIR}/slurmd.pid
SlurmctldLogFile=${DIR}/slurmctld.log
SlurmdLogFile=${DIR}/slurmd.log
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$DIR/slurm.conf"

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# -c: start clean (no jobs of an earlier cluster in this folder come back).
running "$DIR/slurmctld.pid" || $SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -c -f "$SLURM_CONF"
running "$DIR/slurmd.pid" || $SUDO env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF"

# Up once the node takes jobs: idle (or mixed/allocated when something already runs).
for _ in $(seq 100); do
  state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
  case "$state" in idle* | mix* | alloc*) break ;; esac
  sleep 0.2
done
case "$state" in
  idle* | mix* | alloc*) ;;
  *)
    echo "slurm-up: node $HOST is '${state:-unknown}' (logs: $DIR/slurmctld.log, $DIR/slurmd.log)" >&2
    exit 1
    ;;
esac
echo "slurm-up: node $HOST up ($CPUS CPUs, $MEM MiB) with $SLURM_CONF" >&2
echo "export SLURM_CONF=$SLURM_CONF"
