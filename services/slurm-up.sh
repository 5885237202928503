#!/bin/bash
# slurm-up.sh - bring up a single-host SLURM 22.05 cluster from Debian 12 packages,
# without systemd, as root, non-interactively. Idempotent: on a working cluster it
# only re-checks (about 1-2 s incl. smoke test).
#
#   SLURM_DBD=1 (default): also MariaDB + slurmdbd, so `sacct` works.
#   SLURM_DBD=0          : no database; accounting_storage/none (sacct then fails with
#                          "Slurm accounting storage is disabled"); finished jobs are
#                          still visible for MinJobAge=300 s in squeue -t all / scontrol,
#                          and every finished job is appended to /var/log/slurm/jobcomp.log.
#   SLURM_CPUS (default: nproc), partition "debug" (default partition).
# No cgroups needed: proctrack/linuxproc + task/none.
set -euo pipefail

SLURM_DBD=${SLURM_DBD:-1}
SLURM_CPUS=${SLURM_CPUS:-16}   # oversubscribed on purpose: test drones mostly sleep
SLURM_SMOKE=${SLURM_SMOKE:-1}
H=$(hostname)
MEM=$(awk '/^MemTotal/ {print int($2/1024)}' /proc/meminfo)
CONF=/etc/slurm/slurm.conf
DBPASS=slurmdbpass                        # local-only test database
T0=$(date +%s.%N)
log() { printf '[slurm-up %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
die() { log "ERROR: $*"; exit 1; }
# pid from pidfile $1 if that process exists, is named $2 and is not a zombie (killed
# daemons can stay zombies for a while when PID 1 is not a real init)
alive() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1
          [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] &&
          ! grep -q '^State:[[:space:]]*Z' /proc/"$pid"/status 2>/dev/null && echo "$pid"; }
