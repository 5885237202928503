#!/bin/bash
# site-shapes.sh up|down sge|slurm - give the local Grid Engine or SLURM the shape of a real,
# non-trivial site for tests/integration/test_init.py, and take it away again.
#
# Only that test runs while a shape is up (the tests run one at a time under the exclusive
# lock): the new queues and partitions would catch other tests' jobs that name none, with
# their short limits. `down` leaves the service as services/up.sh made it, and is safe to
# run at any time (also when `up` failed half-way, or twice). Both are idempotent.
#
# Grid Engine (on the one execution host, next to all.q and its PE smp):
#   short.q  4 slots, h_rt 0:30:00, h_vmem 4G per slot, pe_list "tsd_rr smp"
#            ($round_robin listed first: a drone must still choose the $pe_slots one)
#   mpi.q    8 slots, h_rt 2:00:00, pe_list tsd_rr only ($round_robin: one-core drones)
#   staff.q  user_lists tsd_staff, an access list without root or tardis (the tests' users)
#   h_vmem   consumable per slot (YES), 48G on the host (oversubscribed, as slots are)
# SLURM (one node, next to partition debug; slurmctld and slurmd are restarted for GresTypes):
#   short       MaxTime=30 (minutes), MaxCPUsPerNode=4, MaxMemPerNode=4096
#   gpu         MaxTime=04:00:00
#   restricted  AllowAccounts=tsd_physics (an account neither root nor tardis has)
#   gres/gpu:4  on the node. SLURM 22.05 refuses a count-only gpu GRES, so gres.conf names
#               four device files; they are empty regular files under /var/lib/slurm
#               (without cgroup device constraints nothing opens them; SLURM 24.11 logs
#               "not a valid character or block device" for each and still counts them)
#   CPUs=24     on the node instead of slurm-up.sh's 16, so that the test's drones of 8
#               (debug), 8 (gpu) and 4 (short) cores fit at once
# Only one partition has MaxCPUsPerNode. SLURM 24.11.5 (Debian 13) checks it against every
# CPU allocated on the node, whichever partition's job holds it (measured: a 4-CPU job of
# short stays PENDING (Resources) while a 1-CPU job of debug runs; 22.05 counts short's own
# jobs only), so two such partitions could not each run a drone at once, and short's drone
# has to start first (test_init.py asks for it first).
# `down sge` deletes those objects and resets the complex and the host; `down slurm` removes
# gres.conf and runs services/slurm-up.sh, which writes its own slurm.conf back and restarts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SERVICE=site-shapes
source "$here/lib.sh"
source "$here/sge-lib.sh"
action=${1:-}
system=${2:-}
H=$(hostname)

# ------------------------------------------------------------------ Grid Engine
SGE_QUEUES="short.q mpi.q staff.q"


# h_vmem's consumable column set to $1 (YES or NO), the rest of the table unchanged
sge_h_vmem_consumable() {
    local cfg=$1 want=$2
    qconf -sc > "$cfg/sc.cur"
    awk -v want="$want" '$1 == "h_vmem" {$6 = want} {print}' "$cfg/sc.cur" > "$cfg/sc"
    cmp -s "$cfg/sc.cur" "$cfg/sc" || qc -Mc "$cfg/sc"
}

sge_up() {
    local cfg; cfg=$(mktemp -d); trap 'rm -rf "$cfg"' RETURN
    # an access list of someone else: qconf -Au knows oticket, not oshare
    printf 'name    tsd_staff\ntype    ACL\nfshare  0\noticket 0\nentries daemon\n' > "$cfg/acl"
    if qconf -su tsd_staff >/dev/null 2>&1; then qc -Mu "$cfg/acl"; else qc -Au "$cfg/acl"; fi
    cat > "$cfg/pe" <<'EOF'
pe_name            tsd_rr
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $round_robin
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
    if qconf -sp tsd_rr >/dev/null 2>&1; then qc -Mp "$cfg/pe"; else qc -Ap "$cfg/pe"; fi
    sge_h_vmem_consumable "$cfg" YES
    qc -rattr exechost complex_values h_vmem=48G "$H"
    sge_queue short.q 4 00:30:00 4G "tsd_rr smp" NONE BATCH > "$cfg/short.q"
    sge_queue mpi.q 8 02:00:00 INFINITY tsd_rr NONE BATCH > "$cfg/mpi.q"
    sge_queue staff.q 4 INFINITY INFINITY smp tsd_staff BATCH > "$cfg/staff.q"
    for q in $SGE_QUEUES; do
        if qconf -sq "$q" >/dev/null 2>&1; then qc -Mq "$cfg/$q"; else qc -Aq "$cfg/$q"; fi
    done
    log "Grid Engine: queues $SGE_QUEUES, PE tsd_rr, access list tsd_staff, h_vmem consumable (48G on $H)"
}

