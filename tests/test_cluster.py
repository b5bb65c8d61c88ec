"""Cluster runs on real parts: DDP on CPU (gloo) without a scheduler, the PBS template under Open MPI's mpirun, the
sbatch template on a one-node Slurm cluster (CI starts it: tests/cluster/start_slurm.sh), preemption and resume,
and the bad inputs of a cluster job.

Where mpirun or a running Slurm is missing these tests skip, except with FDSL_REQUIRE_CLUSTER=1 (CI), where they
fail: the cluster tests must run there.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import fdsl_app
from fdsl_app.cluster.environments import OpenMPIEnvironment, RendezvousError, select_environment, wait_for_main
from fdsl_app.config import load_config
from fdsl_app.data.synthetic import EpochSampler, FormulaDataset, collate_samples
from fdsl_app.families import create_family

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "cluster" / "tiny.yaml"  # 96 samples an epoch, global batch 16: 6 steps an epoch on 2 ranks
SAMPLES = 96
REQUIRED = os.environ.get("FDSL_REQUIRE_CLUSTER") == "1"
pytestmark = pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")


def need(present: bool, what: str) -> None:
    if not present:
        if REQUIRED:
            pytest.fail(f"{what} is missing, and FDSL_REQUIRE_CLUSTER=1 says the cluster tests must run")
        pytest.skip(f"{what} is missing")


# The fdsl_app command of the package under test: the installed script where there is one (`python -m` would import
# the source tree when run from the checkout, which has no compiled renderer in CI), else the module.
SCRIPT = Path(sys.executable).with_name("fdsl_app")
APP = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "fdsl_app"]


def job_env(**extra: str) -> dict[str, str]:
    """Environment of a job: the fdsl_app command of the package these tests import."""
    env = dict(os.environ)
    # No launcher's variables from this process (an in-process DDP fit leaves LOCAL_RANK, with which Lightning
    # would not start the second rank and rank 0 would wait for it until gloo's 30 min timeout).
    launchers = ("SLURM_", "OMPI_", "PMIX_", "PBS_", "TORCHELASTIC_", "PL_")
    world = ["MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK", "NODE_RANK", "RANK", "GROUP_RANK", "WORLD_SIZE",
             "LOCAL_WORLD_SIZE"]  # fmt: skip
    for key in [k for k in env if k.startswith(launchers)] + world:
        env.pop(key, None)
    env |= {
        "FDSL_APP": " ".join(APP),
        "PYTHONPATH": str(Path(fdsl_app.__file__).resolve().parents[1]),
        "PYTHONUNBUFFERED": "1",
        "OMPI_ALLOW_RUN_AS_ROOT": "1",  # CI runs as root; Open MPI refuses that without both
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",  # 2 ranks on however many cores this machine has
    }
    return env | extra


def ledger(run_dir: Path) -> dict[int, list[tuple[int, int]]]:
    """rank -> [(epoch, dataset index)] of the samples each rank trained on."""
    out = {}
    for path in sorted((run_dir / "ledger").glob("rank*.txt")):
        rows = [tuple(map(int, line.split())) for line in path.read_text().splitlines()]
        out[int(path.stem.removeprefix("rank"))] = rows
    return out


def assert_each_sample_once(run_dir: Path, epochs: int, ranks: int = 2) -> None:
    """Over all ranks, every epoch holds each of its samples exactly once, and every rank trained."""
    seen = ledger(run_dir)
    assert sorted(seen) == list(range(ranks)), f"ranks that trained: {sorted(seen)}"
    assert len({len(rows) for rows in seen.values()}) == 1, "ranks trained on different sample counts"
    for epoch in range(epochs):
        indices = sorted(i for rows in seen.values() for e, i in rows if e == epoch)
        assert indices == list(range(epoch * SAMPLES, (epoch + 1) * SAMPLES)), f"epoch {epoch}"
    assert {e for rows in seen.values() for e, _ in rows} == set(range(epochs))


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["train/loss_step"]) for r in csv.DictReader(f) if r.get("train/loss_step")]


def state(run_dir: Path) -> dict:
    import json

    return json.loads((run_dir / "state.json").read_text())


# --- distributed data -----------------------------------------------------------------------------------------------


def test_ranks_load_the_images_of_the_single_process_batches() -> None:
    """Batch s of 2 ranks with batch 4 holds the images and labels of batch s of one process with batch 8."""
    family = create_family("onepfrac", classes=4, n_points=500, image_size=16)
    data = FormulaDataset(family, family.generate(0), seed=3, samples_per_epoch=24, channels_first=True)

    def batches(world: int, rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sampler = EpochSampler(data, seed=3, num_replicas=world, rank=rank, epoch=1)
        return list(DataLoader(data, batch_size=8 // world, sampler=sampler, collate_fn=collate_samples))

    single, ranks = batches(1, 0), [batches(2, r) for r in range(2)]
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 3
    for s, (images, labels) in enumerate(single):
        together = torch.cat([ranks[0][s][0], ranks[1][s][0]])
        together_labels = torch.cat([ranks[0][s][1], ranks[1][s][1]])
        key = lambda t: t.flatten(1).numpy().tobytes()  # noqa: E731
        assert sorted(map(key, together)) == sorted(map(key, images))
        assert sorted(together_labels.tolist()) == sorted(labels.tolist())


def test_sampler_start_at_pins_the_next_epoch_once() -> None:
    sampler = EpochSampler(range(10), seed=0, shuffle=False)
    sampler.start_at(2, skip=7)
    sampler.set_epoch(5)  # what Lightning says does not move a pinned start
    assert list(sampler) == [27, 28, 29]
    sampler.set_epoch(3)
    assert list(sampler) == list(range(30, 40))
    with pytest.raises(ValueError, match="skip"):
        sampler.start_at(0, skip=-1)


def test_a_known_world_size_checks_the_batch_rule_at_load() -> None:
    cfg = load_config(TINY, ["trainer.devices=2", "trainer.num_nodes=2"])  # 16 over 4 ranks: fine
    assert cfg.data.batch_size == 16
    with pytest.raises(ValueError, match=r"GLOBAL batch.*world size 6.*nearest valid data.batch_size: 12 or 18"):
        load_config(TINY, ["trainer.devices=3", "trainer.num_nodes=2"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.cluster=pbs", "trainer.cluster must be one of 'auto', 'torchrun', 'slurm', 'openmpi', 'local'"),
        ("trainer.connect_timeout=-1", "trainer.connect_timeout must be >= 0.0"),
        ("trainer.max_time=1day", "trainer.max_time must be DD:HH:MM:SS, got '1day'"),
        ("trainer.max_time=00:-1:00:00", "trainer.max_time must be DD:HH:MM:SS"),
        ("log.sample_ledger=maybe", "config key 'log.sample_ledger'"),
    ],
)
def test_cluster_config_keys_refuse_bad_values(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(TINY, [override])


# --- the Open MPI environment (PBS) -----------------------------------------------------------------------------------


def openmpi_env(monkeypatch: pytest.MonkeyPatch, rank: int, size: int, local_size: int, **extra: str) -> None:
    values = {
        "OMPI_COMM_WORLD_RANK": rank, "OMPI_COMM_WORLD_SIZE": size, "OMPI_COMM_WORLD_LOCAL_SIZE": local_size,
        "OMPI_COMM_WORLD_LOCAL_RANK": rank % local_size, "MASTER_ADDR": "node0", "MASTER_PORT": "29400",
    }  # fmt: skip
    for key, value in (values | extra).items():
        monkeypatch.setenv(key, str(value))
    for key in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)


def test_openmpi_environment_reads_ranks_of_mpirun(monkeypatch: pytest.MonkeyPatch) -> None:
    openmpi_env(monkeypatch, rank=13, size=16, local_size=8)
    env = select_environment("auto")
    assert isinstance(env, OpenMPIEnvironment)
    assert (env.global_rank(), env.world_size(), env.local_rank(), env.node_rank()) == (13, 16, 5, 1)
    assert (env.main_address, env.main_port, env.creates_processes_externally) == ("node0", 29400, True)
    env.validate_settings(num_devices=8, num_nodes=2)
    with pytest.raises(ValueError, match="set trainer.devices=8 trainer.num_nodes=2"):
        env.validate_settings(num_devices=4, num_nodes=2)


def test_openmpi_environment_needs_the_main_address(monkeypatch: pytest.MonkeyPatch) -> None:
    openmpi_env(monkeypatch, rank=0, size=2, local_size=2)
    monkeypatch.delenv("MASTER_ADDR")
    with pytest.raises(ValueError, match="MASTER_ADDR is not set: mpirun must pass"):
        select_environment("auto")
    monkeypatch.setenv("MASTER_ADDR", "node0")
    monkeypatch.setenv("MASTER_PORT", "http")
    with pytest.raises(ValueError, match="MASTER_PORT must be a port number"):
        select_environment("openmpi")


def test_insisting_on_a_launcher_that_did_not_start_the_process_is_an_error(monkeypatch) -> None:
    for key in ("OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    assert select_environment("auto") is None and select_environment("local") is None
    with pytest.raises(ValueError, match="not started by srun inside an sbatch job"):
        select_environment("slurm")
    with pytest.raises(ValueError, match="must be one of"):
        select_environment("pbs")


# --- rendezvous -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_main_address_times_out_with_a_message() -> None:
    start = time.monotonic()
    with pytest.raises(RendezvousError, match=r"rank 1: the main process at 127.0.0.1:\d+ did not answer within 1 s"):
        wait_for_main("127.0.0.1", free_port(), timeout=1.0, rank=1)
    assert time.monotonic() - start < 10
    with pytest.raises(RendezvousError, match="cannot resolve the main address 'no-such-node.invalid'"):
        wait_for_main("no-such-node.invalid", 29500, timeout=30.0, rank=3)


@pytest.mark.slow
def test_a_rank_whose_main_process_never_answers_fails_instead_of_hanging(tmp_path) -> None:
    """Rank 1 of a 2-process mpirun-style world whose rank 0 never starts: a clear error after connect_timeout."""
    env = job_env(OMPI_COMM_WORLD_RANK="1", OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_LOCAL_RANK="1",
                  OMPI_COMM_WORLD_LOCAL_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))  # fmt: skip
    args = [*APP, "fit", "--config", str(TINY), f"root={tmp_path}", "trainer.devices=2", "trainer.connect_timeout=2"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert re.search(r"rank 1: the main process at 127.0.0.1:\d+ did not answer within 2 s", done.stderr)
    assert "trainer.connect_timeout sets the wait" in done.stderr


# --- DDP on CPU without a scheduler ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_ddp_on_cpu_trains_each_sample_once_per_epoch(tmp_path, launcher: str) -> None:
    fit = ["fit", "--config", str(TINY), f"root={tmp_path}", "trainer.devices=2"]
    if launcher == "lightning":  # Lightning starts the second process itself
        args = [*APP, *fit]
    else:
        args = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-port", str(free_port()),
                "-m", "fdsl_app", *fit]  # fmt: skip
    done = subprocess.run(args, env=job_env(), capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kind = "local" if launcher == "lightning" else "torchrun"
    for rank in (0, 1):
        assert f"cluster: {kind}, rank {rank}/2, local rank {rank}, node 0/1" in done.stdout
    assert done.stdout.count("run directory:") == 1  # one summary, from rank 0
    run = tmp_path / "cluster-tiny"
    assert_each_sample_once(run, epochs=2)
    assert state(run) == state(run) | {"state": "finished", "step": 12, "max_steps": 12}


# --- PBS template under Open MPI --------------------------------------------------------------------------------------


def fake_pbs(tmp_path: Path, job: str) -> dict[str, str]:
    """A PBS job's environment on this host: $PBS_NODEFILE lists it twice (2 ranks), and qsub/qdel record their
    arguments (there is no PBS server here; the job script and mpirun are real)."""
    bin_dir = tmp_path / "pbs-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "qsub").write_text('#!/bin/sh\necho "qsub $*" >> "$PBS_CALLS"\necho 9001.pbs1\n')
    (bin_dir / "qdel").write_text('#!/bin/sh\necho "qdel $*" >> "$PBS_CALLS"\n')
    for tool in ("qsub", "qdel"):
        (bin_dir / tool).chmod(0o755)
    nodefile = tmp_path / "nodefile"
    nodefile.write_text(f"{socket.gethostname()}\n" * 2)
    return job_env(PATH=f"{bin_dir}:{os.environ['PATH']}", PBS_JOBID=job, PBS_NODEFILE=str(nodefile),
                   PBS_O_WORKDIR=str(REPO), PBS_CALLS=str(tmp_path / "calls"), WALLTIME="01:00:00",
                   PROJECT="gxx00", RECIPE=str(TINY))  # fmt: skip


def run_pbs(env: dict[str, str], overrides: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "slurm" / "pretrain.pbs")], env=env | {"OVERRIDES": overrides} | extra,
                          capture_output=True, text=True, timeout=600, cwd=REPO)  # fmt: skip


@pytest.mark.slow
def test_pbs_template_trains_two_ranks_under_mpirun_and_chains_a_follow_up(tmp_path) -> None:
    need(shutil.which("mpirun") is not None, "Open MPI's mpirun (Debian: openmpi-bin)")
    env = fake_pbs(tmp_path, "4242.pbs1")
    run = tmp_path / "cluster-tiny"
    overrides = f"root={tmp_path} trainer.max_epochs=100"  # 600 steps: more than the first job's few seconds
    # A walltime of 10 s less a 4 s margin: the run stops itself after 6 s of fit, as it does 10 minutes before a
    # real walltime.
    first = run_pbs(env, overrides, WALLTIME="00:00:10", MARGIN="4")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    host = socket.gethostname()
    for rank in (0, 1):  # ranks, world, local rank and main address as OpenMPIEnvironment read them
        assert f"cluster: openmpi, rank {rank}/2, local rank {rank}, node 0/1, main {host}:14242" in first.stdout
    assert "stopping after 00:00:00:06" in first.stdout
    stopped = state(run)
    assert stopped["state"] == "stopped" and stopped["reason"] == "the time limit (trainer.max_time)", stopped
    assert 1 <= stopped["step"] < 600
    calls = (tmp_path / "calls").read_text().splitlines()
    # The follow-up: after this job, the same script by absolute path, project and walltime, and the job's variables.
    assert len(calls) == 1 and calls[0].startswith("qsub -W depend=afterany:4242.pbs1 -v FDSL_CHAIN_LINK=1,")
    assert f"RECIPE='{TINY}'" in calls[0] and f"OVERRIDES='{overrides}'" in calls[0] and "MARGIN='4'" in calls[0]
    assert "-l walltime=00:00:10 -P gxx00 " in calls[0] and calls[0].endswith(f"{REPO}/slurm/pretrain.pbs")
    assert "resumes it" in first.stdout

    # The follow-up job (a longer walltime here): resumes, finishes, and withdraws the follow-up it queued itself.
    second = run_pbs(env | {"PBS_JOBID": "9001.pbs1"}, overrides, FDSL_CHAIN_LINK="1")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"(state stopped at step {stopped['step']} by the time limit" in second.stdout
    assert "the run is finished" in second.stdout
    assert state(run) == state(run) | {"state": "finished", "step": 600}
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[1].startswith("qsub -W depend=afterany:9001.pbs1") and calls[2] == "qdel 9001.pbs1"
    assert_each_sample_once(run, epochs=100)  # across the two jobs

    # A third link finds the run finished and does nothing (no more follow-ups).
    third = run_pbs(env | {"PBS_JOBID": "9002.pbs1"}, overrides, FDSL_CHAIN_LINK="2")
    assert third.returncode == 0 and "nothing to do" in third.stdout
    assert len((tmp_path / "calls").read_text().splitlines()) == 3


@pytest.mark.slow
def test_pbs_chain_ends_when_a_job_stops_for_another_reason(tmp_path) -> None:
    """A stop that is not the time limit (here trainer.stop_at_step) withdraws the follow-up: no chain of jobs that
    each stop again at once."""
    need(shutil.which("mpirun") is not None, "Open MPI's mpirun (Debian: openmpi-bin)")
    done = run_pbs(fake_pbs(tmp_path, "4242.pbs1"), f"root={tmp_path} trainer.stop_at_step=4")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the run stopped at step 4 (state stopped at step 4 by trainer.stop_at_step)" in done.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 2 and calls[1] == "qdel 9001.pbs1"


@pytest.mark.parametrize(
    "overrides, extra, message",
    [
        ("", {"RECIPE": "no_such_recipe"}, "no recipe 'no_such_recipe'"),
        ("data.batch_size=15", {}, "data.batch_size=15 is the GLOBAL batch and must split evenly over world size 2"),
        ("", {"WALLTIME": "00:05:00"}, "walltime 00:05:00 leaves no time after the 600 s margin"),
        ("", {"WALLTIME": "1 day"}, "cannot read the walltime (got '1 day'): set WALLTIME=HH:MM:SS"),
    ],
    ids=["missing-recipe", "batch-does-not-divide", "walltime-too-short", "walltime-unreadable"],
)
def test_pbs_template_refuses_bad_input_before_starting_ranks(tmp_path, overrides, extra, message) -> None:
    env = fake_pbs(tmp_path, "4242.pbs1")
    done = run_pbs(env, f"root={tmp_path} {overrides}", **extra)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "calls").exists()  # nothing queued


@pytest.mark.slow
def test_a_resume_with_another_config_is_refused_by_the_preflight(tmp_path) -> None:
    run = tmp_path / "cluster-tiny"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 1}, run / "checkpoints" / "last.ckpt")  # readable, of no model
    cfg = load_config(TINY, [f"root={tmp_path}"])
    from fdsl_app.config import to_yaml

    (run / "config.yaml").write_text(to_yaml(cfg).replace("lr: 0.002", "lr: 0.1"))
    done = run_pbs(fake_pbs(tmp_path, "4242.pbs1"), f"root={tmp_path}")
    assert done.returncode == 2
    assert "belongs to a different config (optim.lr: 0.1 -> 0.002)" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("template", ["pretrain.sbatch", "finetune.sbatch", "pretrain.pbs", "finetune.pbs"])
def test_templates_refuse_to_run_outside_their_scheduler(template: str) -> None:
    done = subprocess.run(["bash", str(REPO / "slurm" / template)], env=job_env(), capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 2
    scheduler = "Slurm job: submit the template with sbatch" if "sbatch" in template else "PBS job: submit"
    assert f"not inside a {scheduler}" in done.stderr


# --- the Apptainer image: containers/fdsl_app.def and the templates' CONTAINER= ------------------------------------

DEF_FILE = REPO / "containers" / "fdsl_app.def"


def def_sections() -> dict[str, list[str]]:
    """The definition file's header (key "") and its %sections, as stripped lines without comments."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    for raw in DEF_FILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        elif line and not line.startswith("#"):
            sections[current].append(line)
    return sections


