#!/bin/bash
# verify-release.sh - for maintainers, not run by CI or `make test`: try the README's two
# commands as a new user would on a fresh Debian system, here, without touching this host's
# running services.
#
#   .ci/verify-release.sh [trixie|bookworm] [--keep] [--no-cgroup] [--hosts-address] [--tests=PATHS]
#
# A minimal Debian root filesystem (mmdebstrap minbase, cached) plus what the README takes
# for granted (git, make, python3, ca-certificates) gets a fresh `git clone` of this repository's
# HEAD. In its own network, mount, PID, UTS and IPC namespaces, with its own host name, a
# veth pair with a non-loopback address, the host's cgroup mounts (read-only), /dev and
# /proc, it runs `make install` with NAT to the outside, then drops the NAT, refuses every
# packet out of its eth0 and runs `CI=true make test` offline. At the end every process of
# it is gone with its PID namespace. Prints a summary: pass/fail/skip counts, durations and
# the versions of Grid Engine, SLURM, MariaDB, Python, OpenSSH and HTCondor inside.
#
#   --keep           keep the root filesystem (default: removed after the run; logs stay)
#   --no-cgroup      do not bind the host's cgroup mounts (slurmd without a cgroup fs)
#   --hosts-address  the host name resolves to the veth address, not to Debian's 127.0.1.1
#   --tests=PATHS    run only these pytest paths (space-separated, after `make services image`)
#                    instead of `make test`: to chase one failure; its result is never a
#                    release result (the summary says "subset")
#
# Needs root, mmdebstrap, iproute2, util-linux and nft (installed from Debian if missing),
# about 5 GB in $VERIFY_WORK and 25-35 min on 2 cores. Runs one at a time (a lock).
set -euo pipefail

# ---------------------------------------------------------------- inner stage
# inner __inner ROOT NAME STATE LOGS CGROUP TESTS
# Runs as PID 1 of the new PID namespace, in the new mount/UTS/IPC namespaces and in the
# verification's network namespace. Everything it mounts disappears with it.
# Keep this block before anything that the host stage needs: after pivot_root only the copy
# and the two bound result directories are left.
inner() {
    ROOT=$2 NAME=$3 STATE=$4 LOGS=$5 CGROUP=$6 TESTS=$7
    hostname "$NAME"
    # the root a mount point of its own, so that it can become / (pivot_root)
    mount --bind "$ROOT" "$ROOT"
    mount --rbind /dev "$ROOT/dev"
    # own /dev/shm: the host's would be shared with its processes
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
    mount -t proc proc "$ROOT/proc"
    # a sysfs of this network namespace (its own eth0/lo), then the host's cgroups, read-only
    mount -t sysfs -o ro sysfs "$ROOT/sys"
    if [ "$CGROUP" = 1 ]; then
        mount --rbind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"
        awk -v top="$ROOT/sys/fs/cgroup" '$5 == top || index($5, top "/") == 1 {print $5}' /proc/self/mountinfo |
            while read -r m; do mount -o remount,bind,ro "$m"; done
    fi
    # where this stage leaves its results for the host side, reachable after the switch
    mkdir -p "$ROOT/run/verify-release/state" "$ROOT/run/verify-release/logs"
    mount --bind "$STATE" "$ROOT/run/verify-release/state"
    mount --bind "$LOGS" "$ROOT/run/verify-release/logs"
    STATE=/run/verify-release/state LOGS=/run/verify-release/logs
    # The copy becomes / of this mount namespace (pivot_root, not chroot), as on a real
    # machine: the kernel refuses user namespaces to chrooted processes (bwrap as a user), and
    # changing the propagation of / (bwrap as root) needs / to be a mount point.
    cd "$ROOT"
    mkdir -p .old-root
    pivot_root . .old-root
    cd /
    umount -l /.old-root
    rmdir /.old-root
    in_root() {
        env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
    }
    step() {    # step NAME cmd... : run in the root, log, record exit code and seconds
        local t0=$EPOCHSECONDS rc=0
        in_root "${@:2}" >"$LOGS/$1.log" 2>&1 </dev/null || rc=$?
        echo "$rc $((EPOCHSECONDS - t0))" >"$STATE/$1"
        return "$rc"
    }
    versions() {
        in_root bash -c '
            for p in gridengine-master slurm-wlm mariadb-server python3 openssh-server condor htcondor; do
                dpkg-query -W -f="\${Package} \${Version}\n" "$p" 2>/dev/null | grep -v " \$" || true
            done
            echo "venv-python $(/root/tardis-sge-dask/.venv/bin/python -c "import platform; print(platform.python_version())" 2>/dev/null)"
            echo "condor-version $(condor_version 2>/dev/null | head -n1 | cut -d" " -f2)"
            echo "debian $(cat /etc/debian_version)"' >"$STATE/versions" 2>&1 || true
    }
    # the machine as it comes: package lists fetched once (Debian's images ship none)
    step prepare apt-get update -q || { versions; exit 0; }
    step install bash -c 'cd /root/tardis-sge-dask && make install' || { versions; exit 0; }
    # the outside world goes away before the tests: the host side drops the NAT
    touch "$STATE/install.done"
    for _ in $(seq 600); do [ -e "$STATE/offline" ] && break; sleep 0.5; done
    [ -e "$STATE/offline" ] || { echo "the host did not drop the network" >"$STATE/test"; exit 0; }
    if [ -n "$TESTS" ]; then
        # shellcheck disable=SC2016 # expanded by the inner bash, from its argument
        step test bash -c 'cd /root/tardis-sge-dask && CI=true make services image &&
            CI=true .venv/bin/python -m pytest -ra $1' _ "$TESTS" || true
    else
        step test bash -c 'cd /root/tardis-sge-dask && CI=true make test' || true
    fi
    versions
    exit 0
}

