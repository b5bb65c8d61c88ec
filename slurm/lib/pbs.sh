# The body of slurm/*.pbs (ABCI 3.0, PBS Professional): sourced after the template sets RECIPE, OVERRIDES, SELF and
# MODULES. One `fdsl_app fit` process per GPU under Open MPI's mpirun (fdsl_app.cluster.environments reads
# OMPI_COMM_WORLD_*; MASTER_ADDR/PORT are passed here). PBS has no warning signal before the walltime, so the run
# stops itself MARGIN before it (trainer.max_time) with a checkpoint, and a follow-up job queued at the start
# (-W depend=afterany) resumes it; the follow-up is withdrawn when the run finishes, fails, or stops for another
# reason than the time limit.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ -n "${PBS_JOBID:-}" ] && [ -n "${PBS_NODEFILE:-}" ] \
    || fail "not inside a PBS job: submit the template with qsub (qsub -P <group> slurm/pretrain.pbs), not bash"
cd "${PBS_O_WORKDIR:-.}"
if [ -f /etc/profile.d/modules.sh ] && [ -n "${MODULES:-}" ]; then
    set +u  # Environment Modules reads variables that may be unset
    # shellcheck disable=SC1091
    source /etc/profile.d/modules.sh
    # shellcheck disable=SC2086
    module load $MODULES || fail "module load $MODULES failed: set MODULES to modules this system has"
    set -u
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

# This job's own request, for its follow-up: project, queue, nodes, walltime (qstat -f; WALLTIME=HH:MM:SS without).
job_attr() {  # qstat -f wraps long values onto tab-indented continuation lines
    { qstat -f "$PBS_JOBID" 2>/dev/null || true; } | awk -v key="$1" '
        /^\t/ { if (name == key) { sub(/^\t/, ""); value = value $0 }; next }
        / = / { name = substr($0, 1, index($0, " = ") - 1); gsub(/^ +| +$/, "", name)
                if (name == key) value = substr($0, index($0, " = ") + 3) }
        END { print value }'
}
walltime=${WALLTIME:-$(job_attr Resource_List.walltime)}
project=${PROJECT:-$(job_attr project)}
select=$(job_attr Resource_List.select)
place=$(job_attr Resource_List.place)
# The run's time limit: the walltime less MARGIN seconds (start-up, the last steps, the checkpoint, exit).
[[ $walltime =~ ^([0-9]+):([0-9]{2}):([0-9]{2})$ ]] || fail "cannot read the walltime (got '$walltime'): set WALLTIME=HH:MM:SS"
limit=$(( 10#${BASH_REMATCH[1]} * 3600 + 10#${BASH_REMATCH[2]} * 60 + 10#${BASH_REMATCH[3]} - ${MARGIN:-600} ))
[ "$limit" -gt 0 ] || fail "walltime $walltime leaves no time after the ${MARGIN:-600} s margin: raise it or lower MARGIN"
max_time=$(printf '%02d:%02d:%02d:%02d' $((limit / 86400)) $((limit % 86400 / 3600)) $((limit % 3600 / 60)) $((limit % 60)))

fit_args "$nodes" "$per_node" trainer.cluster=openmpi "trainer.max_time=$max_time"
preflight
link=${FDSL_CHAIN_LINK:-0}
echo "job $PBS_JOBID (link $link): $nodes node(s) x $per_node process(es), stopping after $max_time"
case $STATUS in *": finished at step"*) echo "the run is finished: nothing to do"; exit 0 ;; esac

# The follow-up job, queued now so that it runs even if this one is killed at the walltime: the same script, project,
# queue, nodes and walltime, and the variables that shaped this job. (Values must not contain single quotes.)
next=
if [ "${CHAIN:-1}" = 1 ] && [ "$link" -lt "${CHAIN_MAX:-30}" ]; then
    vars="FDSL_CHAIN_LINK=$((link + 1))"
    for name in RECIPE OVERRIDES VENV CONTAINER CONTAINER_BIND MODULES FDSL_APP FDSL_APP_HOME WALLTIME MARGIN CHAIN \
        CHAIN_MAX MPIRUN_ARGS PROJECT WANDB_MODE WANDB_PROJECT; do
        [ -z "${!name:-}" ] || vars+=",$name='${!name}'"
    done
    options=(-W "depend=afterany:$PBS_JOBID" -v "$vars" -l "walltime=$walltime")
    [ -z "$project" ] || options+=(-P "$project")
    [ -z "${PBS_QUEUE:-}" ] || options+=(-q "$PBS_QUEUE")
    [ -z "$select" ] || options+=(-l "select=$select")
    [ -z "$place" ] || options+=(-l "place=$place")
    script=$SELF
    [[ $script = /* ]] || script=${FDSL_APP_HOME:-$PWD}/$script
    next=$(qsub "${options[@]}" "$script") || fail "could not queue the follow-up job (qsub ${options[*]} $script)"
    echo "follow-up job: $next (starts after this one ends)"
elif [ "${CHAIN:-1}" = 1 ]; then
    echo "chain limit CHAIN_MAX=${CHAIN_MAX:-30} reached: no follow-up job"
fi
step_before=$(step_of "$STATUS")

MASTER_ADDR=$(head -n 1 "$PBS_NODEFILE")
jobnum=${PBS_JOBID%%[!0-9]*}
MASTER_PORT=${MASTER_PORT:-$((10000 + ${jobnum:-0} % 10000))}  # below the ephemeral ports (32768-)
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
step_after=$(step_of "$STATUS")
# Only a stop at the time limit that made progress continues in the follow-up job.
if [ "$rc" -eq 0 ] && [[ $STATUS == *"by the time limit"* ]] && [ "$step_after" -gt "$step_before" ]; then
    echo "stopped before the walltime at step $step_after with a checkpoint: ${next:-resubmitting this script} resumes it"
    exit 0
fi
[ -z "$next" ] || qdel "$next" || echo "could not withdraw the follow-up job $next: qdel it" >&2
[ "$rc" -eq 0 ] || fail "training failed (exit $rc); the follow-up job was withdrawn: fix the cause and resubmit"
if [[ $STATUS != *": finished at step"* ]]; then
    echo "the run stopped at step $step_after (${STATUS#*(}; no follow-up: resubmit to continue"
    exit 0
fi
echo "the run is finished"
