#!/usr/bin/env bash
# A one-node Slurm cluster from Debian's packages for the tests, everything under one
# directory and on its own ports, torn down by PID.
#   tests/slurm_cluster.sh up DIR     starts munged, slurmctld, slurmd; prints "export SLURM_CONF=..."
#   tests/slurm_cluster.sh down DIR   stops them
# Needs root (slurmd runs jobs as the submitting user) and the packages slurmctld slurmd
# slurm-client munge (scripts/install-deps.sh).
set -euo pipefail
cmd=${1:?up|down}; dir=$(mkdir -p "${2:?DIR}" && cd "$2" && pwd)
conf=$dir/slurm.conf

stop() {
  for d in slurmd slurmctld munged; do
    [ -f "$dir/$d.pid" ] && kill "$(cat "$dir/$d.pid")" 2>/dev/null || true
  done
  for i in $(seq 50); do
    alive=0
    for d in slurmd slurmctld munged; do
      [ -f "$dir/$d.pid" ] && kill -0 "$(cat "$dir/$d.pid")" 2>/dev/null && alive=1
    done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  rm -f "$dir"/*.pid
}

if [ "$cmd" = down ]; then stop; exit 0; fi
[ "$cmd" = up ] || { echo "usage: $0 up|down DIR" >&2; exit 2; }
stop
mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
chmod 700 "$dir/munge"
[ -s "$dir/munge/munge.key" ] || { dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$dir/munge/munge.key"; }
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
host=$(hostname -s)
cpus=$(nproc --all)  # plain nproc obeys OMP_NUM_THREADS
port=$((17000 + RANDOM % 2000))
cat > "$conf" <<CONF
ClusterName=lorampi-test
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
slurmctld -c -f "$conf"
slurmd -f "$conf"
export SLURM_CONF=$conf
for i in $(seq 100); do
  sinfo -h -o %T 2>/dev/null | grep -qE "^idle" && break
  sleep 0.1
done
sinfo -h -o %T | grep -qE "^idle" || { echo "slurm_cluster: node not idle: $(sinfo 2>&1)" >&2; tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2; exit 1; }
echo "export SLURM_CONF=$conf"