def image_fdsl() -> str:
    """The fdsl_app command inside the image: the venv %post makes, and the console script pyproject names."""
    post = " ; ".join(def_sections()["post"])
    venv = re.search(r"python3 -m venv (\S+)", post)
    assert venv, "%post makes no venv"
    scripts = re.search(r"\[project\.scripts\]\n(\w+) =", (REPO / "pyproject.toml").read_text())
    assert scripts is not None
    return f"{venv[1]}/bin/{scripts[1]}"


def test_container_definition_installs_the_command_the_templates_run() -> None:
    sections = def_sections()
    header = dict(line.split(": ", 1) for line in sections[""])
    assert header["Bootstrap"] == "docker" and header["From"].startswith("nvidia/cuda:")
    # %files: every input of the package's build, copied to one source folder that %post installs
    files = dict(line.split() for line in sections["files"])
    build_inputs = {"pyproject.toml", "CMakeLists.txt", "README.md", "csrc", "fdsl_app", "configs", "recipes"}
    assert set(files) == build_inputs and all((REPO / name).exists() for name in files)
    src = Path(files["pyproject.toml"]).parent
    assert all(dest == f"{src}/{name}" for name, dest in files.items())
    # %post: torch from the index of the chosen CUDA (a build argument), then the package into the same venv
    arguments = dict(line.split("=", 1) for line in sections["arguments"])
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", arguments["TORCH_INDEX"])
    fdsl = image_fdsl()
    python = fdsl.rsplit("/", 1)[0] + "/python"
    torch_line = next(i for i, line in enumerate(sections["post"]) if "--index-url {{ TORCH_INDEX }} torch" in line)
    package_line = next(i for i, line in enumerate(sections["post"]) if line.endswith(f"install --no-cache-dir {src}"))
    assert torch_line < package_line and sections["post"][package_line].startswith(f"{python} -m pip install")
    assert sections["post"][torch_line].startswith(f"{python} -m pip install")
    # the templates' command in the image, and the image's own entry point, are that venv's fdsl_app
    common = (REPO / "slurm" / "lib" / "common.sh").read_text()
    assert f"CONTAINER_FDSL={fdsl}\n" in common
    assert sections["runscript"] == [f'exec {fdsl} "$@"']
    # the PBS follow-up job runs in the same image
    assert re.search(r"for name in [^;]*\bCONTAINER CONTAINER_BIND\b", (REPO / "slurm" / "lib" / "pbs.sh").read_text())


