#!/usr/bin/env bash
# A single-node Slurm on this machine, for the Slurm tests (`crates/prox/tests/slurm.rs`).
#
#   scripts/slurm-local.sh start   install slurm-wlm and munge if missing, configure one node
#                                  (this host, all its CPUs, most of its memory), start munged,
#                                  slurmctld and slurmd, wait until the node is idle
#   scripts/slurm-local.sh stop    stop the daemons this script started
#
# Runs as root without systemd (see docs/SLURM-LOCAL.md in ../shared). Starting an already
# running cluster is a no-op; installing is skipped when the packages are there.
set -euo pipefail

STATE_DIR=/run/prox-slurm-local
CONF=/etc/slurm/slurm.conf
WAIT_SECONDS=${PROX_SLURM_WAIT_SECONDS:-60}

log() { echo "slurm-local: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    if command -v sbatch >/dev/null && [[ -x /usr/sbin/slurmctld && -x /usr/sbin/munged ]]; then
        return
    fi
    log "installing slurm-wlm and munge"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

start_munge() {
    if munge -n </dev/null >/dev/null 2>&1; then
        return
    fi
    as_root mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
    if ! as_root test -f /etc/munge/munge.key; then
        as_root dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    as_root chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
    as_root chmod 400 /etc/munge/munge.key
    # --force: there is no sudo in the containers this runs in, and root owns the log folders.
    as_root /usr/sbin/munged --force
    as_root sh -c "cat /run/munge/munged.pid > $STATE_DIR/munged.pid"
}

write_config() {
    local host cpus mem_mib
    host=$(hostname -s)
    cpus=$(nproc)
    # Offer 80% of the memory: slurmd refuses a node that claims more than it has.
    mem_mib=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.8 }' /proc/meminfo)
    as_root mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/slurm
    as_root tee "$CONF" >/dev/null <<EOF
# Written by prox-rs scripts/slurm-local.sh: a single-node cluster for tests.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobCompType=jobcomp/none
MpiDefault=none
KillWait=5
# Small, so that the tests' 4-task arrays are split into several jobs as large runs are.
MaxArraySize=3
NodeName=$host CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

node_state() {
    sinfo --noheader --format=%T 2>/dev/null | head -n1 | tr -d '*~#' || true
}

start() {
    install_packages
    as_root mkdir -p "$STATE_DIR"
    start_munge
    if scontrol ping 2>/dev/null | grep -q 'is UP' && [[ $(node_state) == idle || $(node_state) == mixed || $(node_state) == allocated ]]; then
        log "already running"
        return
    fi
    write_config
    if ! pgrep -x slurmctld >/dev/null; then
        # -c: a clean start, without jobs left over from an earlier cluster.
        as_root /usr/sbin/slurmctld -c
    fi
    if ! pgrep -x slurmd >/dev/null; then
        as_root /usr/sbin/slurmd
    fi
    for pid_name in slurmctld slurmd; do
        pgrep -x "$pid_name" | head -n1 | as_root tee "$STATE_DIR/$pid_name.pid" >/dev/null || true
    done
    local waited=0 state
    while true; do
        state=$(node_state)
        if [[ $state == idle ]]; then
            break
        fi
        if [[ $state == down || $state == drained ]]; then
            as_root scontrol update NodeName="$(hostname -s)" State=RESUME 2>/dev/null || true
        fi
        if ((waited >= WAIT_SECONDS)); then
            log "the node is not idle after ${WAIT_SECONDS}s (state: '${state:-none}'); logs:"
            as_root tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "up: $(sinfo --noheader --format='%P %D %T %c CPUs %m MiB' | head -n1)"
}

stop_pid_file() {
    local file=$STATE_DIR/$1.pid pid
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    rm -f "$file"
    [[ -n $pid ]] || return 0
    as_root kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do
        as_root kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    as_root kill -9 "$pid" 2>/dev/null || true
}

stop() {
    # Stops the controller and every slurmd; then the recorded ids cover what shutdown missed.
    scontrol shutdown >/dev/null 2>&1 || true
    stop_pid_file slurmd
    stop_pid_file slurmctld
    stop_pid_file munged
    log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