# ----------------------------------------------------------------- host stage
main() {
RELEASE=trixie KEEP=0 CGROUP=1 HOSTS=loopback TESTS=
for arg in "$@"; do
    case $arg in
        trixie|bookworm) RELEASE=$arg ;;
        --keep) KEEP=1 ;;
        --no-cgroup) CGROUP=0 ;;
        --hosts-address) HOSTS=address ;;
        --tests=?*) TESTS=${arg#--tests=} ;;
        *) echo "usage: $0 [trixie|bookworm] [--keep] [--no-cgroup] [--hosts-address] [--tests=PATHS]" >&2; exit 2 ;;
    esac
done
case $RELEASE in trixie) DEBIAN=13 NET=10.213.13 ;; bookworm) DEBIAN=12 NET=10.213.12 ;; esac
[ "$(id -u)" = 0 ] || { echo "$0: needs root (namespaces, mounts, NAT)" >&2; exit 2; }

SELF=$(readlink -f "$0")
REPO=$(git -C "$(dirname "$SELF")" rev-parse --show-toplevel)
CACHE=${VERIFY_CACHE:-/var/cache/tardis-sge-dask-verify}
WORK=${VERIFY_WORK:-/var/tmp/tardis-sge-dask-verify}/$RELEASE
ROOT=$WORK/root STATE=$WORK/state LOGS=$WORK/logs
NAME=tsd-$RELEASE               # host name inside, network namespace, nft table
VETH=tsdv-$RELEASE              # host side of the veth pair (the other end is eth0 inside)
NFT_TABLE=tsd_verify_$RELEASE
BASE=$CACHE/$RELEASE-base.tar
# minbase: Essential and Priority: required, the floor of every Debian system (mount, ...);
# plus what the README takes for granted
BASE_VARIANT=minbase
BASE_PKGS=ca-certificates,git,make,python3
BASE_MAX_AGE_DAYS=7
T0=$EPOCHSECONDS
say() { printf '[verify-release %s %5ds] %s\n' "$RELEASE" $((EPOCHSECONDS - T0)) "$*"; }
die() { say "ERROR: $*"; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || die "another verify-release.sh runs (lock $CACHE/.lock)"

need() { command -v "$1" >/dev/null || { say "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" </dev/null >/dev/null; }; }
need mmdebstrap mmdebstrap
need nft nftables
for c in ip nsenter unshare chroot pivot_root git flock; do command -v "$c" >/dev/null || die "$c missing"; done

# refuse to delete a directory that still has something mounted below it
mounted_below() { awk -v d="$1" 'index($5, d "/") == 1 || $5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; }
OLD_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
INNER=""
net_down() {     # idempotent: no NAT, forwarding as it was, every packet out refused at once
    nft delete table ip "$NFT_TABLE" 2>/dev/null || true
    # forwarding is the host's, shared with a verification of the other release running at
    # the same time (VERIFY_CACHE): turning it off under that one's install cut its downloads
    nft list tables 2>/dev/null | grep -q ' tsd_verify_' ||
        echo "$OLD_FORWARD" > /proc/sys/net/ipv4/ip_forward
    # The default route stays, as on any machine with a network: without one Dask cannot
    # find its own address (it asks the kernel for the route out) and falls back to the
    # host name's 127.0.1.1. Leaving eth0, a packet is refused inside the namespace, so a
    # test that needs the outside fails at once instead of waiting for a time-out.
    if [ -e "/run/netns/$NAME" ] && ! ip netns exec "$NAME" nft list table inet offline >/dev/null 2>&1; then
        ip netns exec "$NAME" nft -f - <<NFT
table inet offline {
    chain output {
        type filter hook output priority 0; policy accept;
        oifname "eth0" reject with icmpx admin-prohibited
    }
}
NFT
    fi
}
cleanup() {
    local pids
    # every process of the verification lives in its network namespace: end exactly those
    pids=$(ip netns pids "$NAME" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    [ -n "$INNER" ] && wait "$INNER" 2>/dev/null || true
    net_down
    ip link del "$VETH" 2>/dev/null || true
    ip netns del "$NAME" 2>/dev/null || true
    if [ "$KEEP" = 0 ] && [ -d "$ROOT" ]; then
        if mounted_below "$ROOT"; then say "not removing $ROOT: something is still mounted below it"
        else rm -rf --one-file-system "$ROOT"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------- 1. base root filesystem (cached)
if [ -s "$BASE" ] && [ -z "$(find "$BASE" -mtime +$BASE_MAX_AGE_DAYS)" ] &&
   [ "$(cat "$BASE.pkgs" 2>/dev/null)" = "$BASE_VARIANT $BASE_PKGS" ]; then
    say "base root filesystem: cached $BASE ($(date -r "$BASE" +%F))"
    BASE_SECS=cached
else
    say "building the base root filesystem of Debian $DEBIAN ($RELEASE) with mmdebstrap"
    t=$EPOCHSECONDS
    # the name must end in .tar: mmdebstrap picks its output format from it
    mmdebstrap --quiet --variant="$BASE_VARIANT" --include="$BASE_PKGS" "$RELEASE" "$CACHE/$RELEASE-base.new.tar" ||
        die "mmdebstrap failed"
    mv "$CACHE/$RELEASE-base.new.tar" "$BASE"; echo "$BASE_VARIANT $BASE_PKGS" > "$BASE.pkgs"
    BASE_SECS=$((EPOCHSECONDS - t))
    say "base built in ${BASE_SECS} s"
fi

# ----------------------------------------------------- 2. a fresh root and clone
ip netns del "$NAME" 2>/dev/null || true      # left over from a run that was killed
if [ -d "$ROOT" ]; then
    mounted_below "$ROOT" && die "$ROOT has mounts below it (a run still going?)"
    rm -rf --one-file-system "$ROOT"
fi
rm -rf "$STATE" "$LOGS"; mkdir -p "$ROOT" "$STATE" "$LOGS"
tar -C "$ROOT" -xf "$BASE"
COMMIT=$(git -C "$REPO" rev-parse HEAD)
git clone -q --no-hardlinks "$REPO" "$ROOT/root/tardis-sge-dask"
git -C "$ROOT/root/tardis-sge-dask" checkout -q "$COMMIT"
say "fresh root in $ROOT, clone of $(git -C "$REPO" log -1 --format='%h %s' "$COMMIT")"

echo "$NAME" > "$ROOT/etc/hostname"
if [ "$HOSTS" = address ]; then SELF_LINE="$NET.2 $NAME"; else SELF_LINE="127.0.1.1 $NAME"; fi
# as Debian's installer writes it (127.0.1.1 for a host name without a fixed address)
cat > "$ROOT/etc/hosts" <<EOF
127.0.0.1 localhost
$SELF_LINE

::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
EOF
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
# Where egress re-signs TLS with a local authority, a machine of this site trusts it; so does
# the root, and pip is told to use the system's store as the host's pip is.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates in the root failed"
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$ROOT/etc/pip.conf"
fi

# ------------------------------------------------ 3. network: veth, route, NAT
ip netns add "$NAME"
ip link add "$VETH" type veth peer name eth0 netns "$NAME"
ip addr add "$NET.1/30" dev "$VETH"; ip link set "$VETH" up
ip -n "$NAME" link set lo up
ip -n "$NAME" addr add "$NET.2/30" dev eth0; ip -n "$NAME" link set eth0 up
ip -n "$NAME" route add default via "$NET.1"
echo 1 > /proc/sys/net/ipv4/ip_forward
# out: DNS and HTTP(S) only (the package registries), masqueraded; nothing else in or out
nft -f - <<EOF
table ip $NFT_TABLE {
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname "$VETH" udp dport 53 accept
        iifname "$VETH" tcp dport { 53, 80, 443 } accept
        iifname "$VETH" drop
        oifname "$VETH" ct state established,related accept
        oifname "$VETH" drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr $NET.2 masquerade
    }
}
EOF
say "network: $NAME at $NET.2 (host name -> ${SELF_LINE%% *}), NAT on for the install step"

# --------------------------------------------------------------- 4. run it
nsenter --net="/run/netns/$NAME" -- \
    unshare --mount --pid --uts --ipc --fork --propagation private -- \
    bash "$SELF" __inner "$ROOT" "$NAME" "$STATE" "$LOGS" "$CGROUP" "$TESTS" >"$LOGS/inner.log" 2>&1 &
INNER=$!
say "apt-get update + make install (log: $LOGS/install.log)"
while kill -0 "$INNER" 2>/dev/null && [ ! -e "$STATE/install.done" ]; do sleep 1; done
net_down
touch "$STATE/offline"
if [ -e "$STATE/install.done" ]; then
    say "make install done in $(cut -d' ' -f2 "$STATE/install") s; offline now: CI=true make test (log: $LOGS/test.log)"
fi
rc=0; wait "$INNER" || rc=$?
INNER=""
[ "$rc" = 0 ] || say "the inner stage exited $rc: $(tail -n 3 "$LOGS/inner.log" | tr '\n' ' ')"

# ---------------------------------------------------------------- 5. summary
htcondor_version() {     # Debian 12 has no package: htcondor-up.sh runs it from a Debian 13 root
    local run pkg; run=$(version condor-version) pkg=$(version condor)
    if [ "$pkg" != "not installed" ]; then echo "$run (package condor $pkg)"
    elif [ "$run" != "not installed" ]; then echo "$run (no Debian package: from htcondor-up.sh's Debian 13 root)"
    else echo "not installed"; fi
}
field() { [ -s "$STATE/$1" ] && cut -d' ' -f"$2" "$STATE/$1" || echo -; }
version() { local v; v=$(awk -v p="$1" '$1 == p {print $2}' "$STATE/versions" 2>/dev/null | head -n1 || true)
            echo "${v:-not installed}"; }
counts=$(grep -E '^=+ .*(passed|failed|error|skipped).* in [0-9.]+s' "$LOGS/test.log" 2>/dev/null | tail -n1 || true)
num() { { grep -oE "[0-9]+ $1" <<<"$counts" || true; } | cut -d' ' -f1 | head -n1; }
PASSED=$(num passed); FAILED=$(num failed); SKIPPED=$(num skipped); ERRORS=$(num 'errors?')
PASSED=${PASSED:-0} FAILED=${FAILED:-0} SKIPPED=${SKIPPED:-0} ERRORS=${ERRORS:-0}
VERDICT=PASS
[ "$(field prepare 1)" = 0 ] || VERDICT="FAIL (apt-get update)"
[ "$VERDICT" = PASS ] && { [ "$(field install 1)" = 0 ] || VERDICT="FAIL (make install)"; }
[ "$VERDICT" = PASS ] && { [ "$(field test 1)" = 0 ] || VERDICT="FAIL (make test)"; }
[ "$VERDICT" = PASS ] && [ "$SKIPPED" != 0 ] && VERDICT="FAIL ($SKIPPED skipped)"
[ -n "$TESTS" ] && VERDICT="$VERDICT, subset: $TESTS"
{
    echo "verify-release: Debian $DEBIAN ($RELEASE, $(version debian)), commit ${COMMIT:0:12}, $(date -u +%FT%TZ)"
    echo "  base root filesystem  ${BASE_SECS}$([ "$BASE_SECS" = cached ] || echo ' s')"
    echo "  apt-get update        exit $(field prepare 1), $(field prepare 2) s"
    echo "  make install          exit $(field install 1), $(field install 2) s"
    echo "  $([ -n "$TESTS" ] && echo "CI=true pytest subset" || echo "CI=true make test    ") exit $(field test 1), $(field test 2) s (offline)"
    echo "  tests                 $PASSED passed, $FAILED failed, $ERRORS errors, $SKIPPED skipped"
    echo "  Grid Engine           $(version gridengine-master)"
    echo "  SLURM                 $(version slurm-wlm)"
    echo "  MariaDB               $(version mariadb-server)"
    echo "  Python                $(version venv-python) (python3 $(version python3))"
    echo "  OpenSSH               $(version openssh-server)"
    echo "  HTCondor              $(htcondor_version)"
    echo "  host name / cgroups   $NAME -> ${SELF_LINE%% *} / $([ "$CGROUP" = 1 ] && echo "host's, read-only" || echo none)"
    echo "  total                 $((EPOCHSECONDS - T0)) s; logs in $LOGS"
    echo "result: $VERDICT"
} | tee "$WORK/summary.txt"
if [ "${VERDICT%%,*}" != PASS ]; then
    for step in prepare install test; do
        [ "$(field "$step" 1)" = 0 ] && continue
        [ -s "$LOGS/$step.log" ] && { echo "last lines of $LOGS/$step.log:"; tail -n 20 "$LOGS/$step.log" | sed 's/^/    /'; }
        break
    done
fi
[ "${VERDICT%%,*}" = PASS ]
}

# Both stages are functions, called only here: bash then reads the whole file before it runs
# any of it, so editing this script while a run is going does not change that run.
if [ "${1:-}" = __inner ]; then inner "$@"; else main "$@"; fi
