# The body of slurm/*.sbatch: sourced after the template sets RECIPE and OVERRIDES. One `fdsl_app fit` task per GPU
# under srun; Lightning's SLURMEnvironment reads ranks from Slurm. On the --signal (USR1) fdsl_app checkpoints at the
# next step and requeues the job, which then runs this again and resumes (resume=auto; same W&B run).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -n "${SLURM_JOB_ID:-}" ] || fail "not inside a Slurm job: submit the template with sbatch (sbatch slurm/pretrain.sbatch), not bash"
cd "$SLURM_SUBMIT_DIR"
activate_env
per_node=${SLURM_NTASKS_PER_NODE:-}
[ -n "$per_node" ] || fail "#SBATCH --ntasks-per-node is missing: set it to the GPUs per node (one task per GPU)"
per_node=${per_node%%(*}  # "8(x2)" on heterogeneous allocations: the first count
fit_args "$SLURM_JOB_NUM_NODES" "$per_node" trainer.cluster=slurm
preflight
echo "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $SLURM_JOB_NUM_NODES node(s) x $per_node task(s) on $SLURM_JOB_NODELIST"
case $STATUS in *": finished at step"*) echo "the run is finished: nothing to do"; exit 0 ;; esac

export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
# srun does not inherit --cpus-per-task from sbatch (Slurm >= 22.05).
srun --kill-on-bad-exit=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} "${FDSL[@]}" fit "${ARGS[@]}"
