#!/bin/bash
# Builds the drone *test* image: a directory image (an Apptainer sandbox) that the tests run
# through the pilot's normal container path, `apptainer exec ... IMAGE cmd`, with the
# Apptainer stand-in installed next to it (containers/test-image/README.md says why).
#
#   containers/test-image/build.sh          # as root; `make image` runs it
#
# Idempotent and cached: the heavy layers (root file system, Python, Dask) are rebuilt only
# when their inputs change; this package is reinstalled on every run, so the image always
# carries the pilot code of the working tree.
#
#   TSD_TEST_IMAGE      the image directory     (/var/cache/tardis-sge-dask/drone-image)
#   TSD_STANDIN_BIN     where `apptainer` goes  (/var/cache/tardis-sge-dask/standin-bin)
#   TSD_CLIENT_PYTHON   the Dask client's Python (the project's .venv/bin/python)

set -euo pipefail
umask 022

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
IMAGE=${TSD_TEST_IMAGE:-/var/cache/tardis-sge-dask/drone-image}
STANDIN_BIN=${TSD_STANDIN_BIN:-/var/cache/tardis-sge-dask/standin-bin}
CLIENT_PYTHON=${TSD_CLIENT_PYTHON:-$REPO/.venv/bin/python}
WHEELS=${TSD_WHEEL_CACHE:-$(dirname "$IMAGE")/wheels}

# Debian 13 on a Debian 12 or 13 host alike: the nearest real HTCondor packaged (23.9).
SUITE=trixie
HTCONDOR_SERIES=23.9
# What a drone needs, by Debian 13 names. tests/unit/test_image_pins.py keeps this list in
# step with the packages of containers/singularity/drone.def (AlmaLinux 9). gfal-copy runs
# on the first `python` that imports gfal2, else /usr/bin/python: python-is-python3 gives it
# one, since /opt/dask/bin/python (first on PATH) has no gfal2.
DRONE_PACKAGES="condor ca-certificates openssl procps tini gfal2 gfal2-plugin-file gfal2-plugin-http gfal2-plugin-xrootd python3-gfal2 python3-gfal2-util gfal2-util-scripts python-is-python3 xrootd-client voms-clients"
# Not a drone's needs but the Dask Python's: a venv from the system python3, or the shared
# libraries of a client interpreter copied into /opt/python.
PYTHON_SUPPORT_PACKAGES="python3-venv libssl3t64 libffi8 libsqlite3-0 zlib1g libbz2-1.0 liblzma5 libreadline8t64 libncursesw6 libuuid1 libnsl2 libexpat1"
DASK_VERSION=$(sed -n 's/^DASK_VERSION *= *"\([^"]*\)".*/\1/p' "$REPO/setup.py")
STAMPS=/.tardis-sge-dask-build  # inside the image

log() { printf 'build.sh: %s\n' "$*"; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }

# Runs "$@" and prints how long it took.
timed() {
    local what=$1 start=$SECONDS
    shift
    "$@"
    log "$what: $((SECONDS - start)) s"
}

digest() { sha256sum | cut -c1-16; }

stamp_matches() { [[ -f $IMAGE$STAMPS/$1 && $(<"$IMAGE$STAMPS/$1") == "$2" ]]; }
write_stamp() { mkdir -p "$IMAGE$STAMPS"; printf '%s\n' "$2" >"$IMAGE$STAMPS/$1"; }

# A command inside the image as root, offline: the image's own libraries, never the host's.
in_root() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        LANG=C.UTF-8 PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        bwrap --bind "$IMAGE" / --proc /proc --dev /dev --tmpfs /tmp \
        "${IN_ROOT_BINDS[@]}" -- "$@"
}
IN_ROOT_BINDS=()

# ---------------------------------------------------------------- prerequisites
need_tools() {
    local -a missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v bwrap >/dev/null || missing+=(bubblewrap)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" </dev/null >/dev/null
}

# ---------------------------------------------------------------- layer 1: root file system
# Bump when build_root changes in a way the package list does not show.
ROOT_RECIPE=1
# shellcheck disable=SC2086  # one word per package
ROOT_KEY=$(printf '%s\n' "$ROOT_RECIPE" "$SUITE" $DRONE_PACKAGES $PYTHON_SUPPORT_PACKAGES | sort | digest)

build_root() {
    local fresh=$IMAGE.new
    rm -rf -- "$fresh"
    # The default mirror; apt's retries ride out a flaky connection.
    mmdebstrap --quiet --variant=apt --aptopt='Acquire::Retries "3"' \
        --include="$(tr ' ' ',' <<<"$DRONE_PACKAGES $PYTHON_SUPPORT_PACKAGES")" \
        "$SUITE" "$fresh"
    rm -rf -- "$IMAGE"
    mv -- "$fresh" "$IMAGE"
    chmod 755 "$IMAGE"
    write_stamp root "$ROOT_KEY"
}

