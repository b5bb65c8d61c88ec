"""Where a run's processes come from, and how a run survives the end of its job.

One process per device, started by one of:

- Slurm's ``srun`` (one task per GPU): Lightning's ``SLURMEnvironment``, with its auto-requeue replaced by
  :class:`Preemption` (which checkpoints at an optimiser-step boundary instead of inside the signal handler);
- Open MPI's ``mpirun`` (PBS Professional on ABCI 3.0): :class:`OpenMPIEnvironment`, ranks from
  ``OMPI_COMM_WORLD_*``, main address and port passed by the job script as ``MASTER_ADDR``/``MASTER_PORT``;
- ``torchrun``: Lightning's ``TorchElasticEnvironment``;
- nothing: Lightning starts ``trainer.devices`` processes itself (``LightningEnvironment``).

``trainer.cluster=auto`` takes the first that started this process: torchrun, Open MPI, Slurm, else local.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.pytorch.utilities import rank_zero_only

from fdsl_app.config import CLUSTERS, parse_duration

log = logging.getLogger("fdsl_app")

REQUEUE_SIGNAL = signal.SIGUSR1  # what `#SBATCH --signal=USR1@<seconds>` sends before the time limit


class RendezvousError(RuntimeError):
    """A rank could not reach the main process (rank 0) of the run."""


class OpenMPIEnvironment(ClusterEnvironment):
    """Processes started by Open MPI's ``mpirun``, one per device (``-np`` = nodes x devices per node).

    Rank, world size and local rank come from ``OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}``; the node rank
    is ``rank // local_size`` (mpirun fills node by node, every node with the same count). The main address and
    port must be passed explicitly (``mpirun -x MASTER_ADDR=<first node> -x MASTER_PORT=<port>``), as
    ``slurm/lib/pbs.sh`` does: Open MPI does not tell them.
    """

    def __init__(self) -> None:
        super().__init__()
        missing = [k for k in ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                               "OMPI_COMM_WORLD_LOCAL_SIZE") if k not in os.environ]  # fmt: skip
        if missing:
            raise ValueError(f"trainer.cluster=openmpi, but {', '.join(missing)} unset: start the run with mpirun")
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(key):
                raise ValueError(
                    f"{key} is not set: mpirun must pass the main process's address and port, e.g. "
                    "mpirun -x MASTER_ADDR=$(head -n1 $PBS_NODEFILE) -x MASTER_PORT=29500 ... (slurm/lib/pbs.sh does)"
                )
        try:
            self._port = int(os.environ["MASTER_PORT"])
        except ValueError:
            raise ValueError(f"MASTER_PORT must be a port number, got {os.environ['MASTER_PORT']!r}") from None
        self._rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
        self._size = int(os.environ["OMPI_COMM_WORLD_SIZE"])
        self._local_rank = int(os.environ["OMPI_COMM_WORLD_LOCAL_RANK"])
        self._local_size = int(os.environ["OMPI_COMM_WORLD_LOCAL_SIZE"])

    @property
    def creates_processes_externally(self) -> bool:
        return True

    @property
    def main_address(self) -> str:
        return os.environ["MASTER_ADDR"]

    @property
    def main_port(self) -> int:
        return self._port

    @staticmethod
    def detect() -> bool:
        return "OMPI_COMM_WORLD_SIZE" in os.environ

    def world_size(self) -> int:
        return self._size

    def set_world_size(self, size: int) -> None:  # given by mpirun; checked in validate_settings
        pass

    def global_rank(self) -> int:
        return self._rank

    def set_global_rank(self, rank: int) -> None:
        pass

    def local_rank(self) -> int:
        return self._local_rank

    def node_rank(self) -> int:
        return self._rank // self._local_size

    def validate_settings(self, num_devices: int, num_nodes: int) -> None:
        if num_devices != self._local_size or num_devices * num_nodes != self._size:
            raise ValueError(
                f"mpirun started {self._size} processes, {self._local_size} per node, but the config asks for "
                f"trainer.devices={num_devices} x trainer.num_nodes={num_nodes}; set "
                f"trainer.devices={self._local_size} trainer.num_nodes={self._size // self._local_size}"
            )


def select_environment(choice: str = "auto") -> ClusterEnvironment | None:
    """The cluster environment for ``trainer.cluster=choice``; None: Lightning launches the processes itself.

    Raises:
        ValueError: `choice` is unknown, or names a launcher that did not start this process.
    """
    if choice not in CLUSTERS:
        raise ValueError(f"trainer.cluster must be one of {', '.join(CLUSTERS)}, got {choice!r}")
    found = {  # mpirun inside a Slurm allocation leaves SLURM_* set in every rank: Open MPI's variables decide
        "torchrun": TorchElasticEnvironment.detect(),
        "openmpi": OpenMPIEnvironment.detect(),
        "slurm": SLURMEnvironment.detect(),
    }
    if choice == "auto":
        choice = next((name for name, present in found.items() if present), "local")
    elif choice != "local" and not found[choice]:
        how = {"torchrun": "torchrun", "slurm": "srun inside an sbatch job", "openmpi": "mpirun"}[choice]
        raise ValueError(f"trainer.cluster={choice}, but this process was not started by {how}")
    if choice == "torchrun":
        return TorchElasticEnvironment()
    if choice == "slurm":
        return SLURMEnvironment(auto_requeue=False)  # Preemption checkpoints and requeues instead
    if choice == "openmpi":
        return OpenMPIEnvironment()
    return None


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of the run, the one that writes the run directory and prints summaries (every
    rank runs fit; the rank is Lightning's, as the Trainer or :func:`adopt_rank` set it)."""
    return rank_zero_only.rank == 0