def fake_apptainer(tmp_path: Path) -> dict[str, str]:
    """An `apptainer` on PATH that records its arguments and runs the image's fdsl_app as this test's package: it
    refuses any other command than the one the definition file installs."""
    bin_dir = tmp_path / "apptainer-bin"
    bin_dir.mkdir()
    stub = bin_dir / "apptainer"
    stub.write_text("""#!/bin/bash
echo "apptainer $*" >> "$APPTAINER_CALLS"
[ "$1" = exec ] || exit 64
shift
while [[ $1 == --* ]]; do if [ "$1" = --nv ]; then shift; else shift 2; fi; done
[ -f "$1" ] || { echo "no image $1" >&2; exit 65; }
[ "$2" = "$IMAGE_FDSL" ] || { echo "$2: not in the image (it has $IMAGE_FDSL)" >&2; exit 127; }
shift 2
exec $FDSL_APP "$@"
""")
    stub.chmod(0o755)
    image = tmp_path / "fdsl_app.sif"
    image.write_bytes(b"")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "APPTAINER_CALLS": str(tmp_path / "apptainer-calls"),
            "IMAGE_FDSL": image_fdsl(), "CONTAINER": str(image), "VENV": str(tmp_path / "no-venv")}  # fmt: skip


def test_pbs_template_runs_fdsl_app_in_the_container(tmp_path) -> None:
    """CONTAINER=IMAGE: the job's preflight runs `apptainer exec --nv` on the image's fdsl_app, with the submit
    directory (where runs/ lives) mounted and current; here it refuses a batch the 2 ranks cannot split."""
    env = fake_pbs(tmp_path, "4242.pbs1")
    env |= fake_apptainer(tmp_path) | {"PATH": f"{tmp_path / 'apptainer-bin'}:{env['PATH']}"}
    done = run_pbs(env, f"root={tmp_path} data.batch_size=15", CONTAINER_BIND=str(tmp_path))
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "data.batch_size=15 is the GLOBAL batch and must split evenly over world size 2" in done.stderr
    call = (tmp_path / "apptainer-calls").read_text().splitlines()[0]
    assert call.startswith(f"apptainer exec --nv --env PYTHONNOUSERSITE=1 --bind {REPO} --pwd {REPO} --bind "
                           f"{tmp_path} {tmp_path / 'fdsl_app.sif'} {image_fdsl()} fit --config {TINY} ")  # fmt: skip
    assert call.endswith(" --check")
    missing = run_pbs(env | {"CONTAINER": str(tmp_path / "nowhere.sif")}, f"root={tmp_path}")
    assert missing.returncode == 2 and f"CONTAINER={tmp_path / 'nowhere.sif'} is not a file" in missing.stderr


