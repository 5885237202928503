#!/bin/bash
# htcondor-up.sh - the overlay pool's central manager for the tests: collector, negotiator
# and schedd of HTCondor (Debian 13's 23.9 packages) on 127.0.0.1, as root, without systemd.
# Idempotent: on a running pool it only re-checks (about 1 s).
#
# Debian 13 packages HTCondor, Debian 12 does not. On a Debian 12 host the daemons and the
# command-line tools run from a Debian 13 root filesystem (mmdebstrap, cached), and thin
# wrappers in /usr/local/bin make condor_submit, condor_q, ... work from the host as on a
# real submit host: same files (/tmp, /home, /root, the working directory), same users.
# On a Debian 13 host the native packages are used and nothing is wrapped.
#
# Security as in a production overlay pool: IDTOKENS (drones) and FS (local users and
# tools). The pool signing key is root's; the drone token belongs to the pilot account
# ($HTCONDOR_DRONE_USER) alone. The test account $HTCONDOR_SUBMIT_USER submits Dask
# workers: HTCondor refuses jobs owned by root, as on every real schedd.
set -euo pipefail

STATE=${HTCONDOR_STATE:-/var/lib/tardis-sge-dask/htcondor}
DRONE_USER=${HTCONDOR_DRONE_USER:-tardis}
SUBMIT_USER=${HTCONDOR_SUBMIT_USER:-physicist}
TOKEN_DIR=$STATE/tokens
DRONE_TOKEN=$TOKEN_DIR/drone.token
TRUST_DOMAIN=tardis-sge-dask-test
WRAPPED_TOOLS="condor_submit condor_q condor_rm condor_hold condor_release condor_status
    condor_drain condor_off condor_on condor_history condor_config_val condor_version
    condor_ping condor_who condor_qedit condor_reschedule condor_token_list"
SERVICE=htcondor-up
source "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------ 1. the packages
# (the answer is read whole: `grep -q` closing the pipe early fails it under pipefail)
candidate=$(apt-cache policy condor 2>/dev/null || true)
if [[ $candidate == *"Candidate: "[0-9]* ]]; then
    NATIVE=1
    ROOT=""
    install_packages condor
else
    # no condor in this release's archive (Debian 12): a Debian 13 root filesystem
    NATIVE=0
    ROOT=$STATE/root
    install_packages mmdebstrap bubblewrap
    if [ ! -x "$ROOT/usr/sbin/condor_master" ]; then
        log "building a Debian 13 root filesystem with HTCondor in $ROOT"
        rm -rf "$ROOT.new"; mkdir -p "$STATE"
        mmdebstrap --quiet --variant=apt --include=condor trixie "$ROOT.new" \
            || die "mmdebstrap of Debian 13 with condor failed"
        rm -rf "$ROOT"; mv "$ROOT.new" "$ROOT"
        log "root filesystem ready ($(du -sh "$ROOT" | cut -f1))"
    fi
fi
log "HTCondor $(${ROOT:+chroot "$ROOT"} condor_version | head -n1 | cut -d' ' -f2)"

# -------------------------------------------------------------- 2. accounts
# One user database for the host and the root filesystem (its passwd/group are bound from
# the host), so the schedd knows the job owners the host knows.
getent passwd condor >/dev/null || useradd --system --home-dir /var/lib/condor --shell /usr/sbin/nologin condor
for user in "$DRONE_USER" "$SUBMIT_USER"; do
    id "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
done
if [ "$NATIVE" = 0 ]; then
    for d in var/lib/condor var/log/condor var/lib/condor/spool var/lib/condor/execute run/condor var/lock/condor; do
        mkdir -p "$ROOT/$d"; chown condor:condor "$ROOT/$d"
    done
fi

