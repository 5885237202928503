# sge-lib.sh - sourced by sge-up.sh and site-shapes.sh (after lib.sh): the Grid Engine pieces
# both need, written once.

# quiet qconf: its output only when it fails
qc() { local o; o=$(qconf "$@" 2>&1) || { echo "$o" >&2; die "qconf $* failed"; }; }

# sge_queue NAME SLOTS H_RT H_VMEM PE_LIST USER_LISTS [QTYPE] > file: a queue on every host
# (notify 5 s: with qsub -notify, qdel sends SIGUSR2 and qmod -sj SIGUSR1 5 s before
# SIGKILL/SIGSTOP)
sge_queue() {
    cat <<EOF
qname                 $1
hostlist              @allhosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 ${7:-BATCH INTERACTIVE}
ckpt_list             NONE
pe_list               $5
rerun                 FALSE
slots                 $2
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      posix_compliant
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:05
owner_list            NONE
user_lists            $6
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  $3
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                $4
EOF
}