# --- Slurm ------------------------------------------------------------------------------------------------------------


def slurm_up() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# The two-node cluster of tests/cluster/start_two_nodes.sh: its config, and gloo on each namespace's eth0.
TWO_NODES = {"SLURM_CONF": "/etc/slurm-2n/slurm.conf", "GLOO_SOCKET_IFNAME": "eth0"}


def sbatch(tmp_path: Path, name: str, overrides: str, template: str = "pretrain.sbatch", recipe: str = "",
           *, two_nodes: bool = False) -> str:  # fmt: skip
    """Submit a template of slurm/ with CPU overrides, no GPUs: 2 tasks on the one-node cluster, or 1 task on each
    node of the two-node cluster; returns the job id."""
    layout = ["-N2", "--ntasks-per-node=1"] if two_nodes else ["--ntasks-per-node=2"]
    args = ["sbatch", "--parsable", "--gpus-per-node=0", *layout, "--cpus-per-task=1",
            f"--output={tmp_path}/{name}-%j.out", f"slurm/{template}"]  # fmt: skip
    env = job_env(RECIPE=recipe or str(TINY), OVERRIDES=f"root={tmp_path} name={name} {overrides}")
    done = subprocess.run(args, env=env | (TWO_NODES if two_nodes else {}), capture_output=True, text=True,
                          cwd=REPO, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def job_info(job: str, two_nodes: bool = False) -> dict[str, str]:
    env = os.environ | (TWO_NODES if two_nodes else {})
    text = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True, timeout=30).stdout
    return dict(re.findall(r"(\w+)=(\S+)", text))


