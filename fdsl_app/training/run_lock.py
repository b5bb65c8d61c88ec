"""One owner per run directory: ``<run>/lock.json``, taken by rank 0 before it writes anything there.

The file names its holder: host, PID, the process's start time (a recycled PID is not the holder), the batch job
and when it started. It is created with ``O_CREAT | O_EXCL``, which is atomic on local and NFS file systems, so
two fits starting at once cannot both get it. A second fit on a held run refuses, naming the holder. A lock whose
holder is gone is taken over, and the fit says so: the holder's process is dead (same host), or its batch job is
this very job (a requeued job runs again under its id) or has finished (asked of ``squeue``/``qstat``). A holder on
another host with no job to ask about cannot be judged from here: the message says how to clear it by hand.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from fdsl_app.files import write_atomic

log = logging.getLogger("fdsl_app")

LOCK_NAME = "lock.json"
_SETTLE_S = 0.2


@dataclass(frozen=True)
class Holder:
    """Who holds a run directory's lock."""

    host: str
    pid: int
    pid_started: str | None  # the process's start time in clock ticks since boot (/proc/<pid>/stat), if known
    job: str | None  # "slurm:<id>" or "pbs:<id>"
    since: str

    def describe(self) -> str:
        job = f", {self.job.replace(':', ' job ', 1)}" if self.job else ""
        return f"PID {self.pid} on {self.host}{job}, since {self.since}"


def _process_start(pid: int) -> str | None:
    """The start time of process `pid` (field 22 of /proc/<pid>/stat), None if there is no such process or no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # the fields after the command name, which may hold spaces


def _this_job() -> str | None:
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm:{os.environ['SLURM_JOB_ID']}"
    if os.environ.get("PBS_JOBID"):
        return f"pbs:{os.environ['PBS_JOBID']}"
    return None


def this_process() -> Holder:
    pid = os.getpid()
    return Holder(socket.gethostname(), pid, _process_start(pid), _this_job(), time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def read_holder(path: Path) -> Holder | None:
    """The holder recorded in lock file `path`; None if the file is missing or unreadable (a kill mid-write)."""
    try:
        record = json.loads(path.read_text())
        return Holder(str(record["host"]), int(record["pid"]), record.get("pid_started"), record.get("job"),
                      str(record.get("since", "?")))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _job_running(job: str) -> bool | None:
    """Whether batch job `job` is still queued or running; None if its scheduler cannot be asked from here."""
    kind, _, job_id = job.partition(":")
    command = {"slurm": ["squeue", "-h", "-j", job_id, "-o", "%T"], "pbs": ["qstat", job_id]}.get(kind)
    if command is None or shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if kind == "slurm":  # an unknown (purged) job id is an error; a finished one may be listed as COMPLETED for a while
        states = result.stdout.split()
        return result.returncode == 0 and any(s in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED",
                                                     "REQUEUED", "RESIZING", "STOPPED") for s in states)  # fmt: skip
    return result.returncode == 0  # qstat (without -x) fails on a finished job


def why_stale(holder: Holder, me: Holder) -> str | None:
    """Why `holder` no longer holds the run (it may be taken over), or None: it may still be running."""
    if holder.host == me.host:
        started = _process_start(holder.pid)
        if started is None:
            return "its process is gone"
        if holder.pid_started is not None and started != holder.pid_started:
            return "its process is gone (the PID now belongs to another process)"
        return None  # alive (this very process, too: a second fit in one process)
    if holder.job is not None and holder.job == me.job:
        return "it is an earlier run of this job, which was requeued"
    if holder.job is not None and _job_running(holder.job) is False:
        return "its job has ended"
    return None


class RunLocked(ValueError):
    """The run directory is held by another fit."""


def acquire(run_dir: Path) -> Holder:
    """Take `run_dir`'s lock for this process; returns the holder recorded (this process).

    Raises:
        RunLocked: another fit holds the run, or may (a holder on another host that cannot be judged).
    """
    path = run_dir / LOCK_NAME
    me = this_process()
    record = json.dumps(asdict(me), indent=2)
    for _ in range(3):  # a holder that releases while we look: try again
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(record)
            return me
        holder = read_holder(path)
        if holder is None:
            if not path.exists():
                continue
            reason = "its lock file is unreadable (a kill while it was written)"
        else:
            reason = why_stale(holder, me)
        if reason is None:
            assert holder is not None
            raise RunLocked(
                f"run {run_dir} is in use by {holder.describe()}: a second fit would write into the same directory; "
                f"wait for it to end, stop it, or use another name=... (if that process is surely gone, delete "
                f"{path})"
            )
        write_atomic(path, record)
        time.sleep(_SETTLE_S)  # two takers at once: the later rename wins; the other sees it now, and refuses
        if read_holder(path) == me:
            log.warning(f"run {run_dir}: took over the lock of "
                        f"{holder.describe() if holder else 'an unknown holder'}: {reason}")  # fmt: skip
            return me
    raise RunLocked(f"run {run_dir}: could not take its lock {path}; another fit is starting on it")


def release(run_dir: Path, me: Holder) -> None:
    """Give the lock back, if this process still holds it."""
    path = run_dir / LOCK_NAME
    if read_holder(path) == me:
        path.unlink(missing_ok=True)


class LockStatus(NamedTuple):
    line: str  # who holds the lock, and what a fit would do about it
    refuses: bool  # a fit now would refuse (else it would take the lock over)


def status(run_dir: Path) -> LockStatus | None:
    """The lock of `run_dir` for ``fit --check``; None if nobody holds it."""
    holder = read_holder(run_dir / LOCK_NAME)
    if holder is None:
        return None
    reason = why_stale(holder, this_process())
    if reason is None:
        return LockStatus(f"in use by {holder.describe()}: a fit now would refuse", refuses=True)
    return LockStatus(f"a fit would take over the lock of {holder.describe()} ({reason})", refuses=False)
