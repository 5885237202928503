#!/bin/bash
# sge-up.sh - bring up a single-host Son of Grid Engine 8.1.9 cluster from Debian 12 or 13
# packages, without systemd, as root, non-interactively. Idempotent: re-running it
# on a working cluster only re-checks/re-applies config (takes ~1 s).
#
# Result: sge_qmaster + sge_execd running on $(hostname), queue all.q with
# $SGE_SLOTS slots, PE "smp", root jobs allowed (min_uid/min_gid=0), scheduler
# interval 1 s, accounting flushed every 1 s (qacct usable right after a job ends).
# Clients (qsub/qstat/qdel/qacct) work without any env vars (Debian defaults to
# SGE_ROOT=/var/lib/gridengine, SGE_CELL=default).
set -euo pipefail

SGE_SLOTS=${SGE_SLOTS:-16}          # oversubscribed on purpose: test drones mostly sleep
SGE_SMOKE=${SGE_SMOKE:-1}                 # 1: finish with a qsub -sync y smoke test
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
COMMON=$SGE_ROOT/$SGE_CELL/common
QM_PIDFILE=/var/spool/gridengine/qmaster/qmaster.pid
QM_LOG=/var/spool/gridengine/qmaster/messages
H=$(hostname)
EXECD_LOG=/var/spool/gridengine/execd/$H/messages
SERVICE=sge-up
source "$(dirname "$0")/lib.sh"
qm_ok() { qconf -sh; }
execd_pidfile() { ls /var/spool/gridengine/execd/*/execd.pid 2>/dev/null | head -n1; }
execd_reports_load() { qhost -h "$H" -xml | grep "name='load_avg'>[0-9]" >/dev/null; }
source "$(dirname "$0")/sge-lib.sh"

# ---------------------------------------------------------------- 1. packages
# the master's debconf answers must be in place before its postinst runs
debconf-set-selections <<EOF
gridengine-common shared/gridengineconfig boolean true
gridengine-common shared/gridenginecell string $SGE_CELL
gridengine-common shared/gridenginemaster string $H
EOF
install_packages gridengine-master gridengine-exec gridengine-client

# the master postinst runs init_cluster only on first install; redo it if the spool is gone
if [ ! -e /var/spool/gridengine/spooldb/sge ]; then
    log "initialising cluster spool"
    for d in /var/spool/gridengine/qmaster/job_scripts /var/spool/gridengine/spooldb /var/spool/gridengine/execd $COMMON; do
        mkdir -p "$d"; chown sgeadmin:sgeadmin "$d"
    done
    [ -e $COMMON/bootstrap ] || install -m0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap $COMMON/bootstrap
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL /var/spool/gridengine/spooldb sgeadmin" sgeadmin
fi

# ------------------------------------------------- 2. host name resolution fix
# qmaster reverse-resolves every client's address and refuses a client whose address maps
# to another name than the client's own ("client IP resolved to host name "localhost". This
# is not identical to clients host name ..."). host_aliases makes SGE treat those names as
# one host. SGE itself speaks IPv4 only, so it needs an IPv4 address for $H.
if ! getent ahostsv4 "$H" >/dev/null; then
    echo "127.0.1.1 $H" >> /etc/hosts; log "added '127.0.1.1 $H' to /etc/hosts"
fi
# every address of $H (ahosts: IPv6 ones too, which ahostsv4 leaves out)
ADDRS=$(getent ahosts "$H" | awk '{print $1}' | sort -u)
# When $H resolves only through loopback (Debian's own "127.0.1.1 $H" line), a client's
# connection to $H comes from 127.0.0.1, whose name is "localhost": alias that too.
if ! grep -qvE '^(127\.|::1$|::ffff:127\.)' <<<"$ADDRS"; then
    ADDRS=$(printf '%s\n127.0.0.1\n' "$ADDRS" | sort -u)
fi
ALIASES=$(set +o pipefail; for ip in $ADDRS; do getent hosts "$ip" | cut -d' ' -f2- ; done |
              tr ' \t' '\n\n' | grep -v '^$' | grep -vxF "$H" | sort -u | tr '\n' ' ')
ALIASES=${ALIASES% }
if [ -n "$ALIASES" ]; then
    NEW="$H $ALIASES"
    if [ "$(cat $COMMON/host_aliases 2>/dev/null)" != "$NEW" ]; then
        echo "$NEW" > $COMMON/host_aliases; chown sgeadmin:sgeadmin $COMMON/host_aliases
        log "host_aliases: $NEW"
        # qmaster only reads host_aliases at start-up
        if pid=$(alive $QM_PIDFILE sge_qmaster); then stop_pid "$pid"; fi
    fi
fi
echo "$H" > $COMMON/act_qmaster; chown sgeadmin:sgeadmin $COMMON/act_qmaster

# ------------------------------------------------------------- 3. sge_qmaster
if pid=$(alive $QM_PIDFILE sge_qmaster) && qm_ok >/dev/null 2>&1; then
    log "sge_qmaster already running (pid $pid)"
else
    if [ -n "${pid:-}" ]; then stop_pid "$pid"; fi
    # After an unclean stop (SIGKILL) qmaster "guesses" the next job number from the
    # jobs still in its DB, so ids of finished jobs get reused (qacct -j N then shows
    # two jobs). Make sure numbering continues after the highest id in the accounting.
    SEQ=/var/spool/gridengine/qmaster/jobseqnum
    MAXACCT=$(awk -F: '!/^#/ && $6+0 > m {m = $6+0} END {print m+0}' $COMMON/accounting 2>/dev/null || echo 0)
    if [ "${MAXACCT:-0}" -gt "$(cat $SEQ 2>/dev/null || echo 0)" ]; then
        echo "$MAXACCT" > $SEQ; chown sgeadmin:sgeadmin $SEQ
    fi
    log "starting sge_qmaster"
    start_daemon $QM_LOG /usr/sbin/sge_qmaster      # daemonizes, drops to sgeadmin
    wait_for_daemon 60 sge_qmaster $QM_LOG qm_ok || die_with_log $QM_LOG "sge_qmaster not answering after 60 s"
    log "sge_qmaster up (pid $(cat $QM_PIDFILE))"
fi

# ------------------------------------------------------------ 4. configuration
CFG=$(mktemp -d); trap 'rm -rf "$CFG"' EXIT
CONF_CHANGED=0
# global config: allow root jobs (Debian default min_uid/min_gid=1000 rejects them),
# flush accounting every second. -Mconf takes file names that are config names.
qconf -sconf global | sed -e '/^#/d' > "$CFG/current"
sed -e 's/^min_uid .*/min_uid                      0/' \
    -e 's/^min_gid .*/min_gid                      0/' \
    -e 's/flush_time=[0-9:]*/flush_time=00:00:01/' "$CFG/current" > "$CFG/global"
if ! cmp -s "$CFG/current" "$CFG/global"; then
    (cd "$CFG" && qc -Mconf global); CONF_CHANGED=1
fi
# scheduler: run every second instead of every 15 s
qconf -ssconf > "$CFG/sconf.cur"
sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$CFG/sconf.cur" > "$CFG/sconf"
cmp -s "$CFG/sconf.cur" "$CFG/sconf" || qc -Msconf "$CFG/sconf"
# host group
printf 'group_name @allhosts\nhostlist %s\n' "$H" > "$CFG/hgrp"
if qconf -shgrp @allhosts >/dev/null 2>&1; then qc -Mhgrp "$CFG/hgrp"; else qc -Ahgrp "$CFG/hgrp"; fi
# parallel environment "smp" (all slots on one host): qsub -pe smp N
cat > "$CFG/pe" <<'EOF'
pe_name            smp
slots              9999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    $pe_slots
control_slaves     FALSE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
if qconf -sp smp >/dev/null 2>&1; then qc -Mp "$CFG/pe"; else qc -Ap "$CFG/pe"; fi
# queue all.q
sge_queue all.q "$SGE_SLOTS" INFINITY INFINITY smp NONE > "$CFG/q"
if qconf -sq all.q >/dev/null 2>&1; then qc -Mq "$CFG/q"; else qc -Aq "$CFG/q"; fi
qconf -ss 2>/dev/null | grep -xF "$H" >/dev/null || qc -as "$H"      # submit host (admin host is automatic)
log "configuration applied"

# --------------------------------------------------------------- 5. sge_execd
EPF=$(execd_pidfile || true)
if pid=$(alive "${EPF:-/nonexistent}" sge_execd); then
    if [ "$CONF_CHANGED" = 1 ]; then
        # execd caches the global config (min_uid) - restart it so root jobs don't go to Eqw
        log "restarting sge_execd (pid $pid) to pick up new global config"
        stop_pid "$pid"
        pid=""
    else
        log "sge_execd already running (pid $pid)"
    fi
fi
if [ -z "${pid:-}" ]; then
    log "starting sge_execd"
    start_daemon "$EXECD_LOG" /usr/sbin/sge_execd   # registers itself as exec host (host is an admin host)
    wait_for_daemon 60 sge_execd "$EXECD_LOG" execd_reports_load ||
        die_with_log "$EXECD_LOG" "sge_execd did not report to qmaster within 60 s"
    log "sge_execd up (pid $(cat "$(execd_pidfile)"))"
fi
# clear a possible error state left over from an earlier broken run
qmod -c "all.q@$H" >/dev/null 2>&1 || true
wait_for_daemon 30 sge_execd "$EXECD_LOG" execd_reports_load || die_with_log "$EXECD_LOG" "sge_execd not reporting"

# ---------------------------------------------------------------- 6. smoke test
if [ "$SGE_SMOKE" = 1 ]; then
    out=$(cd /tmp && qsub -sync y -b y -j y -o /dev/null -N sge-up-smoke /bin/true 2>&1) || { echo "$out"; die "smoke test job failed"; }
    log "smoke test ok: $(echo "$out" | tail -n1)"
fi
log "ready: qmaster pid $(cat $QM_PIDFILE), execd pid $(cat "$(execd_pidfile)"), host $H"