gone() { [ ! -d /proc/"$1" ] || grep -q '^State:[[:space:]]*Z' /proc/"$1"/status 2>/dev/null; }
wait_for() { local secs=$1; shift; local i
             for ((i = 0; i < secs * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
             return 1; }
stop_pid() { local pid=$1; kill "$pid" 2>/dev/null || true
             wait_for 30 gone "$pid" || kill -9 "$pid" 2>/dev/null || true; }

# ---------------------------------------------------------------- 1. packages
PKGS="slurm-wlm munge"
[ "$SLURM_DBD" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
NPKG=$(echo $PKGS | wc -w)
if [ "$(dpkg-query -W -f='${Status}\n' $PKGS 2>/dev/null | grep -c 'install ok installed')" != "$NPKG" ]; then
    log "installing $PKGS"
    TMP_POLICY=0       # keep the packages' init scripts from starting daemons
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; TMP_POLICY=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends $PKGS </dev/null; then
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends $PKGS </dev/null
    fi
    [ "$TMP_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "packages installed"
fi

# ------------------------------------------------------------------- 2. munge
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey -c     # postinst normally does this
install -d -o munge -g munge -m 755 /run/munge
if pid=$(alive /run/munge/munged.pid munged) && { munge -n </dev/null | unmunge; } >/dev/null 2>&1; then
    log "munged already running (pid $pid)"
else
    [ -n "${pid:-}" ] && stop_pid "$pid"
    # --force: take over a stale socket/lock left by a killed munged
    runuser -u munge -- /usr/sbin/munged --force
    wait_for 20 sh -c 'munge -n </dev/null | unmunge' || die "munged not working"
    log "munged up (pid $(cat /run/munge/munged.pid))"
fi

# ------------------------------------------------------ 3. MariaDB + slurmdbd
if [ "$SLURM_DBD" = 1 ]; then
    if mariadb-admin ping >/dev/null 2>&1; then
        log "mariadb already running"
    else
        log "starting mariadb"
        /etc/init.d/mariadb start >/dev/null      # sysv script runs mysqld_safe; no systemd needed
        wait_for 60 mariadb-admin ping || die "mariadb not answering"
    fi
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
    DBDCONF_NEW=$(cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
EOF
)
    DBD_CHANGED=0
    if [ "$(cat /etc/slurm/slurmdbd.conf 2>/dev/null)" != "$DBDCONF_NEW" ]; then
        echo "$DBDCONF_NEW" > /etc/slurm/slurmdbd.conf; DBD_CHANGED=1
    fi
    chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf   # slurmdbd insists on 600
    if pid=$(alive /run/slurmdbd.pid slurmdbd) && [ "$DBD_CHANGED" = 0 ]; then
        log "slurmdbd already running (pid $pid)"
    else
        [ -n "${pid:-}" ] && stop_pid "$pid"
        log "starting slurmdbd"
        (cd / && /usr/sbin/slurmdbd)
        wait_for 60 bash -c '</dev/tcp/127.0.0.1/6819' || { tail -20 /var/log/slurm/slurmdbd.log; die "slurmdbd not listening"; }
        log "slurmdbd up (pid $(cat /run/slurmdbd.pid))"
    fi
    ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
    ACCT="AccountingStorageType=accounting_storage/none"
fi

# -------------------------------------------------------------- 4. slurm.conf
CONF_NEW=$(cat <<EOF
# generated by slurm-up.sh
ClusterName=ci
SlurmctldHost=$H
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: works in containers/sandboxes
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
$ACCT
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# trust the CPU/memory numbers below even if they differ from the hardware
SlurmdParameters=config_overrides
# keep finished jobs visible in squeue -t all / scontrol show job for 5 min
MinJobAge=300
# seconds between SIGTERM and SIGKILL on scancel / time limit
KillWait=5
SchedulerParameters=sched_interval=2
NodeName=$H CPUs=$SLURM_CPUS Sockets=1 CoresPerSocket=$SLURM_CPUS ThreadsPerCore=1 RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)
CONF_CHANGED=0
if [ "$(cat $CONF 2>/dev/null)" != "$CONF_NEW" ]; then
    echo "$CONF_NEW" > $CONF; chmod 644 $CONF; CONF_CHANGED=1; log "wrote $CONF"
fi
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd

# ---------------------------------------------------------- 5. slurmctld/slurmd
ctld_ok() { scontrol ping | grep 'is UP' >/dev/null; }
if pid=$(alive /run/slurmctld.pid slurmctld) && [ "$CONF_CHANGED" = 0 ] && ctld_ok 2>/dev/null; then
    log "slurmctld already running (pid $pid)"
else
    [ -n "${pid:-}" ] && stop_pid "$pid"
    log "starting slurmctld"
    (cd / && /usr/sbin/slurmctld)          # daemonizes, drops to SlurmUser=slurm
    wait_for 60 ctld_ok || { tail -20 /var/log/slurm/slurmctld.log; die "slurmctld not UP"; }
    log "slurmctld up (pid $(cat /run/slurmctld.pid))"
fi
node_state() { sinfo -h -n "$H" -o %T 2>/dev/null; }
if pid=$(alive /run/slurmd.pid slurmd) && [ "$CONF_CHANGED" = 0 ]; then
    log "slurmd already running (pid $pid)"
else
    [ -n "${pid:-}" ] && stop_pid "$pid"
    log "starting slurmd"
    (cd / && /usr/sbin/slurmd)
fi
node_usable() { node_state | grep -Ex 'idle|mixed|allocated|completing' >/dev/null; }
if ! wait_for 30 node_usable; then
    # e.g. down/drained after an unclean stop
    log "node state '$(node_state)' - resuming"
    scontrol update NodeName="$H" State=RESUME 2>/dev/null || true
    wait_for 30 node_usable || { tail -20 /var/log/slurm/slurmd.log; die "node $H not usable: $(node_state)"; }
fi
log "node $H is $(node_state)"

# ---------------------------------------------------------------- 6. smoke test
if [ "$SLURM_SMOKE" = 1 ]; then
    # (sbatch -W works too, but polls with back-off and returns ~7 s after the job ended)
    J=$(cd /tmp && sbatch --parsable -o /dev/null -J slurm-up-smoke --wrap true) || die "sbatch failed"
    job_done() { scontrol show job -o "$J" | grep -E 'JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)' >/dev/null; }
    wait_for 60 job_done || die "smoke job $J did not finish: $(scontrol show job -o "$J")"
    scontrol show job -o "$J" | grep 'JobState=COMPLETED' >/dev/null || die "smoke job $J: $(scontrol show job -o "$J")"
    log "smoke test ok: job $J COMPLETED"
fi
log "ready: munged $(cat /run/munge/munged.pid), slurmctld $(cat /run/slurmctld.pid), slurmd $(cat /run/slurmd.pid)$([ "$SLURM_DBD" = 1 ] && echo ", slurmdbd $(cat /run/slurmdbd.pid), mariadb $(cat /run/mysqld/mysqld.pid)")"
