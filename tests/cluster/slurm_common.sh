# The slurm.conf settings both test clusters share (sourced by start_slurm.sh and start_two_nodes.sh): munge
# authentication, no cgroups, CPUs as the consumable, requeue allowed, short timeouts for tests.
slurm_common_conf() {
    cat <<CONF
AuthType=auth/munge
# A requeued job may start again once the credential of its first run expires (default 120 s): 10 s for the tests.
AuthInfo=cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
JobRequeue=1
MpiDefault=none
SlurmUser=root
SlurmdUser=root
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=600
KillWait=10
CONF
}
