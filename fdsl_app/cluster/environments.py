"""Where a run's processes come from: the launcher, each rank's place, and the check that they can meet.

One process per device, started by one of:

- Slurm's ``srun`` (one task per GPU): Lightning's ``SLURMEnvironment``, with its auto-requeue replaced by
  :class:`~fdsl_app.training.preemption.Preemption` (which checkpoints at an optimiser-step boundary instead of
  inside the signal handler) and :func:`fdsl_app.cluster.launch.requeue_slurm_job`;
- Open MPI's ``mpirun`` (PBS Professional on ABCI 3.0): :class:`OpenMPIEnvironment`, ranks from
  ``OMPI_COMM_WORLD_*``, main address and port passed by the job script as ``MASTER_ADDR``/``MASTER_PORT``;
- ``torchrun``: Lightning's ``TorchElasticEnvironment``;
- nothing: Lightning starts ``trainer.devices`` processes itself (``LightningEnvironment``).

``trainer.cluster=auto`` takes the first that started this process: torchrun, Open MPI, Slurm, else local.
"""

from __future__ import annotations

import os
import socket
import time

import lightning as L
from lightning.fabric.plugins.environments import (
    ClusterEnvironment,
    SLURMEnvironment,
    TorchElasticEnvironment,
)
from lightning.pytorch.utilities import rank_zero_only

from fdsl_app.config import CLUSTERS
from fdsl_app.errors import RunFailure


class RendezvousError(RunFailure):
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
