"""Typed run configuration: dataclasses merged with YAML files and ``key=value`` overrides through omegaconf.

A run is ``RunCfg``: ``model``, ``data`` (with its ``augment``), ``optim``, ``trainer`` and ``log`` sections. A
YAML file may list other files to start from (``defaults: [model/vit_tiny_32, finetune_cifar10]``, ``.yaml``
optional: config group files of ``configs/``, recipes of ``recipes/``, or files next to it); later files, then the
file's own keys, then the overrides win. ``GROUP=NAME`` overrides swap a group's file (``model=deit_tiny``), as
Hydra does. An unknown key, a wrong type or a value outside its allowed set fails at load with the key's full path
and what it accepts; a value marked ``???`` is required.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


def resource_dir(name: str) -> Path:
    """``configs/`` or ``recipes/``: inside the installed package (the wheel carries them), else the source tree."""
    here = Path(__file__).resolve().parent
    return here / name if (here / name).is_dir() else here.parent / name


CONFIGS_DIR = resource_dir("configs")
RECIPES_DIR = resource_dir("recipes")
QUICKSTART = RECIPES_DIR / "quickstart.yaml"


def _choice(section: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{section}.{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _at_least(section: str, name: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise ValueError(f"{section}.{name} must be >= {low}, got {value!r}")


def per_device_batch_size(batch_size: int, world_size: int = 1, accumulate_grad_batches: int = 1) -> int:
    """The project's batch-size rule: ``data.batch_size`` is the GLOBAL batch of one optimiser step.

    ``per_device = batch_size / (world_size * accumulate_grad_batches)``, where ``world_size = devices * nodes``
    (all data-parallel processes): every optimiser step sees exactly `batch_size` samples however many devices,
    nodes and accumulation steps share it, so a recipe's batch (and its learning rate) holds on any machine.

    Raises:
        ValueError: the division is not exact (or an argument is < 1); the message names the batch size, the
            world size and the accumulation and suggests the nearest valid batch sizes and accumulations.
    """
    for name, value in (
        ("batch_size", batch_size),
        ("world_size", world_size),
        ("accumulate_grad_batches", accumulate_grad_batches),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    parts = world_size * accumulate_grad_batches
    if batch_size % parts == 0:
        return batch_size // parts
    lower = batch_size // parts * parts
    sizes = [str(size) for size in (lower, lower + parts) if size > 0]
    accumulations = [str(a) for a in range(1, batch_size + 1) if batch_size % (world_size * a) == 0][:6]
    hint = f"nearest valid data.batch_size: {' or '.join(sizes)}"
    if accumulations:
        hint += f"; or keep {batch_size} with trainer.accumulate_grad_batches in {{{', '.join(accumulations)}}}"
    raise ValueError(
        f"data.batch_size={batch_size} is the GLOBAL batch and must split evenly over world size {world_size} "
        f"(devices x nodes) x trainer.accumulate_grad_batches {accumulate_grad_batches} = {parts} micro-batches; "
        f"{hint}"
    )


def parse_duration(text: str) -> float:
    """Seconds of a "DD:HH:MM:SS" duration (also "HH:MM:SS" or "MM:SS").

    Raises:
        ValueError: not of that form.
    """
    parts = str(text).split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 4 or any(n < 0 for n in numbers):
        raise ValueError(f"trainer.max_time must be DD:HH:MM:SS, got {text!r}")
    seconds = 0.0
    for number, unit in zip(reversed(numbers), (1, 60, 3600, 86400), strict=False):
        seconds += number * unit
    return seconds


@dataclass
class ModelCfg:
    """The network: any timm model by name, or one of the small-image variants fdsl_app registers."""

    name: str = "vit_tiny_patch4_32"  # timm name; fdsl_app adds vit_{nano,tiny}_patch4_32 for CPU runs
    drop_path: float = 0.1  # stochastic depth rate
    init_from: str | None = None  # checkpoint to fine-tune from: head dropped, position embeddings resized
    pretrained: bool = False  # timm's own weights (needs them in the local cache: no downloads at run time)

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"model.drop_path must be in [0, 1) (the share of residual branches dropped), "
                             f"got {self.drop_path!r}")  # fmt: skip


@dataclass
class AugmentCfg:
    """DeiT-style augmentation (timm), per recipe."""

    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random resized crop area
    hflip: float = 0.5
    vflip: float = 0.0
    rand_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm RandAugment spec, None to disable
    re_prob: float = 0.25  # random erasing probability
    mixup: float = 0.8  # mixup alpha (0 disables)
    cutmix: float = 1.0  # cutmix alpha (0 disables)
    mixup_switch_prob: float = 0.5
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "re_prob", "mixup_switch_prob", "label_smoothing"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.augment.{name} must be in [0, 1], got {value!r}")
        for name in ("mixup", "cutmix"):
            _at_least("data.augment", name, getattr(self, name), 0.0)
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"data.augment.scale must be [low, high] with 0 < low <= high <= 1, got {self.scale}")
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, 3) or any(s <= 0 for s in self.std):
            raise ValueError(
                f"data.augment.mean and std must both have 1 or 3 entries (one per RGB channel) and std > 0, "
                f"got mean {self.mean}, std {self.std}"
            )


CLUSTERS = ("auto", "torchrun", "slurm", "openmpi", "local")  # trainer.cluster (fdsl_app.cluster)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")  # trainer.accelerator: Lightning's, less TPUs (no torch_xla)
# trainer.precision: "auto" and Lightning's values (lightning.fabric.connector._PRECISION_INPUT_STR, with its aliases)
PRECISIONS = ("auto", "64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")  # fmt: skip
DATA_SOURCES = ("family", "cifar10", "cifar100", "imagenet100", "folder")


@dataclass
class DataCfg:
    """Where samples come from and how they are batched."""

    source: str = "family"  # one of DATA_SOURCES
    family: str = "onepfrac"  # source=family: a registered family (fdsl_app families)
    settings: dict[str, Any] = field(default_factory=dict)  # source=family: family settings (--set of the CLI)
    params: str | None = None  # source=family: a parameter file from `fdsl_app search`, or a named set
    param_seed: int = 0  # source=family without params: seed of generate()
    samples_per_epoch: int | None = None  # source=family: samples per epoch (default: one pass)
    cache_dir: str | None = None  # source=family, mode cached: attractor caches (default: $FDSL_CACHE_DIR or /tmp)
    draw: str = "auto"  # source=family, mode cached: where samples are drawn: cpu (loader), device, auto (GPU: device)
    root: str | None = None  # real data: dataset folder
    class_list: str = "cmc"  # source=imagenet100: a shipped list (cmc: Tian et al.'s CMC list) or a wnid file's path
    # real data: the share of each class's training images held out where a dataset has no split of its own for
    # validation (or test), chosen with split_seed alone (the same for every training seed; see data/real.py)
    val_fraction: float = 0.1
    split_seed: int = 0
    image_size: int = 32  # training resolution
    batch_size: int = 64  # GLOBAL batch: per-device batch = batch_size / (devices * nodes * accumulate)
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    augment: AugmentCfg = field(default_factory=AugmentCfg)

    def __post_init__(self) -> None:
        _choice("data", "source", self.source, DATA_SOURCES)
        _choice("data", "draw", self.draw, ("auto", "cpu", "device"))
        _at_least("data", "image_size", self.image_size, 8)
        _at_least("data", "batch_size", self.batch_size, 1)
        _at_least("data", "num_workers", self.num_workers, 0)
        _at_least("data", "samples_per_epoch", self.samples_per_epoch, 1)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1) (the share of training images held out), "
                             f"got {self.val_fraction!r}")  # fmt: skip
        if self.persistent_workers and self.num_workers == 0:
            raise ValueError("data.persistent_workers=true needs data.num_workers >= 1")
        if not self.class_list.strip():
            raise ValueError("data.class_list is empty; name a shipped list (cmc) or the path of a wnid file")
        if self.source != "family" and not self.root:
            raise ValueError(f"data.root must name the {self.source} folder (data.source={self.source}): give "
                             "data.root=PATH")  # fmt: skip


@dataclass
class OptimCfg:
    """Optimiser and schedule: per-iteration linear warmup, then cosine to min_lr."""

    name: str = "adamw"  # adamw or sgd
    lr: float = 1e-3
    # How lr scales with the global batch: "none" (fixed, as ExFractalDB/RCDB/VisualAtom pre-training) or
    # "linear" (lr * global_batch / 512, as DeiT, 1p-frac and OFDB); warmup_lr and min_lr scale alike.
    lr_scaling: str = "none"
    weight_decay: float = 0.05  # not applied to norms, biases, position embeddings and tokens
    momentum: float = 0.9  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    clip_grad: float | None = None  # gradient norm clipping
    ema_decay: float | None = None  # keep an EMA of the weights (e.g. 0.99996)

    def __post_init__(self) -> None:
        _choice("optim", "name", self.name, ("adamw", "sgd"))
        _choice("optim", "lr_scaling", self.lr_scaling, ("none", "linear"))
        for name in ("lr", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr"):
            _at_least("optim", name, getattr(self, name), 0.0)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")
        _at_least("optim", "clip_grad", self.clip_grad, 0.0)
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"optim.ema_decay must be in (0, 1) or null, got {self.ema_decay}")


@dataclass
class TrainerCfg:
    """Lightning Trainer settings."""

    max_epochs: int = 1
    max_steps: int = -1  # -1: by epochs
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed where the hardware has it, else 32-true
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    val_every_n_epochs: int = 1
    # Save `last` every n optimiser steps (preemption safety); unset: at each epoch end. Always at the end of the run.
    checkpoint_every_n_steps: int | None = None
    # Stop at this optimiser step with a checkpoint, the schedule unchanged: resume=auto continues exactly there
    # (splits a long run into jobs). max_time ("DD:HH:MM:SS") stops on wall time instead, also with a checkpoint.
    stop_at_step: int | None = None
    max_time: str | None = None
    enable_progress_bar: bool = True
    # Who started the processes: auto (torchrun, else Open MPI's mpirun, else Slurm, else Lightning itself), or one
    # of torchrun, slurm, openmpi, local to insist (see fdsl_app.cluster).
    cluster: str = "auto"
    connect_timeout: float = 300.0  # seconds a rank waits for rank 0's rendezvous port before failing

    def __post_init__(self) -> None:
        _choice("trainer", "cluster", self.cluster, CLUSTERS)
        _choice("trainer", "accelerator", self.accelerator, ACCELERATORS)
        _choice("trainer", "precision", str(self.precision), PRECISIONS)
        for name in ("limit_train_batches", "limit_val_batches"):
            limit = getattr(self, name)
            if limit is not None and not (0 <= limit <= 1 or (limit > 1 and float(limit).is_integer())):
                raise ValueError(f"trainer.{name} must be a share of the batches in [0, 1] or a whole number of "
                                 f"batches, got {limit!r}")  # fmt: skip
        devices = self.devices
        if isinstance(devices, bool) or (isinstance(devices, int) and devices != -1 and devices < 1):
            raise ValueError(f"trainer.devices must be 'auto', -1 (all), a count >= 1 or a list of device indices, "
                             f"got {devices!r}")  # fmt: skip
        if self.max_time is not None:
            parse_duration(self.max_time)
        _at_least("trainer", "connect_timeout", self.connect_timeout, 0.0)
        _at_least("trainer", "num_nodes", self.num_nodes, 1)
        _at_least("trainer", "max_epochs", self.max_epochs, 1)
        if self.max_steps != -1 and self.max_steps < 1:
            raise ValueError(f"trainer.max_steps must be -1 (by epochs) or >= 1, got {self.max_steps}")
        _at_least("trainer", "checkpoint_every_n_steps", self.checkpoint_every_n_steps, 1)
        _at_least("trainer", "stop_at_step", self.stop_at_step, 1)
        _at_least("trainer", "val_every_n_epochs", self.val_every_n_epochs, 1)
        _at_least("trainer", "accumulate_grad_batches", self.accumulate_grad_batches, 1)
        _at_least("trainer", "log_every_n_steps", self.log_every_n_steps, 1)


@dataclass
class LogCfg:
    """Where metrics go: metrics.csv always, plus W&B and/or TensorBoard ("wandb", "tensorboard",
    "wandb+tensorboard"); "none" logs nothing."""

    backend: str = "csv"
    project: str = "fdsl_app"
    wandb_mode: str = "offline"  # online or offline (offline needs no network; `wandb sync` later)
    sample_grid: bool = True  # save a grid of training samples as the model sees them
    # Write ledger/rank<R>.txt: "epoch index" of every training sample each rank trained on (audits data-parallel
    # coverage: over all ranks, each sample of an epoch exactly once).
    sample_ledger: bool = False

    def __post_init__(self) -> None:
        for name in self.backend.split("+"):
            _choice("log", "backend", name, ("csv", "wandb", "tensorboard", "none"))
        if "none" in self.backends and self.backend != "none":
            raise ValueError(f"log.backend={self.backend!r}: none cannot be combined with other loggers")
        _choice("log", "wandb_mode", self.wandb_mode, ("online", "offline"))

    @property
    def backends(self) -> set[str]:
        """The loggers of the run: csv always (unless "none"), and the others named."""
        names = set(self.backend.split("+"))
        return names if "none" in names else names | {"csv"}


@dataclass
class RunCfg:
    """One experiment."""

    name: str = "run"  # run directory: <root>/<name>
    root: str = "runs"
    seed: int = 0
    resume: str | None = None  # "auto": newest checkpoint of the run directory; or a checkpoint path
    task: str = "pretrain"  # pretrain or finetune (documentation and defaults only)
    model: ModelCfg = field(default_factory=ModelCfg)
    data: DataCfg = field(default_factory=DataCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    log: LogCfg = field(default_factory=LogCfg)

    def __post_init__(self) -> None:
        _choice("(run)", "task", self.task, ("pretrain", "finetune"))
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32 - 1] (Lightning seeds numpy with it), got {self.seed}")
        if self.resume is not None and self.resume != "auto" and not Path(self.resume).is_file():
            raise ValueError(f"resume={self.resume!r} is neither 'auto' nor an existing checkpoint file")
        t = self.trainer
        if isinstance(t.devices, int) and not isinstance(t.devices, bool) and t.devices >= 1:
            # Known world size: check the batch rule now (a job script's preflight), not on every rank at start-up.
            per_device_batch_size(self.data.batch_size, t.devices * t.num_nodes, t.accumulate_grad_batches)

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.name


def config_groups() -> dict[str, list[str]]:
    """The config groups (the folders of ``configs/``) and the names each offers: ``model=NAME`` picks one."""
    if not CONFIGS_DIR.is_dir():
        return {}
    return {d.name: sorted(f.stem for f in d.glob("*.yaml")) for d in sorted(CONFIGS_DIR.iterdir()) if d.is_dir()}


def list_recipes() -> dict[str, str]:
    """Every recipe of ``recipes/`` with its description: the first line of its header comment."""
    recipes = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[:1]
        recipes[path.stem] = first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""
    return recipes


def _group_selections(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """``GROUP=NAME`` overrides (``model=deit_tiny``) apart from the ``key=value`` ones."""
    groups = config_groups()
    selections: dict[str, str] = {}
    dotlist = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key not in groups:
            dotlist.append(override)
            continue
        name = value.strip().removesuffix(".yaml")
        if name not in groups[key]:
            close = difflib.get_close_matches(name, groups[key], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{key}={value}: no config {key}/{name}.yaml{hint}; {key}= takes one of: "
                             f"{', '.join(groups[key])}")  # fmt: skip
        selections[key] = name
    return selections, dotlist


def find_default(entry: str, path: Path) -> Path:
    """A ``defaults`` entry: a config (``model/deit_tiny``) or a recipe (``finetune_cifar10``), ``.yaml`` optional,
    next to `path`, in ``configs/`` or in ``recipes/``."""
    name = entry if entry.endswith((".yaml", ".yml")) else f"{entry}.yaml"
    folders = (path.parent, CONFIGS_DIR, RECIPES_DIR)
    found = next((folder / name for folder in folders if (folder / name).is_file()), None)
    if found is not None:
        return found.resolve()
    known = [f"{group}/{n}" for group, names in config_groups().items() for n in names] + list(list_recipes())
    close = difflib.get_close_matches(entry.removesuffix(".yaml"), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{path}: defaults entry {entry!r} names no config or recipe{hint}; it takes a config group "
                     f"file (e.g. model/deit_tiny) or a recipe name (`fdsl_app recipes` lists them)")  # fmt: skip


def _read_yaml(
    path: Path, seen: tuple[Path, ...] = (), selections: dict[str, str] | None = None, used: set[str] | None = None
) -> list[dict[str, Any]]:
    """The file's mapping, preceded by those of the files its ``defaults`` list names (recursively); a group entry
    (``model/...``) is swapped for the one `selections` picks for its group, and the group is added to `used`."""
    selections = selections or {}
    used = set() if used is None else used
    if path in seen:
        raise ValueError(f"config files include each other in a loop: {' -> '.join(map(str, (*seen, path)))}")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ValueError(f"cannot read config file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:
        raise ValueError(f"config file {path} is empty: a recipe holds at least its keys (see recipes/quickstart.yaml)")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    defaults = data.pop("defaults", None) or []
    if not isinstance(defaults, list) or not all(isinstance(entry, str) for entry in defaults):
        raise ValueError(f"{path}: defaults must be a list of names, e.g. [model/deit_tiny, trainer/gpu]")
    layers: list[dict[str, Any]] = []
    for entry in defaults:
        group = entry.split("/")[0] if entry.count("/") == 1 else None
        if group in selections:
            entry = f"{group}/{selections[group]}"
            used.add(group)
        layers += _read_yaml(find_default(entry, path), (*seen, path), selections, used)
    return [*layers, data]


def _layers(path: str | Path | None, selections: dict[str, str]) -> list[dict[str, Any]]:
    """The YAML layers of a run, oldest first: the recipe's defaults (groups swapped as `selections` say), the
    selected groups the recipe does not list, then the recipe's own keys (which win over every group file, as in
    Hydra's defaults lists)."""
    used: set[str] = set()
    own = _read_yaml(Path(path).resolve(), selections=selections, used=used) if path is not None else []
    added = [layer for group, name in selections.items() if group not in used
             for layer in _read_yaml(CONFIGS_DIR / group / f"{name}.yaml")]  # fmt: skip
    return [*own[:-1], *added, *own[-1:]]


