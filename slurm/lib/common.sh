# Shared by slurm.sh and pbs.sh (sourced; RECIPE and OVERRIDES set by the template).
set -euo pipefail

fail() { echo "fdsl_app job: error: $*" >&2; exit 2; }

# Inside the image containers/fdsl_app.def builds: its venv's fdsl_app (the def file's %post makes it).
CONTAINER_FDSL=/opt/fdsl_app/venv/bin/fdsl_app

# The Python environment: the Apptainer image $CONTAINER, else $VENV, else ./.venv of the submit directory, else
# whatever is on PATH.
activate_env() {
    if [ -n "${CONTAINER:-}" ]; then
        use_container
        return
    fi
    local venv=${VENV:-.venv}
    if [ -f "$venv/bin/activate" ]; then
        # shellcheck disable=SC1091
        source "$venv/bin/activate"
    elif [ -n "${VENV:-}" ]; then
        fail "VENV=$VENV has no bin/activate"
    fi
    # FDSL_APP: the command that runs fdsl_app (default: the installed script).
    read -r -a FDSL <<< "${FDSL_APP:-fdsl_app}"
    command -v "${FDSL[0]}" >/dev/null || fail "${FDSL[0]} not found: pip install the checkout into .venv (or set VENV=...)"
}

# FDSL runs fdsl_app in the image $CONTAINER: GPUs (--nv), the submit directory (runs/, recipes) and $CONTAINER_BIND
# (more folders, e.g. the data: "/groups/gXX/data,/scratch") mounted; the image's own Python packages only
# (PYTHONNOUSERSITE). The launcher's variables (SLURM_*, OMPI_*, MASTER_*) pass into the container as they are.
use_container() {
    [ -f "$CONTAINER" ] || fail "CONTAINER=$CONTAINER is not a file: build it with apptainer build (containers/fdsl_app.def)"
    local runtime
    runtime=$(command -v apptainer || command -v singularity) \
        || fail "CONTAINER is set but neither apptainer nor singularity is on PATH (module load apptainer?)"
    FDSL=("$runtime" exec --nv --env PYTHONNOUSERSITE=1 --bind "$PWD" --pwd "$PWD")
    [ -z "${CONTAINER_BIND:-}" ] || FDSL+=(--bind "$CONTAINER_BIND")
    FDSL+=("$CONTAINER" "$CONTAINER_FDSL")
}

# fit_args NODES PER_NODE [extra key=value ...]: the fit command line, in ARGS.
fit_args() {
    [ -n "${RECIPE:-}" ] || fail "RECIPE is empty: set it in the template or as RECIPE=... at submission"
    local overrides
    read -r -a overrides <<< "${OVERRIDES:-}"
    ARGS=(--config "$RECIPE" "trainer.num_nodes=$1" "trainer.devices=$2" "${@:3}" resume=auto "${overrides[@]}")
}

# Validate recipe, overrides, batch split and run directory once, on the first node, before any rank starts: one
# clear message instead of one per rank. Prints the run's status line (new / resumes from ... / finished).
preflight() {
    STATUS=$("${FDSL[@]}" fit "${ARGS[@]}" --check) || fail "the run cannot start: see the message above"
    echo "$STATUS"
}

# step_of STATUS: the step in a --check status line ("... at step N)"), 0 for a new run.
step_of() {
    if [[ $1 =~ at\ step\ ([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}