# ---------------------------------------------------------- 3. configuration
CONF_NEW=$(cat <<EOF
# written by services/htcondor-up.sh: the tests' overlay central manager
CONDOR_HOST = 127.0.0.1
COLLECTOR_HOST = 127.0.0.1:9618
NETWORK_INTERFACE = 127.0.0.1
DAEMON_LIST = MASTER, COLLECTOR, NEGOTIATOR, SCHEDD
# one port per daemon: drones reach the collector on 9618 and register through CCB
USE_SHARED_PORT = False
TRUST_DOMAIN = $TRUST_DOMAIN
UID_DOMAIN = $TRUST_DOMAIN

# IDTOKENS for drones, FS for the users and tools of this host
SEC_DEFAULT_AUTHENTICATION_METHODS = FS, IDTOKENS
SEC_CLIENT_AUTHENTICATION_METHODS = FS, IDTOKENS
ALLOW_ADMINISTRATOR = \$(ALLOW_ADMINISTRATOR) $DRONE_USER@\$(UID_DOMAIN)

# a test waits seconds, not minutes, for a match
NEGOTIATOR_INTERVAL = 2
NEGOTIATOR_MIN_INTERVAL = 1
NEGOTIATOR_CYCLE_DELAY = 1
SCHEDD_INTERVAL = 2
SCHEDD_MIN_INTERVAL = 1
NEGOTIATOR_UPDATE_AFTER_CYCLE = True
COLLECTOR_UPDATE_INTERVAL = 5
JOB_START_DELAY = 0
SHADOW_QUEUE_UPDATE_INTERVAL = 5
EOF
)
CONF=$ROOT/etc/condor/config.d/50-tardis-sge-dask.conf
CONF_CHANGED=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$CONF_NEW" ]; then
    echo "$CONF_NEW" > "$CONF"; chmod 644 "$CONF"; CONF_CHANGED=1; log "wrote $CONF"
fi

