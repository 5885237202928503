#!/bin/bash
# tardis-sge-dask drone pilot: the StartupCommand of a drone's batch job.
#
# It turns the batch job into an overlay resource: a Dask worker (PILOT_MODE=dask) or an
# HTCondor startd joining the overlay pool (PILOT_MODE=htcondor), optionally inside the
# drone image with CVMFS, and leaves gracefully when the batch system warns it.
# docs/pilot.md lists every PILOT_* setting, the steps and the exit codes.
#
# The job script is this file preceded by `export` lines (sites/jobscript.py) and is
# spooled by the batch system: nothing next to it exists on the node, and only bash and
# coreutils are assumed on the host.

set -u
umask 077

readonly EXIT_OK=0
readonly EXIT_ENVIRONMENT=10
readonly EXIT_NO_RUNTIME=11
readonly EXIT_NO_CVMFS=12
readonly EXIT_TOKEN=13
readonly EXIT_HEALTH=14
readonly EXIT_PAYLOAD=15

STARTED_AT=$SECONDS
SCRATCH=""
JOB_TMPDIR=""
TOKEN_DIR=""
PAYLOAD_PID=""
RETIRE_TIMER=""
DRAINING=0
CVMFS_MODE=none
CVMFS_HOST_ROOT=""
CVMFS_MOUNTED=()
WRAPPER=()
RUNTIME=""

log() {
    printf '%s drone-pilot: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"
}

# Every failure leaves exactly one line on stderr, so `qacct`/the job's .e file tells why.
die() {
    local code=$1
    shift
    printf 'drone-pilot: error: %s\n' "$*" >&2
    exit "$code"
}

is_true() {
    case "${1,,}" in
        1 | true | yes | on) return 0 ;;
        *) return 1 ;;
    esac
}

require_positive_int() {
    local name=$1 value=${!1-}
    [[ -n $value ]] || die "$EXIT_ENVIRONMENT" "$name is not set"
    [[ $value =~ ^[0-9]+$ && $value -gt 0 ]] \
        || die "$EXIT_ENVIRONMENT" "$name='$value' is not a positive integer"
}