def adopt_rank(env: ClusterEnvironment | None) -> None:
    """Tell Lightning's rank-zero helpers this process's rank now: the run directory is written before the Trainer
    sets it, and Lightning's guess from RANK/SLURM_PROCID misses Open MPI's ranks."""
    if env is not None:
        rank_zero_only.rank = env.global_rank()


def describe(env: ClusterEnvironment | None, trainer: L.Trainer) -> str:
    """One line on where this process sits in the run (logged by every rank)."""
    kind = {TorchElasticEnvironment: "torchrun", SLURMEnvironment: "slurm", OpenMPIEnvironment: "openmpi"}.get(
        type(env), "local"
    )
    main = ""
    if trainer.world_size > 1 and env is not None:
        main = f", main {env.main_address}:{env.main_port}"
    return (
        f"cluster: {kind}, rank {trainer.global_rank}/{trainer.world_size}, local rank {trainer.local_rank}, "
        f"node {trainer.node_rank}/{trainer.num_nodes}{main}"
    )


def check_world(env: ClusterEnvironment | None, trainer: L.Trainer) -> None:
    """Refuse a launcher/config mismatch before it becomes a hang at process-group start-up."""
    if env is None or not env.creates_processes_externally:
        return
    devices, nodes = trainer.num_devices, trainer.num_nodes
    if isinstance(env, OpenMPIEnvironment):
        env.validate_settings(devices, nodes)
    elif env.world_size() != devices * nodes:
        raise ValueError(
            f"the launcher started {env.world_size()} processes, but trainer.devices={devices} x "
            f"trainer.num_nodes={nodes} = {devices * nodes}; make them agree (one process per device: for Slurm "
            "--ntasks-per-node = trainer.devices and --nodes = trainer.num_nodes)"
        )


def wait_for_main(address: str, port: int, timeout: float, rank: int) -> None:
    """Block until rank 0's rendezvous port accepts connections, or fail after `timeout` seconds.

    torch.distributed would otherwise retry silently for its 30-minute default before failing.
    """
    try:
        socket.getaddrinfo(address, port)
    except socket.gaierror as err:
        raise RendezvousError(
            f"rank {rank}: cannot resolve the main address {address!r} ({err.strerror}); MASTER_ADDR must be a "
            "host name or IP address of the first node that every node can resolve"
        ) from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((address, port), timeout=min(5.0, max(timeout, 0.1))):
                return
        except OSError as err:
            reason = err.strerror or type(err).__name__
        if time.monotonic() >= deadline:
            raise RendezvousError(
                f"rank {rank}: the main process at {address}:{port} did not answer within {timeout:g} s "
                f"(last error: {reason}); check that MASTER_ADDR is the first node's address reachable from this node, "
                "that the port is free and not firewalled, and that rank 0 started (its log says why not); "
                "trainer.connect_timeout sets the wait"
            )
        time.sleep(0.5)


_STOP_REASONS = {1: "the time limit (trainer.max_time)", 2: "the requeue signal", 3: "SIGTERM"}