# ----------------------------------------------------- 4. running from the root
# A command inside the Debian 13 root, with the host's users, names, /tmp (FS
# authentication creates its proof there) and data directories. On Debian 13: as is.
host_data_dirs() {
    local d
    for d in /*; do
        case $d in
            /bin | /boot | /dev | /etc | /lib* | /proc | /run | /sbin | /sys | /usr | /var | /tmp | /lost+found) ;;
            *) [ -d "$d" ] && [ ! -L "$d" ] && printf '%s\n' "$d" ;;
        esac
    done
}

if [ "$NATIVE" = 0 ]; then
    # The wrappers carry their own copy of this logic: they must work without this script.
    WRAPPER=/usr/local/lib/tardis-sge-dask/condor-tool
    mkdir -p "$(dirname "$WRAPPER")"
    WRAPPER_NEW=$(cat <<EOF
#!/bin/bash
# Installed by tardis-sge-dask services/htcondor-up.sh: runs the HTCondor tool named like
# this link from the Debian 13 root $ROOT (Debian 12 packages no HTCondor), with the
# host's users, /tmp and data directories, in the caller's working directory.
set -euo pipefail
root=$ROOT
binds=(--ro-bind "\$root" / --proc /proc --dev /dev --bind /tmp /tmp)
for f in /etc/passwd /etc/group /etc/hosts /etc/hostname /etc/resolv.conf; do
    [ -e "\$f" ] && binds+=(--ro-bind "\$f" "\$f")
done
for d in /*; do
    case \$d in
        /bin | /boot | /dev | /etc | /lib* | /proc | /run | /sbin | /sys | /usr | /var | /tmp | /lost+found) ;;
        *) [ -d "\$d" ] && [ ! -L "\$d" ] && binds+=(--bind "\$d" "\$d") ;;
    esac
done
# the spool is the schedd's; tools only read it (condor_history)
binds+=(--ro-bind "\$root/var/lib/condor" /var/lib/condor)
exec bwrap "\${binds[@]}" --chdir "\$PWD" -- "\$(basename "\$0")" "\$@"
EOF
)
    if [ "$(cat "$WRAPPER" 2>/dev/null)" != "$WRAPPER_NEW" ]; then
        echo "$WRAPPER_NEW" > "$WRAPPER"; chmod 755 "$WRAPPER"; log "wrote $WRAPPER"
    fi
    for tool in $WRAPPED_TOOLS; do
        ln -sfn "$WRAPPER" "/usr/local/bin/$tool"
    done
    # root runs the daemons: bubblewrap keeps every capability (the schedd switches to job
    # owners) and mounts /proc, /dev and the host's files only in the daemons' namespace
    in_root() {
        local -a binds=(--bind "$ROOT" / --proc /proc --dev /dev --bind /tmp /tmp --cap-add ALL)
        local f d
        for f in /etc/passwd /etc/group /etc/hosts /etc/hostname /etc/resolv.conf; do
            [ -e "$f" ] && binds+=(--ro-bind "$f" "$f")
        done
        for d in $(host_data_dirs); do binds+=(--bind "$d" "$d"); done
        bwrap "${binds[@]}" --chdir / -- "$@"
    }
else
    in_root() { "$@"; }
fi

# ---------------------------------------------------------------- 5. the daemons
MASTER_PIDFILE=$STATE/master.pid
pool_answers() { condor_status -collector -af Name 2>/dev/null | grep -q . && condor_q -totals >/dev/null 2>&1; }
if pid=$(alive "$MASTER_PIDFILE" condor_master) && pool_answers; then
    if [ "$CONF_CHANGED" = 1 ]; then
        log "reconfiguring the running pool (master pid $pid)"
        condor_reconfig >/dev/null 2>&1 || in_root condor_reconfig >/dev/null
    fi
    log "central manager already running (master pid $pid)"
else
    if [ -n "${pid:-}" ]; then stop_pid "$pid"; fi
    log "starting condor_master (collector, negotiator, schedd)"
    mkdir -p "$STATE"
    # -f: stay in the foreground, so the pid is the master's and nothing outlives it
    setsid bash -c "$(declare -f in_root host_data_dirs); ROOT='$ROOT'; in_root /usr/sbin/condor_master -f" \
        </dev/null >"$STATE/master.out" 2>&1 &
    launcher=$!
    # bwrap's child is the master (setsid + bwrap + master, or the master itself natively)
    master_pid() {
        local p
        for p in $(pgrep -x condor_master); do
            [ "$(ps -o sid= -p "$p" | tr -d ' ')" = "$launcher" ] && { echo "$p"; return 0; }
        done
        return 1
    }
    wait_for 30 master_pid || { tail -n 20 "$STATE/master.out"; die "condor_master did not start"; }
    master_pid > "$MASTER_PIDFILE"
    log "condor_master up (pid $(cat "$MASTER_PIDFILE"))"
fi
LOGDIR=$ROOT/var/log/condor
wait_for 60 pool_answers || { tail -n 20 "$LOGDIR/CollectorLog" "$LOGDIR/SchedLog" 2>/dev/null; die "the pool does not answer condor_status/condor_q"; }

# ------------------------------------------------------------------ 6. tokens
# The collector creates the signing key on its first start.
KEY=$ROOT/etc/condor/passwords.d/POOL
wait_for 30 test -s "$KEY" || die "no pool signing key at $KEY"
chmod 600 "$KEY"
install -d -m 755 "$TOKEN_DIR"
# A token signed by an older key (a rebuilt root) is replaced.
if [ ! -s "$DRONE_TOKEN" ] || [ "$KEY" -nt "$DRONE_TOKEN" ] \
    || [ "$(stat -c %U "$DRONE_TOKEN")" != "$DRONE_USER" ]; then
    # Only what a drone does: advertise its startd and master, read the pool.
    in_root condor_token_create -identity "condor_pool@$TRUST_DOMAIN" \
        -authz ADVERTISE_STARTD -authz ADVERTISE_MASTER -authz READ > "$DRONE_TOKEN.new"
    chown "$DRONE_USER:" "$DRONE_TOKEN.new"; chmod 600 "$DRONE_TOKEN.new"
    mv "$DRONE_TOKEN.new" "$DRONE_TOKEN"
    log "drone token for $DRONE_USER: $DRONE_TOKEN"
fi

# ------------------------------------------------------------- 7. smoke test
out=$(cd /tmp && runuser -u "$SUBMIT_USER" -- condor_q -totals 2>&1) || { echo "$out"; die "condor_q as $SUBMIT_USER failed"; }
log "ready: master pid $(cat "$MASTER_PIDFILE"), collector 127.0.0.1:9618, drone token $DRONE_TOKEN$([ "$NATIVE" = 0 ] && echo ", root $ROOT")"