def _allowed_keys(schema: DictConfig, full_key: str) -> list[str]:
    node: Any = schema
    for part in full_key.split(".")[:-1]:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _override_error(overrides: list[str]) -> ValueError:
    """The error naming the first override that does not parse on its own (overrides are parsed together, so the
    search runs only after a failure)."""
    for override in overrides:
        try:
            OmegaConf.from_dotlist([override])
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            reason = getattr(err, "problem", None) or str(err).splitlines()[0]  # yaml's own words, one line
            return ValueError(f"override {override!r} is not key=value with a YAML value ({reason}); close its "
                              "brackets or quote it")  # fmt: skip
    return ValueError(f"cannot read the overrides {overrides}")


def _merge(path: str | Path | None, overrides: list[str] | None) -> tuple[DictConfig, DictConfig]:
    """The schema, and the run's layers and overrides merged onto it (unchecked)."""
    selections, dotlist_items = _group_selections(list(overrides or []))
    schema = OmegaConf.structured(RunCfg)
    layers = _layers(path, selections)
    try:
        dotlist = OmegaConf.from_dotlist(dotlist_items)
    except (OmegaConfBaseException, yaml.YAMLError):
        raise _override_error(dotlist_items) from None
    try:
        merged = OmegaConf.merge(schema, *layers, dotlist)
    except OmegaConfBaseException as err:
        raise _config_error(schema, err) from None
    for key in _marked_required([*layers, OmegaConf.to_container(dotlist)]):
        OmegaConf.update(merged, key, "???")  # omegaconf's merge keeps the earlier value (or the schema's) under ???
    return schema, merged