class Preemption(L.Callback):
    """Ends a job's part of a run cleanly, before the job is killed: at the next optimiser step, checkpoint and stop.

    Triggers: the requeue signal (SIGUSR1: ``#SBATCH --signal=USR1@180`` sends it 3 minutes before the time limit),
    SIGTERM (Slurm preemption or ``scancel``, PBS ``qdel``) and `max_time` ("DD:HH:MM:SS" of this process, counted
    from the callback's creation: a resumed job gets the whole time again). Signal handlers only set a flag; the
    decision is taken at optimiser-step boundaries and reduced over ranks, so every rank stops at the same step (no
    collective runs inside a signal handler, unlike Lightning's own SIGTERM handling, which this replaces during
    training). Place it before :class:`~fdsl_app.callbacks.LastCheckpoint`, which saves whenever a stop is
    requested. The stop skips the validation Lightning would otherwise run first.

    After the requeue signal under Slurm, :meth:`requeue` (called at the very end of the fit, once every file is
    written) puts the job back in the queue; the requeued job runs the same script, whose ``resume=auto`` continues.
    """

    def __init__(self, max_time: str | None = None) -> None:
        self.deadline = time.monotonic() + parse_duration(max_time) if max_time is not None else None
        self.signalled: int | None = None
        self.reason: str | None = None
        self.cause = 0  # see on_train_batch_end
        self.stopped_at: int | None = None
        self._previous: dict[int, Any] = {}
        self._seen_step = -1

    def _handle(self, signum: int, frame: Any) -> None:
        self.signalled = signum  # only a flag: the checkpoint is taken at a step boundary

    def _install(self, signum: int) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous.setdefault(signum, signal.signal(signum, self._handle))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._install(REQUEUE_SIGNAL)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._install(signal.SIGTERM)  # after Lightning registered its handler at the start of the fit
        if trainer.received_sigterm:  # one that came earlier (sanity check, loader start-up) stops at the first step
            self.signalled = signal.SIGTERM
            trainer._signal_connector.received_sigterm = False
        self._seen_step = trainer.global_step  # a resumed run's first micro-batch is no step boundary

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning calls no teardown hooks after an exception

    def _restore(self) -> None:
        # Only where the handler is still ours: Lightning may have put back the original SIGTERM handler already.
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._seen_step or self.stopped_at is not None or step >= trainer.max_steps:
            return  # mid-accumulation (no step boundary yet), already stopping, or the run's last step anyway
        self._seen_step = step
        # What asks to stop, as a code reduced (max) over ranks, so that every rank stops at this step for the same
        # reason: 0 nothing, 1 the time limit, 2 the requeue signal, 3 SIGTERM.
        code = {REQUEUE_SIGNAL: 2, signal.SIGTERM: 3}.get(self.signalled, 0)  # type: ignore[arg-type]
        if not code and self.deadline is not None and time.monotonic() >= self.deadline:
            code = 1
        if trainer.world_size > 1:
            flag = torch.tensor([code], device=trainer.strategy.root_device)
            code = int(trainer.strategy.reduce(flag, reduce_op="max").item())
        if not code:
            return
        self.stopped_at, self.cause = step, code
        self.reason = _STOP_REASONS[code]
        trainer.should_stop = True
        if batch_idx + 1 < trainer.num_training_batches:
            # No validation pass on the way out mid-epoch (the time is short). At an epoch's end it runs: a resume
            # from this checkpoint would skip that epoch's validation.
            trainer.limit_val_batches = 0
        if trainer.is_global_zero:
            log.info("stopping at step %d with a checkpoint: %s", step, self.reason)

    @property
    def requeue_requested(self) -> bool:
        return self.cause == 2

    @property
    def terminated(self) -> bool:
        """Stopped on SIGTERM: the process should end as a SIGTERM'd one (exit status 143)."""
        return self.cause == 3

    def requeue(self) -> None:
        """Put this Slurm job back in the queue (rank 0 only; a no-op outside Slurm)."""
        job = os.environ.get("SLURM_JOB_ID")
        if not is_rank_zero() or not job:
            return
        if os.environ.get("SLURM_ARRAY_JOB_ID"):
            job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if result.returncode == 0:
            log.info("requeued Slurm job %s: it resumes from the checkpoint when it starts again", job)
        else:
            log.warning("scontrol requeue %s failed (%s): resubmit the job to resume", job, result.stderr.strip())
