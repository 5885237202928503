# Shared helpers of the service bring-up scripts (sourced, not run). Set SERVICE first.
T0=$(date +%s.%N)
# awk, not bc: bc is not part of a minimal Debian
log() { printf '[%s %6.1fs] %s\n' "$SERVICE" "$(awk -v now="$(date +%s.%N)" -v t0="$T0" 'BEGIN { print now - t0 }')" "$*"; }
die() { log "ERROR: $*"; exit 1; }

# The one way a failed start ends: the reason, then the daemon's own last words, so that
# services/up.sh (which shows the last lines of this script's output) shows both.
# die_with_log LOGFILE REASON...
die_with_log() {
    local logfile=$1; shift
    log "ERROR: $*"
    if [ -s "$logfile" ]; then
        log "last lines of $logfile:"
        tail -n 15 "$logfile" | sed 's/^/    /'
    else
        log "($logfile is empty or missing)"
    fi
    exit 1
}

# pid from pidfile $1 if that process exists, is named $2 and is not a zombie (killed
# daemons can stay zombies for a while when PID 1 is not a real init)
alive() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1
          [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$2" ] &&
          ! grep -q '^State:[[:space:]]*Z' /proc/"$pid"/status 2>/dev/null && echo "$pid"; }
gone() { [ ! -d /proc/"$1" ] || grep -q '^State:[[:space:]]*Z' /proc/"$1"/status 2>/dev/null; }
# is any live (non-zombie) process named $1 (its comm, at most 15 characters)? Looks at
# every process, not at a pidfile: a daemonizing start forks before it writes its pidfile,
# and a pidfile left by an earlier run names a dead process. Builtins only: it runs in loops.
running() {
    local d comm state
    for d in /proc/[0-9]*; do
        read -r comm < "$d/comm" 2>/dev/null || continue
        [ "$comm" = "$1" ] || continue
        state=$(grep -m1 '^State:' "$d/status" 2>/dev/null) || continue
        [[ $state == *Z* ]] || return 0
    done
    return 1
}
# wait_for SECS cmd... : until cmd succeeds, at most SECS seconds of wall clock (a slow
# check, e.g. qconf against a qmaster still starting, must not stretch the bound)
wait_for() { local deadline=$((EPOCHSECONDS + $1)); shift
             while :; do
                 "$@" >/dev/null 2>&1 && return 0
                 [ "$EPOCHSECONDS" -gt "$deadline" ] && return 1
                 sleep 0.2
             done; }
# wait_for_daemon SECS NAME LOGFILE cmd... : like wait_for, but a daemon that has died is
# not waited for: when no process NAME is left (three looks in a row, to step over the
# fork of a daemonizing start), it ends the script through die_with_log LOGFILE.
# Returns 1 when SECS pass with the daemon alive but cmd still failing.
wait_for_daemon() {
    local deadline=$((EPOCHSECONDS + $1)) name=$2 logfile=$3 missing=0; shift 3
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        if running "$name"; then missing=0; else missing=$((missing + 1)); fi
        [ "$missing" -ge 3 ] && die_with_log "$logfile" "$name exited while starting"
        [ "$EPOCHSECONDS" -gt "$deadline" ] && return 1
        sleep 0.2
    done
}
# start_daemon LOGFILE cmd... : run a daemon's start command from /. Its output goes to a
# file, not a pipe: a daemon that keeps stdout open would block a $(...) for ever. A failing
# start command ends the script with its output and the daemon's log, never silently.
start_daemon() {
    local logfile=$1 out rc=0; shift
    out=$(mktemp)
    (cd / && "$@") >"$out" 2>&1 </dev/null || rc=$?
    if [ "$rc" != 0 ]; then
        sed 's/^/    /' "$out"; rm -f "$out"
        die_with_log "$logfile" "'$*' exited $rc"
    fi
    rm -f "$out"
}
stop_pid() { local pid=$1; kill "$pid" 2>/dev/null || true
             wait_for 30 gone "$pid" || kill -9 "$pid" 2>/dev/null || true; }

# install Debian packages "$@" unless all are installed, without letting their init
# scripts start daemons (there is no systemd; we start them ourselves, configured)
install_packages() {
    local n=$#
    [ "$(dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -c 'install ok installed')" = "$n" ] && return 0
    log "installing $*"
    local tmp_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; tmp_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" </dev/null; then
        apt-get update -q </dev/null
        apt-get install -y -q --no-install-recommends "$@" </dev/null
    fi
    [ "$tmp_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    log "packages installed"
}
