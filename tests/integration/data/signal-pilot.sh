#!/bin/bash
# Stand-in pilot for the SLURM stop tests: writes every signal it gets, in order, to its
# output. With STANDIN_STUBBORN=1 it ignores the warning and keeps running, so only the
# kill after the stop grace ends it.
echo "started drone ${TardisDroneUuid:-?} cores=${TardisDroneCores:-?}"
for sig in USR1 USR2 TERM; do
    if [ "${STANDIN_STUBBORN:-0}" = 1 ]; then
        trap "echo got $sig" "$sig"
    else
        trap "echo got $sig; exit 0" "$sig"
    fi
done
while true; do sleep 1; done
