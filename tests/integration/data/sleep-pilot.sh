#!/bin/bash
# Stand-in pilot for adapter tests: shows what it received, then idles until the batch
# system warns it (SGE -notify: SIGUSR2; SLURM: SIGTERM or the --signal of the job).
echo "drone ${TardisDroneUuid:-?} cores=${TardisDroneCores:-?} memory=${TardisDroneMemory:-?}"
trap 'echo "warning signal received"; exit 0' USR1 USR2 TERM
sleep 3600 &
wait
