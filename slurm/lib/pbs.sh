# The body of slurm/*.pbs (ABCI 3.0, PBS Professional): sourced after the template sets RECIPE, OVERRIDES, SELF and
# MODULES. One `fdsl_app fit` process per GPU under Open MPI's mpirun (fdsl_app.cluster.OpenMPIEnvironment reads
# OMPI_COMM_WORLD_*; MASTER_ADDR/PORT are passed here). PBS has no warning signal before the walltime, so the run
# stops itself MARGIN before it (trainer.max_time) with a checkpoint, and a follow-up job queued at the start
# (-W depend=afterany) resumes it; the follow-up is withdrawn when the run finishes or fails.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -n "${PBS_JOBID:-}" ] && [ -n "${PBS_NODEFILE:-}" ] \
    || fail "not inside a PBS job: submit the template with qsub (qsub -P <group> slurm/pretrain.pbs), not bash"
cd "${PBS_O_WORKDIR:-.}"
if [ -f /etc/profile.d/modules.sh ] && [ -n "${MODULES:-}" ]; then
    # shellcheck disable=SC1091
    source /etc/profile.d/modules.sh
    # shellcheck disable=SC2086
    module load $MODULES || fail "module load $MODULES failed: set MODULES to modules this system has"
fi
activate_env

# Caches on the node-local NVMe, not on the shared file system.
if [ -n "${PBS_LOCALDIR:-}" ]; then
    export TMPDIR=$PBS_LOCALDIR TRITON_CACHE_DIR=$PBS_LOCALDIR/triton TORCHINDUCTOR_CACHE_DIR=$PBS_LOCALDIR/inductor
fi

nodes=$(sort -u "$PBS_NODEFILE" | wc -l)
procs=$(wc -l < "$PBS_NODEFILE")
per_node=$((procs / nodes))
[ $((per_node * nodes)) -eq "$procs" ] || fail "$PBS_NODEFILE lists $procs slots over $nodes nodes: give every node the same mpiprocs"

# The run's time limit: the job's walltime (qstat, or WALLTIME=HH:MM:SS) less MARGIN (seconds to save and exit).
walltime=${WALLTIME:-$(qstat -f "$PBS_JOBID" 2>/dev/null | awk -F' = ' '/Resource_List.walltime/ {print $2}')}
[[ $walltime =~ ^([0-9]+):([0-9]{2}):([0-9]{2})$ ]] || fail "cannot read the walltime (got '$walltime'): set WALLTIME=HH:MM:SS"
limit=$(( 10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]} - ${MARGIN:-600} ))
[ "$limit" -gt 0 ] || fail "walltime $walltime leaves no time after the ${MARGIN:-600} s margin: raise it or lower MARGIN"
max_time=$(printf '%02d:%02d:%02d:%02d' $((limit / 86400)) $((limit % 86400 / 3600)) $((limit % 3600 / 60)) $((limit % 60)))

fit_args "$nodes" "$per_node" trainer.cluster=openmpi "trainer.max_time=$max_time"
preflight
link=${FDSL_CHAIN_LINK:-0}
echo "job $PBS_JOBID (link $link): $nodes node(s) x $per_node process(es), stopping after $max_time"
case $STATUS in *": finished at step"*) echo "the run is finished: nothing to do"; exit 0 ;; esac

# The follow-up job, queued now so that it runs even if this one is killed at the walltime.
next=
if [ "${CHAIN:-1}" = 1 ] && [ "$link" -lt "${CHAIN_MAX:-30}" ]; then
    next=$(qsub -W depend=afterany:"$PBS_JOBID" \
        -v "RECIPE='$RECIPE',OVERRIDES='${OVERRIDES:-}',FDSL_CHAIN_LINK=$((link + 1))" "$SELF") \
        || fail "could not queue the follow-up job (qsub ... $SELF)"
    echo "follow-up job: $next (starts after this one ends)"
fi

MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")
jobnum=${PBS_JOBID%%[!0-9]*}
MASTER_PORT=${MASTER_PORT:-$((20000 + ${jobnum:-0} % 20000))}
export MASTER_ADDR MASTER_PORT PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1
exports=()
for name in MASTER_ADDR MASTER_PORT PATH LD_LIBRARY_PATH PYTHONPATH VIRTUAL_ENV PYTHONUNBUFFERED PYTHONFAULTHANDLER \
    WANDB_API_KEY WANDB_MODE TMPDIR TRITON_CACHE_DIR TORCHINDUCTOR_CACHE_DIR; do
    [ -z "${!name+set}" ] || exports+=(-x "$name")  # to the ranks on the other nodes too
done
rc=0
# shellcheck disable=SC2086
mpirun -np "$procs" -npernode "$per_node" -hostfile "$PBS_NODEFILE" -bind-to none ${MPIRUN_ARGS:-} "${exports[@]}" \
    "${FDSL[@]}" fit "${ARGS[@]}" || rc=$?

STATUS=$("${FDSL[@]}" fit "${ARGS[@]}" --check 2>/dev/null) || STATUS=
echo "${STATUS:-run status unknown}"
if [ "$rc" -eq 0 ] && [[ $STATUS != *": finished at step"* ]]; then
    echo "stopped before the walltime with a checkpoint: ${next:-no follow-up queued (CHAIN=0): resubmit} resumes it"
    exit 0
fi
[ -z "$next" ] || qdel "$next" || echo "could not withdraw the follow-up job $next: qdel it" >&2
[ "$rc" -eq 0 ] || fail "training failed (exit $rc); the follow-up job was withdrawn: fix the cause and resubmit"
echo "the run is finished"