# ---------------------------------------------------------------- layer 2: the Dask Python
# Cloudpickle ships functions defined in a notebook as bytecode, so the worker's Python must
# be the client's minor version. Debian 13's python3 is 3.13; the project's client is 3.11.
CLIENT_PREFIX="" CLIENT_MINOR="" CLIENT_VERSION=""
read_client_python() {
    read -r CLIENT_PREFIX CLIENT_MINOR CLIENT_VERSION < <("$CLIENT_PYTHON" -c \
        'import sys; print(sys.base_prefix, "%d.%d" % sys.version_info[:2], sys.version.split()[0])')
}

image_python_minor() {
    in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# The interpreter's installation without its site-packages, tests and caches: the stdlib,
# lib-dynload and libpython are what a venv needs. tkinter would want Tk: left out.
copy_client_python() {
    local minor=$CLIENT_MINOR
    rm -rf -- "$IMAGE/opt/python"
    mkdir -p "$IMAGE/opt/python/bin"
    tar -C "$CLIENT_PREFIX" -cf - \
        --exclude="./lib/python$minor/site-packages/*" --exclude="./lib/python$minor/test" \
        --exclude='*/__pycache__' --exclude="./lib/python$minor/*/tests" \
        --exclude="./lib/python$minor/*/test" --exclude="./lib/python$minor/*/idle_test" \
        --exclude="./lib/python$minor/idlelib" --exclude="./lib/python$minor/tkinter" \
        --exclude="./lib/python$minor/turtledemo" --exclude="./lib/python$minor/lib-dynload/_tkinter*" \
        --exclude='*.a' --exclude=./lib/pkgconfig \
        "./bin/python$minor" ./lib | tar -C "$IMAGE/opt/python" -xf -
    ln -s "python$minor" "$IMAGE/opt/python/bin/python3"
    # A shared-library build points its RUNPATH at the client's prefix; in the image the
    # loader finds libpython through ld.so.conf instead.
    echo /opt/python/lib >"$IMAGE/etc/ld.so.conf.d/tardis-sge-dask-python.conf"
    in_root ldconfig
    # Built against the host's libraries: every extension module must resolve in the image.
    local missing
    # shellcheck disable=SC2016  # expanded by the shell inside the image
    missing=$(in_root sh -c 'for f in /opt/python/bin/python3.* /opt/python/lib/python3.*/lib-dynload/*.so; do
        ldd "$f" 2>&1 | sed -n "s|^[[:space:]]*\(.*not found\)|$f: \1|p"; done')
    [[ -z $missing ]] || die "the copied Python needs libraries the image lacks (add their packages to PYTHON_SUPPORT_PACKAGES):
$missing"
    in_root /opt/python/bin/python3 -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, decimal, uuid, venv' \
        || die "the copied Python does not run in the image"
}

PYTHON_MODE=""
provide_python() {
    local image_minor key
    image_minor=$(image_python_minor)
    if [[ $image_minor == "$CLIENT_MINOR" ]]; then
        PYTHON_MODE=system
    else
        PYTHON_MODE=copy
    fi
    key=$(printf '%s\n' "$ROOT_KEY" "$PYTHON_MODE" "$CLIENT_PREFIX" "$CLIENT_VERSION" | digest)
    if stamp_matches python "$key"; then
        log "python: cached ($PYTHON_MODE, $CLIENT_VERSION)"
        PYTHON_KEY=$key
        return 0
    fi
    rm -f -- "$IMAGE$STAMPS/dask"
    rm -rf -- "$IMAGE/opt/dask" "$IMAGE/opt/python"
    if [[ $PYTHON_MODE == copy ]]; then
        log "python: copying the client's $CLIENT_VERSION from $CLIENT_PREFIX (the image's python3 is $image_minor)"
        copy_client_python
    else
        log "python: the image's python3 is the client's $CLIENT_MINOR"
    fi
    write_stamp python "$key"
    PYTHON_KEY=$key
}

# ---------------------------------------------------------------- layer 3: Dask
# The worker's libraries at the client's versions where the client has them (dask warns
# about mismatched cloudpickle, msgpack, tornado, numpy...), dask/distributed at setup.py's.
constraints() {
    "$CLIENT_PYTHON" - <<'PYEOF'
import importlib.metadata as metadata

skip = {"pip", "setuptools", "wheel", "tardis-sge-dask"}
pins = {}
for dist in metadata.distributions():
    name = (dist.metadata["Name"] or "").lower().replace("_", "-")
    if name and name not in skip:
        pins[name] = dist.version
print("\n".join(f"{name}=={version}" for name, version in sorted(pins.items())))
PYEOF
}

install_dask() {
    local constraints_text key numpy python
    constraints_text=$(constraints)
    key=$(printf '%s\n' "$PYTHON_KEY" "$DASK_VERSION" "$constraints_text" | digest)
    if stamp_matches dask "$key" && [[ -f $IMAGE/opt/dask/pyvenv.cfg ]]; then
        log "dask: cached ($DASK_VERSION)"
        return 0
    fi
    rm -f -- "$IMAGE$STAMPS/dask"
    rm -rf -- "$IMAGE/opt/dask"
    mkdir -p "$WHEELS"
    printf '%s\n' "$constraints_text" >"$WHEELS/constraints.txt"
    # The host's pip fetches (its index, proxy and CA settings apply); the interpreter is the
    # same version, so the wheels fit. Inside the image pip then installs offline.
    local -a wanted=("dask==$DASK_VERSION" "distributed==$DASK_VERSION" numpy "setuptools>=70.1")
    "$CLIENT_PYTHON" -m pip download -qq --only-binary=:all: -d "$WHEELS" \
        -c "$WHEELS/constraints.txt" "${wanted[@]}"
    python=/usr/bin/python3
    [[ $PYTHON_MODE == copy ]] && python=/opt/python/bin/python3
    IN_ROOT_BINDS=(--ro-bind "$WHEELS" /wheels)
    in_root "$python" -m venv /opt/dask
    in_root /opt/dask/bin/pip install -q --no-index --find-links /wheels \
        -c /wheels/constraints.txt "${wanted[@]}"
    IN_ROOT_BINDS=()
    numpy=$(in_root /opt/dask/bin/python -c 'import dask, distributed, numpy; print(numpy.__version__)')
    log "dask: dask/distributed $DASK_VERSION, numpy $numpy"
    write_stamp dask "$key"
}

# ---------------------------------------------------------------- layer 4: this package
# Every run, in seconds: the pilot runs `python -m tardis_sge_dask.pilot.startd_config` in
# the image, and that must be the working tree's code. A copy, so the build writes nothing
# into the working tree.
install_project() {
    local src
    src=$(mktemp -d)
    cp -r "$REPO/setup.py" "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/tardis_sge_dask" "$src/"
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    IN_ROOT_BINDS=(--bind "$src" /src)
    in_root /opt/dask/bin/pip install -q --no-index --no-deps --no-build-isolation \
        --force-reinstall /src
    IN_ROOT_BINDS=()
    rm -rf -- "$src"
    in_root /opt/dask/bin/python -m tardis_sge_dask.pilot --path >/dev/null
}

# ---------------------------------------------------------------- environment, stand-in
finish() {
    # What an Apptainer sandbox built from drone.def has: %environment as an env script.
    mkdir -p "$IMAGE/.singularity.d/env"
    cat >"$IMAGE/.singularity.d/env/90-environment.sh" <<'EOF'
#!/bin/sh
# containers/singularity/drone.def's %environment
export PATH=/opt/dask/bin:$PATH
export X509_CERT_DIR=${X509_CERT_DIR:-/etc/grid-security/certificates}
export LC_ALL=C.UTF-8
EOF
    chmod 755 "$IMAGE/.singularity.d" "$IMAGE/.singularity.d/env"
    chmod 644 "$IMAGE/.singularity.d/env/90-environment.sh"
    # Drones run as unprivileged users: all that was added must be readable by anyone.
    chmod -R a+rX "$IMAGE/opt" "$IMAGE$STAMPS"
    mkdir -p "$STANDIN_BIN"
    install -m 755 "$HERE/apptainer" "$STANDIN_BIN/apptainer"
    chmod 755 "$(dirname "$IMAGE")" "$STANDIN_BIN"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (mmdebstrap and the image's owner)"
    [[ -n $DASK_VERSION ]] || die "cannot read DASK_VERSION from $REPO/setup.py"
    [[ -x $CLIENT_PYTHON ]] || die "no client Python at $CLIENT_PYTHON (run \`make venv\` first)"
    read_client_python
    local start=$SECONDS
    mkdir -p "$(dirname "$IMAGE")"
    # One build at a time: `make install` and `make test` may overlap.
    exec 9>"$IMAGE.lock"
    flock 9
    timed "tools" need_tools
    if stamp_matches root "$ROOT_KEY"; then
        log "root: cached (Debian $SUITE, HTCondor $HTCONDOR_SERIES)"
    else
        timed "root file system (mmdebstrap $SUITE)" build_root
    fi
    timed "python" provide_python
    timed "dask" install_dask
    timed "tardis-sge-dask (--no-deps)" install_project
    finish
    log "image $IMAGE ($(du -sh "$IMAGE" | cut -f1)), stand-in $STANDIN_BIN/apptainer: $((SECONDS - start)) s"
}

main "$@"