# ---------------------------------------------------------------- settings
read_settings() {
    require_positive_int TardisDroneCores
    require_positive_int TardisDroneMemory
    require_positive_int TardisDroneDisk
    [[ -n ${TardisDroneUuid-} ]] || die "$EXIT_ENVIRONMENT" "TardisDroneUuid is not set"
    [[ $TardisDroneUuid =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] \
        || die "$EXIT_ENVIRONMENT" "TardisDroneUuid='$TardisDroneUuid' has characters a name cannot have"

    PILOT_MODE=${PILOT_MODE:-dask}
    PILOT_CONTAINER=${PILOT_CONTAINER:-none}
    PILOT_CONTAINER_RUNTIME=${PILOT_CONTAINER_RUNTIME:-auto}
    PILOT_PYTHON=${PILOT_PYTHON:-python3}
    PILOT_CVMFS_ROOT=${PILOT_CVMFS_ROOT:-/cvmfs}
    PILOT_CVMFS_REPOSITORIES=${PILOT_CVMFS_REPOSITORIES:-}
    PILOT_CVMFS_REQUIRED=${PILOT_CVMFS_REQUIRED:-true}
    PILOT_CVMFSEXEC=${PILOT_CVMFSEXEC:-}
    PILOT_TOKEN_FILE=${PILOT_TOKEN_FILE:-}
    PILOT_X509_PROXY=${PILOT_X509_PROXY:-}
    PILOT_BINDS=${PILOT_BINDS:-}
    PILOT_CHECK_GFAL2=${PILOT_CHECK_GFAL2:-auto}
    PILOT_CHECK_DISK=${PILOT_CHECK_DISK:-true}
    PILOT_LIFETIME_MARGIN=${PILOT_LIFETIME_MARGIN:-300}
    PILOT_IDLE_TIMEOUT=${PILOT_IDLE_TIMEOUT:-600}
    PILOT_RETIRE_TIMEOUT=${PILOT_RETIRE_TIMEOUT:-30}
    PILOT_DASK_DEATH_TIMEOUT=${PILOT_DASK_DEATH_TIMEOUT:-300}
    PILOT_DASK_WORKER_OPTIONS=${PILOT_DASK_WORKER_OPTIONS:-}
    PILOT_WALLTIME=${PILOT_WALLTIME:-}
    PILOT_BATCH_SYSTEM=${PILOT_BATCH_SYSTEM:-local}
    PILOT_GPUS=${PILOT_GPUS:-0}

    local name
    [[ $PILOT_GPUS =~ ^[0-9]+$ ]] || die "$EXIT_ENVIRONMENT" "PILOT_GPUS='$PILOT_GPUS' is not a number of GPUs"
    for name in PILOT_LIFETIME_MARGIN PILOT_IDLE_TIMEOUT PILOT_RETIRE_TIMEOUT \
        PILOT_DASK_DEATH_TIMEOUT; do
        [[ ${!name} =~ ^[0-9]+$ ]] || die "$EXIT_ENVIRONMENT" "$name='${!name}' is not a number of seconds"
    done
    if [[ -n $PILOT_WALLTIME ]]; then
        [[ $PILOT_WALLTIME =~ ^[0-9]+$ ]] \
            || die "$EXIT_ENVIRONMENT" "PILOT_WALLTIME='$PILOT_WALLTIME' is not a number of seconds"
        ((PILOT_WALLTIME > PILOT_LIFETIME_MARGIN)) \
            || die "$EXIT_ENVIRONMENT" "PILOT_WALLTIME=$PILOT_WALLTIME leaves nothing after PILOT_LIFETIME_MARGIN=$PILOT_LIFETIME_MARGIN"
    fi
    case $PILOT_MODE in
        dask)
            [[ -n ${PILOT_DASK_SCHEDULER-} ]] \
                || die "$EXIT_ENVIRONMENT" "PILOT_MODE=dask needs PILOT_DASK_SCHEDULER"
            ;;
        htcondor)
            [[ -n ${PILOT_COLLECTOR-} ]] \
                || die "$EXIT_ENVIRONMENT" "PILOT_MODE=htcondor needs PILOT_COLLECTOR"
            # The pool authenticates startds by IDTOKEN; without one the drone is useless.
            [[ -n $PILOT_TOKEN_FILE ]] \
                || die "$EXIT_ENVIRONMENT" "PILOT_MODE=htcondor needs PILOT_TOKEN_FILE"
            ;;
        *) die "$EXIT_ENVIRONMENT" "PILOT_MODE='$PILOT_MODE' is neither dask nor htcondor" ;;
    esac
}

# ---------------------------------------------------------------- scratch
make_scratch() {
    local base=${PILOT_SCRATCH_BASE:-${TMPDIR:-/tmp}}
    [[ -d $base && -w $base ]] || die "$EXIT_HEALTH" "scratch base '$base' is not a writable directory"
    SCRATCH=$(mktemp -d "$base/tardis-drone.XXXXXX" 2>/dev/null) \
        || die "$EXIT_HEALTH" "cannot create a scratch directory in '$base'"
    log "scratch directory $SCRATCH"
}

cleanup() {
    local status=$?
    trap - EXIT
    [[ -n $RETIRE_TIMER ]] && kill -TERM "$RETIRE_TIMER" 2>/dev/null
    if [[ -n $PAYLOAD_PID ]] && kill -0 "$PAYLOAD_PID" 2>/dev/null; then
        kill -KILL -- "-$PAYLOAD_PID" 2>/dev/null || kill -KILL "$PAYLOAD_PID" 2>/dev/null
    fi
    local repo
    for repo in "${CVMFS_MOUNTED[@]}"; do
        "$PILOT_CVMFSEXEC/umountrepo" "$repo" >/dev/null 2>&1
    done
    if [[ -n $SCRATCH && -d $SCRATCH ]]; then
        chmod -R u+rwx "$SCRATCH" 2>/dev/null
        rm -rf -- "$SCRATCH"
    fi
    [[ -n $TOKEN_DIR && -d $TOKEN_DIR ]] && rm -rf -- "$TOKEN_DIR"
    exit "$status"
}