sge_down() {
    local cfg q; cfg=$(mktemp -d); trap 'rm -rf "$cfg"' RETURN
    for q in $SGE_QUEUES; do
        qconf -sq "$q" >/dev/null 2>&1 || continue
        # a queue with jobs in it cannot be deleted: a failed test may have left some
        qstat -u '*' -q "$q" 2>/dev/null | awk 'NR > 2 {print $1}' | xargs -r qdel -f >/dev/null 2>&1 || true
        wait_for 30 sh -c "! qstat -u '*' -q $q 2>/dev/null | grep -q ." || true
        qc -dq "$q"
    done
    if qconf -sp tsd_rr >/dev/null 2>&1; then qc -dp tsd_rr; fi
    if qconf -su tsd_staff >/dev/null 2>&1; then qc -dul tsd_staff; fi
    if qconf -se "$H" | grep -q 'complex_values.*h_vmem'; then
        qc -rattr exechost complex_values NONE "$H"
    fi
    sge_h_vmem_consumable "$cfg" NO
    log "Grid Engine: back to services/sge-up.sh's shape (all.q, PE smp)"
}

# ------------------------------------------------------------------------ SLURM
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
GPU_FILES=/var/lib/slurm/tsd-gpu
SHAPE_CPUS=24
CTLD_LOG=/var/log/slurm/slurmctld.log
SLURMD_LOG=/var/log/slurm/slurmd.log

slurm_restart() {
    local pid
    if pid=$(alive /run/slurmctld.pid slurmctld); then stop_pid "$pid"; fi
    if pid=$(alive /run/slurmd.pid slurmd); then stop_pid "$pid"; fi
    start_daemon "$CTLD_LOG" /usr/sbin/slurmctld
    wait_for_daemon 60 slurmctld "$CTLD_LOG" sh -c 'scontrol ping | grep -q "is UP"' ||
        die_with_log "$CTLD_LOG" "slurmctld not UP after 60 s"
    start_daemon "$SLURMD_LOG" /usr/sbin/slurmd
    node_usable() { sinfo -h -n "$H" -o %T | grep -Ex 'idle|mixed|allocated|completing' >/dev/null; }
    if ! wait_for_daemon 30 slurmd "$SLURMD_LOG" node_usable; then
        scontrol update NodeName="$H" State=RESUME 2>/dev/null || true
        wait_for_daemon 30 slurmd "$SLURMD_LOG" node_usable ||
            die_with_log "$SLURMD_LOG" "node $H not usable: $(sinfo -h -n "$H" -o %T)"
    fi
}

slurm_up() {
    grep -q '^# generated by slurm-up.sh' "$CONF" || die "$CONF is not services/slurm-up.sh's"
    local new; new=$(mktemp)
    # slurm-up.sh's file with the shape's lines: GresTypes, the node's Gres, three partitions
    # (an `up` on a shaped file rebuilds the same file: the shape's lines are dropped first)
    grep -v -e '^GresTypes=' -e '^PartitionName=\(short\|gpu\|restricted\) ' -e '^# site-shapes' "$CONF" |
        sed -e "/^NodeName=/ s/ Gres=[^ ]*//" -e "/^NodeName=/ s/ State=/ Gres=gpu:4 State=/" \
            -e "/^NodeName=/ s/ CPUs=[0-9]* Sockets=1 CoresPerSocket=[0-9]* / CPUs=$SHAPE_CPUS Sockets=1 CoresPerSocket=$SHAPE_CPUS /" \
            > "$new"
    grep -q "^NodeName=.* CPUs=$SHAPE_CPUS " "$new" || die "no NodeName line with CPUs and CoresPerSocket in $CONF"
    cat >> "$new" <<'EOF'
# site-shapes.sh: a GRES and partitions of a real site (removed by site-shapes.sh down)
GresTypes=gpu
PartitionName=short Nodes=ALL MaxTime=30 MaxCPUsPerNode=4 MaxMemPerNode=4096 State=UP
PartitionName=gpu Nodes=ALL MaxTime=04:00:00 State=UP
PartitionName=restricted Nodes=ALL AllowAccounts=tsd_physics State=UP
EOF
    local i
    for i in 0 1 2 3; do [ -e "$GPU_FILES$i" ] || : > "$GPU_FILES$i"; done
    local gres="Name=gpu File=$GPU_FILES[0-3]"
    if cmp -s "$new" "$CONF" && [ "$(cat $GRES_CONF 2>/dev/null)" = "$gres" ] &&
        scontrol show node "$H" | grep -q 'Gres=gpu:4'; then
        rm -f "$new"; log "SLURM: already shaped"; return 0
    fi
    echo "$gres" > "$GRES_CONF"; chmod 644 "$GRES_CONF"
    install -m 644 "$new" "$CONF"; rm -f "$new"
    slurm_restart
    log "SLURM: partitions short, gpu, restricted; gres/gpu:4 on $H"
}

slurm_down() {
    rm -f "$GRES_CONF" "$GPU_FILES"[0-3]
    # a failed test may have left jobs in the shape's partitions
    local p
    for p in short gpu restricted; do scancel --partition="$p" 2>/dev/null || true; done
    # slurm-up.sh writes its own slurm.conf back and restarts both daemons when it differs
    SLURM_SMOKE=0 bash "$here/slurm-up.sh" | tail -n 1
    log "SLURM: back to services/slurm-up.sh's shape (partition debug)"
}

case "$action $system" in
    "up sge") sge_up ;;
    "down sge") sge_down ;;
    "up slurm") slurm_up ;;
    "down slurm") slurm_down ;;
    *) echo "usage: $0 up|down sge|slurm" >&2; exit 2 ;;
esac
