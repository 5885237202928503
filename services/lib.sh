# Shared helpers of the service bring-up scripts (sourced, not run). Set SERVICE first.
T0=$(date +%s.%N)
# awk, not bc: bc is not part of a minimal Debian
log() { printf '[%s %6.1fs] %s\n' "$SERVICE" "$(awk -v now="$(date +%s.%N)" -v t0="$T0" 'BEGIN { print now - t0 }')" "$*"; }
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