# ---------------------------------------------------------------- token
check_token() {
    [[ -n $PILOT_TOKEN_FILE ]] || return 0
    [[ -f $PILOT_TOKEN_FILE && -r $PILOT_TOKEN_FILE ]] \
        || die "$EXIT_TOKEN" "token file '$PILOT_TOKEN_FILE' is not a readable file"
    [[ -s $PILOT_TOKEN_FILE ]] || die "$EXIT_TOKEN" "token file '$PILOT_TOKEN_FILE' is empty"
    local mode
    mode=$(stat -L -c %a -- "$PILOT_TOKEN_FILE" 2>/dev/null) || mode=""
    if [[ $mode =~ ^[0-7]+$ ]] && ((8#$mode & 8#004)); then
        log "warning: token file $PILOT_TOKEN_FILE is readable by every user of this node" \
            "(mode $mode): anyone holding it can join the overlay pool as a drone; chmod 600 it"
    fi
    # A private copy: the original may sit on a path the image cannot see. It goes into the
    # directory the batch system gave the job (Grid Engine's per-job TMP, which execd
    # removes however the job ends, SIGKILL included), not into PILOT_SCRATCH_BASE, which
    # nobody cleans after a kill that leaves the pilot no time for its own cleanup.
    TOKEN_DIR="$SCRATCH/tokens.d"
    if [[ $SCRATCH != "$JOB_TMPDIR"/* && -d $JOB_TMPDIR && -w $JOB_TMPDIR ]]; then
        TOKEN_DIR=$(mktemp -d "$JOB_TMPDIR/tardis-token.XXXXXX" 2>/dev/null) \
            || die "$EXIT_TOKEN" "cannot create a token directory in '$JOB_TMPDIR'"
        ln -s -- "$TOKEN_DIR" "$SCRATCH/tokens.d"
    else
        mkdir -m 700 "$TOKEN_DIR"
    fi
    (umask 077 && cp -- "$PILOT_TOKEN_FILE" "$TOKEN_DIR/drone.token") 2>/dev/null \
        || die "$EXIT_TOKEN" "token file '$PILOT_TOKEN_FILE' cannot be read"
    chmod 600 "$TOKEN_DIR/drone.token"
}

# ---------------------------------------------------------------- runtime
find_runtime() {
    [[ $PILOT_CONTAINER == none ]] && return 0
    local candidate
    case $PILOT_CONTAINER_RUNTIME in
        auto)
            for candidate in apptainer singularity; do
                if command -v "$candidate" >/dev/null 2>&1; then
                    RUNTIME=$(command -v "$candidate")
                    break
                fi
            done
            ;;
        *) RUNTIME=$(command -v "$PILOT_CONTAINER_RUNTIME" 2>/dev/null) ;;
    esac
    [[ -n $RUNTIME ]] || die "$EXIT_NO_RUNTIME" \
        "PILOT_CONTAINER is set but no container runtime ($PILOT_CONTAINER_RUNTIME: apptainer or singularity) is on PATH"
    log "container runtime $RUNTIME, image $PILOT_CONTAINER"
}

# ---------------------------------------------------------------- CVMFS
cvmfs_repositories() {
    local list=${PILOT_CVMFS_REPOSITORIES//,/ }
    # shellcheck disable=SC2086
    printf '%s\n' $list
}

host_has_repositories() {
    local repo
    for repo in $(cvmfs_repositories); do
        # Listing triggers the autofs mount of a host CVMFS client.
        ls "$PILOT_CVMFS_ROOT/$repo/" >/dev/null 2>&1 || return 1
    done
}

user_namespaces_work() {
    local max
    max=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
    ((max > 0)) || return 1
    command -v unshare >/dev/null 2>&1 && unshare -U -r true >/dev/null 2>&1
}

fuse_usable() {
    [[ -c /dev/fuse && -r /dev/fuse && -w /dev/fuse ]]
}

# The order follows glideinWMS: the host's CVMFS, then cvmfsexec's mountrepo (fusermount),
# cvmfsexec (user namespaces + FUSE), and finally Apptainer's --fusemount (singcvmfs).
provide_cvmfs() {
    [[ -n $(cvmfs_repositories) ]] || return 0
    if host_has_repositories; then
        CVMFS_MODE=host
        CVMFS_HOST_ROOT=$PILOT_CVMFS_ROOT
    elif [[ -n $PILOT_CVMFSEXEC && -d $PILOT_CVMFSEXEC ]]; then
        if [[ -x $PILOT_CVMFSEXEC/mountrepo ]] && fuse_usable \
            && { command -v fusermount >/dev/null 2>&1 || command -v fusermount3 >/dev/null 2>&1; }; then
            local repo
            CVMFS_MODE=mountrepo
            for repo in $(cvmfs_repositories); do
                if "$PILOT_CVMFSEXEC/mountrepo" "$repo" >/dev/null 2>&1; then
                    CVMFS_MOUNTED+=("$repo")
                else
                    CVMFS_MODE=none
                    break
                fi
            done
            CVMFS_HOST_ROOT=$PILOT_CVMFSEXEC/dist/cvmfs
        fi
        if [[ $CVMFS_MODE == none && -x $PILOT_CVMFSEXEC/cvmfsexec ]] && user_namespaces_work \
            && [[ -c /dev/fuse ]]; then
            CVMFS_MODE=cvmfsexec
            # shellcheck disable=SC2207
            WRAPPER=("$PILOT_CVMFSEXEC/cvmfsexec" $(cvmfs_repositories) --)
        fi
        if [[ $CVMFS_MODE == none && -x $PILOT_CVMFSEXEC/singcvmfs && -n $RUNTIME ]] \
            && user_namespaces_work; then
            CVMFS_MODE=singcvmfs
            SINGCVMFS_REPOSITORIES=$(cvmfs_repositories | paste -sd, -)
            export SINGCVMFS_REPOSITORIES
        fi
    fi
    if [[ $CVMFS_MODE == none ]]; then
        if is_true "$PILOT_CVMFS_REQUIRED"; then
            die "$EXIT_NO_CVMFS" "CVMFS repositories '$PILOT_CVMFS_REPOSITORIES' are required but the node has no CVMFS and no usable cvmfsexec mode"
        fi
        log "warning: CVMFS repositories '$PILOT_CVMFS_REPOSITORIES' are not available; continuing without"
        return 0
    fi
    log "CVMFS provided by: $CVMFS_MODE"
    # The grid CAs come from CVMFS when it carries them, so the image need not be rebuilt
    # for every CA update.
    if [[ -z ${X509_CERT_DIR-} && " $(cvmfs_repositories | paste -sd' ' -) " == *" grid.cern.ch "* ]]; then
        local root=/cvmfs
        [[ $PILOT_CONTAINER == none && $CVMFS_MODE != cvmfsexec ]] && root=$CVMFS_HOST_ROOT
        export X509_CERT_DIR=$root/grid.cern.ch/etc/grid-security/certificates
    fi
}

# ---------------------------------------------------------------- running things
# PREFIX runs a command where the payload will run: in the image (with its binds), under
# cvmfsexec, or directly. An array rather than a function so that `timeout` can run it.
PREFIX=()
build_prefix() {
    PREFIX=("${WRAPPER[@]}")
    [[ $PILOT_CONTAINER == none ]] && return 0
    local -a binds=(--bind "$SCRATCH:$SCRATCH")
    # the token directory outside scratch, at the path scratch's tokens.d link points to
    [[ -n $TOKEN_DIR && $TOKEN_DIR != "$SCRATCH"/* ]] && binds+=(--bind "$TOKEN_DIR:$TOKEN_DIR")
    if [[ $CVMFS_MODE == host || $CVMFS_MODE == mountrepo ]]; then
        binds+=(--bind "$CVMFS_HOST_ROOT:/cvmfs")
    elif [[ $CVMFS_MODE == cvmfsexec ]]; then
        binds+=(--bind /cvmfs)
    fi
    [[ -n $PILOT_X509_PROXY ]] && binds+=(--bind "$PILOT_X509_PROXY:$PILOT_X509_PROXY")
    local extra
    for extra in ${PILOT_BINDS//,/ }; do
        binds+=(--bind "$extra")
    done
    if [[ $CVMFS_MODE == singcvmfs ]]; then
        PREFIX+=("$PILOT_CVMFSEXEC/singcvmfs")
    else
        PREFIX+=("$RUNTIME")
    fi
    local -a devices=()
    # --nv: the host's NVIDIA driver libraries and the job's GPU devices inside the image
    ((PILOT_GPUS > 0)) && devices=(--nv)
    PREFIX+=(exec --contain --ipc --no-home "${devices[@]}" --pwd "$SCRATCH" "${binds[@]}" "$PILOT_CONTAINER")
}

in_payload_env() {
    "${PREFIX[@]}" "$@"
}

payload_python() {
    if [[ $PILOT_CONTAINER == none ]]; then
        printf '%s\n' "$PILOT_PYTHON"
    else
        printf '%s\n' "${PILOT_IMAGE_PYTHON:-python3}"
    fi
}

# ---------------------------------------------------------------- health
# A proxy file holds the proxy certificate, its key and the chain a server verifies it
# with (the user certificate, proxies in between); the earliest end among those
# certificates is the proxy's real lifetime, and it must outlast the drone.
check_x509_proxy() {
    local proxy=$PILOT_X509_PROXY
    [[ -f $proxy && -r $proxy ]] || die "$EXIT_HEALTH" "X.509 proxy '$proxy' is not readable"
    local needed=${PILOT_WALLTIME:-0}
    ((needed -= SECONDS - STARTED_AT))
    ((needed < 0)) && needed=0
    local -a openssl=(openssl)
    command -v openssl >/dev/null 2>&1 || openssl=(in_payload_env openssl)
    local line pem="" inside=0
    local -a certificates=()
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line == "-----BEGIN CERTIFICATE-----" ]] && inside=1 && pem=""
        ((inside)) && pem+=$line$'\n'
        if ((inside)) && [[ $line == "-----END CERTIFICATE-----" ]]; then
            certificates+=("$pem")
            inside=0
        fi
    done <"$proxy"
    ((${#certificates[@]} > 0)) || die "$EXIT_HEALTH" "X.509 proxy '$proxy' holds no certificate"
    local end epoch earliest="" earliest_end=""
    for pem in "${certificates[@]}"; do
        end=$("${openssl[@]}" x509 -noout -enddate <<<"$pem" 2>/dev/null) && end=${end#notAfter=} \
            && epoch=$(date -u -d "$end" +%s 2>/dev/null) \
            || die "$EXIT_HEALTH" "X.509 proxy '$proxy' holds a certificate openssl cannot read"
        if [[ -z $earliest ]] || ((epoch < earliest)); then
            earliest=$epoch
            earliest_end=$end
        fi
    done
    local left=$((earliest - $(date +%s)))
    ((left > 0)) || die "$EXIT_HEALTH" "X.509 proxy '$proxy' has expired (valid until $earliest_end)"
    ((left > needed)) || die "$EXIT_HEALTH" \
        "X.509 proxy '$proxy' expires within the drone's ${needed} s lifetime (valid for ${left} s, until $earliest_end)"
    log "X.509 proxy $proxy valid for ${left} s (until $earliest_end), the drone needs ${needed} s"
    export X509_USER_PROXY=$proxy
}

health_checks() {
    if [[ $PILOT_CONTAINER != none && $PILOT_CONTAINER != *://* && ! -e $PILOT_CONTAINER ]]; then
        die "$EXIT_HEALTH" "drone image '$PILOT_CONTAINER' does not exist on this node"
    fi
    if is_true "$PILOT_CHECK_DISK"; then
        local free
        # Only coreutils on the host: parse `df -P` with `read`, not awk.
        free=$(df -Pk -- "$SCRATCH" 2>/dev/null | { read -r _; read -r _ _ _ f _; echo "${f-}"; })
        [[ $free =~ ^[0-9]+$ ]] || die "$EXIT_HEALTH" "cannot measure free space of $SCRATCH"
        ((free >= TardisDroneDisk)) || die "$EXIT_HEALTH" \
            "scratch $SCRATCH has ${free} KiB free, the drone promises ${TardisDroneDisk} KiB"
    fi
    if [[ $CVMFS_MODE != none ]]; then
        # Without an image the payload sees the host's mount point, not /cvmfs.
        local repo root=/cvmfs
        [[ $PILOT_CONTAINER == none && $CVMFS_MODE != cvmfsexec ]] && root=$CVMFS_HOST_ROOT
        for repo in $(cvmfs_repositories); do
            in_payload_env ls "$root/$repo/" >/dev/null 2>&1 \
                || die "$EXIT_HEALTH" "CVMFS repository $repo is not readable where the payload runs"
        done
    fi
    [[ -n $PILOT_X509_PROXY ]] && check_x509_proxy
    if [[ $PILOT_CHECK_GFAL2 == auto ]]; then
        [[ $PILOT_CONTAINER != none ]] && PILOT_CHECK_GFAL2=true || PILOT_CHECK_GFAL2=false
    fi
    if is_true "$PILOT_CHECK_GFAL2"; then
        # gfal2's bindings belong to the system python, not to the Dask one.
        in_payload_env "${PILOT_GFAL2_PYTHON:-/usr/bin/python3}" \
            -c 'import gfal2; gfal2.creat_context()' >/dev/null 2>&1 \
            || die "$EXIT_HEALTH" "gfal2 is not usable where the payload runs"
    fi
    log "health checks passed"
}

# ---------------------------------------------------------------- payloads
# Sets LIFETIME to the seconds the payload may run, or empty without a walltime.
LIFETIME=""
remaining_lifetime() {
    [[ -n $PILOT_WALLTIME ]] || return 0
    LIFETIME=$((PILOT_WALLTIME - (SECONDS - STARTED_AT) - PILOT_LIFETIME_MARGIN))
    ((LIFETIME > 0)) || die "$EXIT_ENVIRONMENT" "no walltime left for the payload"
}

# Retires the worker through the scheduler: its results move to other workers first.
read -r -d '' RETIRE_PY <<'PYEOF'
import sys

from distributed import Client

scheduler, name, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
with Client(scheduler, timeout=timeout, set_as_default=False) as client:
    retired = client.retire_workers(names=[name], close_workers=True)
print(f"retired {sorted(retired) or 'nothing'}")
PYEOF

start_dask_worker() {
    local -a cmd=("$(payload_python)" -m distributed.cli.dask_worker "$PILOT_DASK_SCHEDULER"
        --name "$TardisDroneUuid"
        --nthreads "$TardisDroneCores"
        --memory-limit "${TardisDroneMemory}MiB"
        --local-directory "$SCRATCH/dask"
        --death-timeout "$PILOT_DASK_DEATH_TIMEOUT"
        --no-dashboard)
    remaining_lifetime
    [[ -n $LIFETIME ]] && cmd+=(--lifetime "${LIFETIME}s")
    # shellcheck disable=SC2206
    local -a options=($PILOT_DASK_WORKER_OPTIONS)
    # Where the drone is, as resources a task can ask for (docs/pilot.md): one unit per
    # thread, so a task asking for 1 unit runs on any thread. dask worker keeps only its
    # last --resources, so the admin's own ones are merged into it.
    local -a location=()
    [[ -n ${PILOT_SITE-} ]] && location+=("site:$PILOT_SITE=$TardisDroneCores")
    [[ -n ${PILOT_MACHINE_TYPE-} ]] \
        && location+=("machine-type:$PILOT_MACHINE_TYPE=$TardisDroneCores")
    local resources="${location[*]}" i
    for ((i = 0; i < ${#options[@]}; i++)); do
        if [[ ${options[i]} == --resources ]] && ((i + 1 < ${#options[@]})); then
            resources="${options[i + 1]} $resources"
            unset 'options[i]' 'options[i + 1]'
            ((i++))
        elif [[ ${options[i]} == --resources=* ]]; then
            resources="${options[i]#--resources=} $resources"
            unset 'options[i]'
        fi
    done
    resources=${resources% }
    [[ -n $resources ]] && cmd+=(--resources "$resources")
    cmd+=("${options[@]}")
    mkdir -p "$SCRATCH/dask"
    launch "${PREFIX[@]}" "${cmd[@]}"
}

start_startd() {
    local -a config=("$(payload_python)" -m tardis_sge_dask.pilot.startd_config
        --scratch "$SCRATCH" --output "$SCRATCH/condor/condor_config")
    mkdir -p "$SCRATCH/condor"
    in_payload_env "${config[@]}" >/dev/null \
        || die "$EXIT_PAYLOAD" "cannot generate the startd configuration"
    export CONDOR_CONFIG=$SCRATCH/condor/condor_config
    launch "${PREFIX[@]}" condor_master -f
    start_retire_timer
}

# The startd retires by itself at the retire time, but its master notices only at its
# next update (5 minutes by default), which may be after the walltime kill. So at the
# retire time the pilot drains as on a warning signal: the master leaves with the startd.
start_retire_timer() {
    remaining_lifetime
    [[ -n $LIFETIME ]] || return 0
    local pilot=$$
    (
        trap - EXIT USR1 USR2 INT HUP XCPU
        sleeper=""
        trap 'kill -TERM "$sleeper" 2>/dev/null; exit 0' TERM
        sleep "$LIFETIME" &
        sleeper=$!
        wait "$sleeper" && kill -ALRM "$pilot"
    ) &
    RETIRE_TIMER=$!
}

# The payload gets its own session: Grid Engine delivers -notify signals to the job's
# process group, and a payload that does not handle them would die at once.
launch() {
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" &
    else
        set -m
        "$@" &
        set +m
    fi
    PAYLOAD_PID=$!
    log "payload started (pid $PAYLOAD_PID): $PILOT_MODE mode, drone $TardisDroneUuid"
}

drain() {
    local signal=$1
    ((DRAINING)) && return 0
    DRAINING=1
    if [[ $signal == ALRM ]]; then
        log "retire time reached (walltime minus PILOT_LIFETIME_MARGIN): draining the $PILOT_MODE payload"
    else
        log "received SIG$signal: draining the $PILOT_MODE payload"
    fi
    [[ -n $PAYLOAD_PID ]] || exit "$EXIT_OK"
    # The drain command runs in a session of its own as well: Grid Engine SIGKILLs the
    # job's process group after its notify time, and a retirement that is under way
    # should finish even if the pilot does not live to see it.
    local -a detach=()
    command -v setsid >/dev/null 2>&1 && detach=(setsid)
    local ok=1
    case $PILOT_MODE in
        dask)
            "${detach[@]}" timeout "$PILOT_RETIRE_TIMEOUT" "${PREFIX[@]}" "$(payload_python)" \
                -c "$RETIRE_PY" "$PILOT_DASK_SCHEDULER" "$TardisDroneUuid" "$PILOT_RETIRE_TIMEOUT" \
                && ok=0
            ;;
        htcondor)
            # Graceful, not peaceful: a Dask worker job never ends by itself, and the batch
            # system kills the drone soon. The startd vacates its jobs (SIGTERM: the workers
            # close, HTCondor puts the jobs back in the queue at once, their tasks run
            # elsewhere), after MAXJOBRETIREMENTTIME near the walltime. The master, not only
            # the startd: it leaves with it instead of at its next DAEMON_SHUTDOWN check.
            "${detach[@]}" timeout "$PILOT_RETIRE_TIMEOUT" "${PREFIX[@]}" \
                condor_off -graceful -daemon master && ok=0
            ;;
    esac
    if ((ok != 0)); then
        log "graceful drain failed; terminating the payload"
        kill -TERM -- "-$PAYLOAD_PID" 2>/dev/null || kill -TERM "$PAYLOAD_PID" 2>/dev/null
    fi
}

wait_for_payload() {
    local status
    while :; do
        wait "$PAYLOAD_PID"
        status=$?
        if ! kill -0 "$PAYLOAD_PID" 2>/dev/null; then
            # A trapped signal interrupts `wait`; asking again yields the real status.
            wait "$PAYLOAD_PID" 2>/dev/null
            status=$?
            break
        fi
    done
    # The session may hold stragglers (a nanny's child, a starter): end them with the drone.
    kill -TERM -- "-$PAYLOAD_PID" 2>/dev/null
    PAYLOAD_PID=""
    if ((DRAINING)); then
        log "payload left after the drain (status $status)"
        exit "$EXIT_OK"
    fi
    ((status == 0)) || die "$EXIT_PAYLOAD" "the $PILOT_MODE payload exited with status $status"
    log "payload finished"
    exit "$EXIT_OK"
}

main() {
    read_settings
    trap cleanup EXIT
    # SGE -notify: USR2 before a kill, USR1 before a suspend; SLURM: TERM or --signal.
    local signal
    for signal in USR1 USR2 TERM INT HUP XCPU ALRM; do
        # shellcheck disable=SC2064
        trap "drain $signal" "$signal"
    done
    log "drone $TardisDroneUuid on $(uname -n): ${TardisDroneCores} cores," \
        "${TardisDroneMemory} MB, ${TardisDroneDisk} KiB, batch system $PILOT_BATCH_SYSTEM"
    # Son of Grid Engine 8.1.9 sets only TMP (/tmp/JOB.TASK.QUEUE) in the job, not TMPDIR
    JOB_TMPDIR=${TMPDIR:-${TMP:-/tmp}}
    make_scratch
    export TMPDIR=$SCRATCH
    check_token
    find_runtime
    provide_cvmfs
    build_prefix
    health_checks
    ((DRAINING)) && exit "$EXIT_OK"
    case $PILOT_MODE in
        dask) start_dask_worker ;;
        htcondor) start_startd ;;
    esac
    wait_for_payload
}

main "$@"