def wait_for(condition, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def wait_until_done(job: str, timeout: float = 400, two_nodes: bool = False) -> dict[str, str]:
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")
    return wait_for(lambda: (info := job_info(job, two_nodes)).get("JobState") in ended and info, timeout,
                    f"job {job}")  # fmt: skip


def job_log(tmp_path: Path, name: str, job: str) -> str:
    return (tmp_path / f"{name}-{job}.out").read_text()


@pytest.fixture(scope="module")
def slurm() -> None:
    need(slurm_up(), "a running Slurm cluster (tests/cluster/start_slurm.sh starts one)")


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_sbatch_template_survives_a_requeue_with_the_losses_of_an_uninterrupted_run(tmp_path) -> None:
    overrides = "trainer.max_epochs=20 trainer.checkpoint_every_n_steps=10"  # 120 steps; a checkpoint every 10
    straight = sbatch(tmp_path, "straight", overrides)
    info = wait_until_done(straight)
    out = job_log(tmp_path, "straight", straight)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-3000:]
    for rank in (0, 1):  # both ranks trained, placed by Lightning's SLURMEnvironment
        assert re.search(rf"cluster: slurm, rank {rank}/2, local rank {rank}, node 0/1, main \S+:\d+", out)
    assert_each_sample_once(tmp_path / "straight", epochs=20)
    assert state(tmp_path / "straight")["state"] == "finished"

    # The same run, sent the requeue signal mid-run (as `#SBATCH --signal=USR1@180` does before the time limit).
    job = sbatch(tmp_path, "preempted", overrides)
    checkpoint = tmp_path / "preempted" / "checkpoints" / "last.ckpt"
    wait_for(checkpoint.is_file, 300, "the first periodic checkpoint")
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)
    # Slurm starts the requeued job again once its first run's credential expires (cred_expire, 10 s here).
    info = wait_until_done(job)
    out = job_log(tmp_path, "preempted", job)
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", out[-3000:]
    stopped = re.search(r"stopping at step (\d+) with a checkpoint: the requeue signal", out)
    assert stopped and 10 <= int(stopped.group(1)) < 120, out[-3000:]
    assert f"requeued Slurm job {job}" in out and "job " + job + " (restart 1)" in out
    assert state(tmp_path / "preempted") == state(tmp_path / "preempted") | {"state": "finished", "step": 120}
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "preempted")
    assert len(a) == len(b) == 120
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert_each_sample_once(tmp_path / "preempted", epochs=20)  # across the two sessions of the job


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_sbatch_template_with_a_batch_the_nodes_cannot_split_fails_with_the_rule(tmp_path) -> None:
    job = sbatch(tmp_path, "uneven", "data.batch_size=15")
    info = wait_until_done(job)
    out = job_log(tmp_path, "uneven", job)
    assert info["JobState"] == "FAILED" and "must split evenly over world size 2" in out
    assert "cluster: slurm" not in out  # refused before any rank started


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2])
def test_sigterm_stops_at_a_step_with_a_checkpoint_that_resumes(tmp_path, ranks: int) -> None:
    """What Slurm preemption, scancel, or PBS at the walltime send: the run saves its step and a resume finishes.
    With 2 ranks only rank 0 gets the signal (Lightning started rank 1): the ranks still stop at the same step."""
    args = [*APP, "fit", "--config", str(TINY), f"root={tmp_path}", f"trainer.devices={ranks}",
            "trainer.max_epochs=40", "trainer.checkpoint_every_n_steps=20"]  # fmt: skip
    run = tmp_path / "cluster-tiny"
    popen = {"env": job_env(), "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True, "cwd": tmp_path}
    with subprocess.Popen(args, **popen) as proc:
        wait_for((run / "checkpoints" / "last.ckpt").is_file, 300, "the first periodic checkpoint")
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    stopped = re.search(r"stopping at step (\d+) with a checkpoint: SIGTERM", out)
    assert stopped, out[-3000:]
    step = int(stopped.group(1))
    assert 20 <= step < 240 and proc.returncode == 143
    assert f"stopped at step {step} (SIGTERM); resume with resume=auto" in out
    assert state(run) == state(run) | {"state": "stopped", "step": step}
    resumed = subprocess.run([*args, "resume=auto"], env=job_env(), capture_output=True, text=True, timeout=600,
                             cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert re.search(rf"resuming from \S*last\.ckpt at step {step}\b", resumed.stdout + resumed.stderr)
    assert state(run) == state(run) | {"state": "finished", "step": 240}
    assert_each_sample_once(run, epochs=40, ranks=ranks)


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_finetune_sbatch_template_trains_two_ranks_on_cifar_with_workers(tmp_path) -> None:
    from datasets import write_cifar10

    write_cifar10(tmp_path / "cifar", per_batch=16)  # 80 training images: 5 batches of 8 per rank
    overrides = f"data.root={tmp_path / 'cifar'} model.init_from=null data.batch_size=16 log.sample_ledger=true"
    job = sbatch(tmp_path, "ft", overrides, template="finetune.sbatch", recipe="finetune_cifar10_quickstart")
    info = wait_until_done(job)
    out = job_log(tmp_path, "ft", job)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", out[-3000:]
    assert "cluster: slurm, rank 1/2" in out and "val/top1:" in out
    # One epoch of the training split (the 80 images less the validation share carved out of them), split between
    # the ranks, disjoint (data.num_workers=1 in the recipe); drop_last leaves out what does not fill a batch of 8.
    from fdsl_app.data.real import CIFAR10DataModule

    train = CIFAR10DataModule(tmp_path / "cifar").carved_indices()["train"]
    seen = ledger(tmp_path / "ft")
    indices = sorted(i for rows in seen.values() for _, i in rows)
    assert sorted(seen) == [0, 1] and len(indices) == len(set(indices)) == 2 * (len(train) // 2 // 8 * 8)
    assert set(indices) <= set(range(len(train)))  # positions in the training split


def test_pbs_reads_its_own_request_from_qstat_with_wrapped_lines(tmp_path) -> None:
    """PBS Pro's `qstat -f` wraps long values onto tab-indented lines; the follow-up job needs them whole."""
    qstat = tmp_path / "qstat"
    qstat.write_text(
        "#!/bin/sh\nprintf 'Job Id: 1.pbs1\\n    project = gaa50000\\n"
        "    Resource_List.select = 2:ncpus=192:mpiprocs=8:ngpus=8+1:ncpus=192:m\\n\\tpiprocs=8:ngpus=8\\n"
        "    Resource_List.walltime = 24:00:00\\n    Resource_List.place = scatter:excl\\n'\n"
    )
    qstat.chmod(0o755)
    script = (
        f'eval "$(sed -n "/^job_attr()/,/^}}/p" {REPO / "slurm" / "lib" / "pbs.sh"})"\n'
        "for key in project Resource_List.select Resource_List.walltime Resource_List.place; do job_attr $key; done"
    )
    env = job_env(PATH=f"{tmp_path}:{os.environ['PATH']}", PBS_JOBID="1.pbs1")
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.splitlines() == ["gaa50000", "2:ncpus=192:mpiprocs=8:ngpus=8+1:ncpus=192:mpiprocs=8:ngpus=8",
                                "24:00:00", "scatter:excl"]  # fmt: skip


# -- two Slurm nodes, each in its own network namespace (tests/cluster/start_two_nodes.sh) --------------------------

TWO_NODES_REQUIRED = os.environ.get("FDSL_REQUIRE_TWO_NODES") == "1"


@pytest.fixture(scope="module")
def two_nodes() -> None:
    try:
        up = subprocess.run(["sinfo", "-h", "-o", "%t"], env=os.environ | TWO_NODES,
                            capture_output=True, text=True, timeout=20).stdout.split() == ["idle"]  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        up = False
    if not up:
        if TWO_NODES_REQUIRED:
            pytest.fail("the two-node cluster is not up, and FDSL_REQUIRE_TWO_NODES=1 says its tests must run")
        pytest.skip("needs the two-node cluster (tests/cluster/start_two_nodes.sh)")


def tasks_in(namespace: str) -> list[int]:
    """PIDs of fdsl_app fits running in network namespace `namespace` (a node's job tasks)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
    commands = {int(p): Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in pids}
    return [pid for pid, argv in commands.items() if any(b"fdsl_app" in a for a in argv) and b"fit" in argv]


@pytest.mark.slow
@pytest.mark.usefixtures("two_nodes")
def test_two_nodes_train_each_sample_once_and_a_killed_node_resumes_with_the_uninterrupted_losses(tmp_path) -> None:
    overrides = "trainer.max_epochs=10 trainer.checkpoint_every_n_steps=5"  # 60 steps over 2 ranks
    straight = sbatch(tmp_path, "straight", overrides, two_nodes=True)
    info = wait_until_done(straight, two_nodes=True)
    out = (tmp_path / f"straight-{straight}.out").read_text()
    assert info["JobState"] == "COMPLETED", out[-3000:]
    for rank in (0, 1):  # one rank per node, meeting at the first node's namespace address
        assert re.search(rf"cluster: slurm, rank {rank}/2, local rank 0, node {rank}/2, main fdsl-n1:\d+", out), out
    assert_each_sample_once(tmp_path / "straight", epochs=10)

    # kill -9 of the second node's task mid-run: srun ends the job (--kill-on-bad-exit), which fails cleanly.
    job = sbatch(tmp_path, "killed", overrides, two_nodes=True)
    wait_for((tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file, 300, "the first checkpoint")
    victims = wait_for(lambda: tasks_in("fdsl-n2"), 60, "the second node's task")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    info = wait_until_done(job, two_nodes=True)
    assert info["JobState"] == "FAILED", info
    assert not [p for p in tasks_in("fdsl-n1") + tasks_in("fdsl-n2")], "a task outlived its job"
    # Rank 0 either saw its peer go first (it records the failure and gives the run's lock back) or was killed by
    # srun first (its lock stays, for the resubmission to take over): which comes first is a race.
    run = tmp_path / "killed"
    recorded = (run / "state.json").is_file()
    if recorded:
        assert state(run)["state"] == "failed" and not (run / "lock.json").exists()
    else:
        assert (run / "lock.json").is_file()
    again = sbatch(tmp_path, "killed", overrides, two_nodes=True)  # the resubmission resumes from the last checkpoint
    info = wait_until_done(again, two_nodes=True)
    out = (tmp_path / f"killed-{again}.out").read_text()
    assert info["JobState"] == "COMPLETED", out[-3000:]
    assert re.search(r"killed: resumes from \S+last.ckpt", out), out[-3000:]
    if recorded:
        assert re.search(r"resumes from \S+last.ckpt \(state failed at step \d+\)", out), out[-3000:]
    else:
        assert "took over the lock of PID" in out and "its process is gone" in out, out[-3000:]
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "killed")
    assert len(a) == len(b) == 60
    np.testing.assert_allclose(b, a, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.usefixtures("two_nodes")
def test_pbs_template_across_two_namespaces_under_mpirun_and_a_killed_node_resumes(tmp_path) -> None:
    # mpirun starts its daemons in the nodes' namespaces through tests/cluster/netns_rsh.sh instead of ssh.
    need(shutil.which("mpirun") is not None, "Open MPI's mpirun (Debian: openmpi-bin)")
    launch = (f"--mca plm_rsh_agent {REPO}/tests/cluster/netns_rsh.sh --mca oob_tcp_if_include 10.77.0.0/24 "
              "-x GLOO_SOCKET_IFNAME")  # fmt: skip
    (tmp_path / "nodes").write_text("fdsl-n1\nfdsl-n2\n")
    env = fake_pbs(tmp_path, "4343.pbs1") | {"PBS_NODEFILE": str(tmp_path / "nodes"), "MPIRUN_ARGS": launch,
                                             "GLOO_SOCKET_IFNAME": "eth0", "CHAIN": "0"}  # fmt: skip
    overrides = "trainer.max_epochs=10 trainer.checkpoint_every_n_steps=5"  # 60 steps over 2 ranks
    straight = run_pbs(env, f"root={tmp_path} name=straight {overrides}")
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    for rank in (0, 1):  # one rank per namespace, meeting at the first one's address
        assert f"cluster: openmpi, rank {rank}/2, local rank 0, node {rank}/2, main fdsl-n1:14343" in straight.stdout
    assert_each_sample_once(tmp_path / "straight", epochs=10)

    # kill -9 of the second node's rank mid-run: mpirun ends the job, which fails with the reason.
    job = subprocess.Popen(["bash", str(REPO / "slurm" / "pretrain.pbs")], env=env | {
        "OVERRIDES": f"root={tmp_path} name=killed {overrides}", "PBS_JOBID": "4344.pbs1"}, cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    wait_for((tmp_path / "killed" / "checkpoints" / "last.ckpt").is_file, 300, "the first checkpoint")
    for pid in wait_for(lambda: tasks_in("fdsl-n2"), 60, "the second node's rank"):
        os.kill(pid, signal.SIGKILL)
    out = job.communicate(timeout=300)[0]
    assert job.returncode != 0 and "training failed" in out, out[-3000:]
    assert not tasks_in("fdsl-n1") + tasks_in("fdsl-n2"), "a rank outlived its job"
    again = run_pbs(env | {"PBS_JOBID": "4345.pbs1"}, f"root={tmp_path} name=killed {overrides}")
    assert again.returncode == 0 and "the run is finished" in again.stdout, again.stdout[-3000:] + again.stderr[-3000:]
    assert re.search(r"killed: resumes from \S+last.ckpt", again.stdout), again.stdout[-3000:]
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "killed")
    assert len(a) == len(b) == 60
    np.testing.assert_allclose(b, a, rtol=1e-5)