def _marked_required(layers: list[Any]) -> list[str]:
    """The keys whose last value over `layers` is ``???``."""
    last: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                last[f"{prefix}{key}"] = value

    for layer in layers:
        walk(layer, "")
    return [key for key, value in last.items() if value == "???"]


def _config_error(schema: DictConfig, err: OmegaConfBaseException) -> ValueError:
    if isinstance(err, ConfigKeyError):
        key = getattr(err, "full_key", None) or ""
        allowed = _allowed_keys(schema, key)
        close = difflib.get_close_matches(key.split(".")[-1], allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ValueError(f"unknown config key {key!r}{hint}; allowed here: {', '.join(allowed)}")
    if isinstance(err, ValidationError):
        key = getattr(err, "full_key", None) or "?"
        return ValueError(f"config key {key!r}: {str(err).splitlines()[0]}")
    return ValueError(f"invalid config: {str(err).splitlines()[0]}")


def _checked(schema: DictConfig, merged: DictConfig) -> RunCfg:
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        given = " ".join(f"{key}=..." for key in missing)
        raise ValueError(f"the recipe leaves {', '.join(missing)} to you (???): give {given} on the command line")
    try:
        return OmegaConf.to_object(merged)  # runs the __post_init__ checks
    except OmegaConfBaseException as err:
        raise _config_error(schema, err) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunCfg:
    """The run configuration: defaults, then the YAML file (and its ``defaults``), then overrides: ``GROUP=NAME``
    (``model=deit_tiny``: the config group file ``configs/model/deit_tiny.yaml`` in place of the recipe's) and
    ``key=value``."""
    return _checked(*_merge(path, overrides))


def _required_keys(merged: DictConfig) -> list[str]:
    """Keys a run must still be given: those marked ``???`` and a real data source's ``data.root``."""
    keys = set(OmegaConf.missing_keys(merged))
    if merged.data.source != "family" and not OmegaConf.is_missing(merged.data, "root") and not merged.data.root:
        keys.add("data.root")
    return sorted(keys)


def config_with_required(path: str | Path | None = None, overrides: list[str] | None = None) -> str:
    """The resolved configuration as YAML, as :func:`to_yaml`, but with the values still required shown as ``???``
    (what ``--print-config`` shows): every other value is checked as at load."""
    schema, merged = _merge(path, overrides)
    required = _required_keys(merged)
    for key in required:  # a stand-in, so that the rest is checked
        default = OmegaConf.select(schema, key)
        OmegaConf.update(merged, key, default if default is not None else "required", force_add=False)
    node = OmegaConf.structured(_checked(schema, merged))
    for key in required:
        OmegaConf.update(node, key, "???")
    text = OmegaConf.to_yaml(node)
    if required:
        text += f"# ???: still required, give {' '.join(f'{key}=...' for key in required)} on the command line\n"
    return text


def to_yaml(cfg: RunCfg) -> str:
    """The fully resolved configuration as YAML (what `--print-config` shows and a run directory keeps)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def to_dict(cfg: RunCfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
