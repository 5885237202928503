#!/bin/bash
# Bring up every local service the test suite uses: Grid Engine, SLURM (+ slurmdbd), a
# test sshd on 127.0.0.1:2222, the overlay's HTCondor central manager and an XRootD
# storage element with X.509 authentication (root://localhost:1094). Each script is
# idempotent and takes about a second when its service is already running, so this is
# safe to run before every test session.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
logdir=${SERVICES_LOG_DIR:-/tmp/tardis-sge-dask-services}
mkdir -p "$logdir"
for svc in sge slurm sshd htcondor xrootd; do
    if ! bash "$here/$svc-up.sh" >"$logdir/$svc.log" 2>&1; then
        echo "services/up.sh: $svc failed to come up; last lines of $logdir/$svc.log:" >&2
        tail -n 25 "$logdir/$svc.log" >&2
        exit 1
    fi
    echo "services/up.sh: $svc ready ($(tail -n 1 "$logdir/$svc.log"))"
done
