"""What a formula family is: settings, class parameters generated from a seed, and how to render samples.

A family (FractalDB, OFDB, 1p-frac, RCDB, ...) is a class with a ``Settings`` dataclass. ``generate(seed)`` turns a
seed into :class:`ClassParams` (the numbers that define every class: IFS maps, contour parameters), the same on
every machine. ``render(params, classes, instances, keys, out)`` draws samples: ``classes``/``instances`` say which
image of the dataset, ``keys`` (one 64-bit value per sample, from :mod:`fdsl_app.render.keys`) supply every random
choice that varies between epochs (patch masks, noise). The dataset maps its global index ``i`` to
``class = i // instances_per_class`` and ``instance = i % instances_per_class``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

#: Settings that only change how samples are drawn, never the class parameters: a parameter file generated with
#: other values of these still serves (e.g. searched at 362 px, trained at 224 px).
RENDER_SETTINGS = frozenset({"image_size", "n_points", "mode", "raster", "color", "instances", "fixed_masks"})


@dataclass
class ClassParams:
    """The generated parameters of a family, with where they came from.

    Attributes:
        family: registered family name.
        settings: the family's settings as a plain dict (``dataclasses.asdict``).
        seed: the seed they were generated from.
        arrays: named numpy arrays, family-specific (e.g. ``params`` (C, K, 7) and ``n_maps`` (C,) for IFS).
        stats: generation statistics (candidates searched, acceptance rate, ...), JSON-serialisable.
        version: fdsl_app version that generated them.
    """

    family: str
    settings: dict[str, Any]
    seed: int
    arrays: dict[str, np.ndarray]
    stats: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    @property
    def num_classes(self) -> int:
        """Classes defined: every family has a ``classes`` setting."""
        return int(self.settings["classes"])


class Family(ABC):
    """A formula-driven dataset: subclasses set ``name``, ``Settings`` and implement the abstract methods."""

    name: ClassVar[str]
    Settings: ClassVar[type]

    def __init__(self, settings: Any | None = None) -> None:
        self.settings = settings if settings is not None else self.Settings()
        self.validate()

    # --- what subclasses provide -------------------------------------------------------------------------------

    @property
    def formula_augment(self) -> bool:
        """Whether :meth:`render` takes formula-space crops and flips (IFS families in fast mode)."""
        return False

    def validate(self) -> None:  # noqa: B027 - optional hook
        """Raise ValueError naming the setting when the settings are impossible (see :meth:`require`)."""

    def require(self, ok: bool, setting: str, allowed: str) -> None:
        """ValueError naming `setting`, its value and what it must be, unless `ok`."""
        if not ok:
            value = getattr(self.settings, setting)
            raise ValueError(f"{self.name} setting {setting}={value!r} is not allowed: it must be {allowed}")

    def prepare(self, params: ClassParams, *, cache_dir: Any = None, progress: bool = False) -> None:  # noqa: B027
        """Get ready to render `params` many times (IFS families in mode cached build or open their attractor
        cache, in `cache_dir`); a no-op by default. Call before DataLoader workers start, so that they share it."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Classes this family defines with its settings."""

    @property
    @abstractmethod
    def instances_per_class(self) -> int:
        """Distinct samples per class in one pass over the dataset."""

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one rendered sample, ``(H, W)`` gray or ``(H, W, 3)``."""
        size = int(self.settings.image_size)
        return (size, size, 3) if getattr(self.settings, "color", False) else (size, size)

    @abstractmethod
    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        """Class parameters from a seed; deterministic on any machine."""

    @abstractmethod
    def render(
        self,
        params: ClassParams,
        classes: np.ndarray,
        instances: np.ndarray,
        keys: np.ndarray,
        out: np.ndarray,
        *,
        threads: int | None = None,
        augment: Any = None,
    ) -> np.ndarray:
        """Render samples (class, instance) into ``out`` (uint8, ``(B, *image_shape)``) and return ``out``.

        Args:
            classes, instances: int64 arrays, one entry per sample.
            keys: uint64 per-sample keys (``fdsl_app.render.keys.sample_keys``); use ``derive(keys, stream)`` for
                each kind of random choice.
            threads: renderer threads (None: all cores; DataLoader workers pass 1).
            augment: a :class:`~fdsl_app.render.formula_space.FormulaAugment` (crops and flips applied to the points,
                ``out`` at the training size), for families whose :attr:`formula_augment` is true.
        """

    # --- shared helpers ----------------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)

    def check_params(self, params: ClassParams) -> None:
        """Raise ValueError if `params` were not generated by this family with compatible settings."""
        if params.family != self.name:
            raise ValueError(
                f"parameter file is for family {params.family!r}, not {self.name!r}: use `{params.family}` or "
                f"generate parameters for {self.name!r}"
            )
        mine = {k: v for k, v in self.describe().items() if k not in RENDER_SETTINGS}
        theirs = {k: v for k, v in params.settings.items() if k not in RENDER_SETTINGS}
        differ = sorted(k for k in mine.keys() | theirs.keys() if _norm(mine.get(k)) != _norm(theirs.get(k)))
        if differ:
            detail = ", ".join(f"{k}: file {theirs.get(k)!r} vs {mine.get(k)!r}" for k in differ)
            raise ValueError(f"parameter file was generated with other {self.name} settings ({detail})")

    def check_batch(
        self, params: ClassParams, classes: np.ndarray, instances: np.ndarray, keys: np.ndarray, out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`classes`, `instances` (int64) and `keys` (uint64) of a render call, checked against `out` and the family:
        one entry per row of `out`, classes below ``params.num_classes``, instances below ``instances_per_class``."""
        batch = len(out)
        arrays = {"classes": np.asarray(classes), "instances": np.asarray(instances), "keys": np.asarray(keys)}
        for name, arr in arrays.items():
            if arr.shape != (batch,) or not np.issubdtype(arr.dtype, np.integer):
                raise ValueError(f"{name} must be {batch} ints (one per row of out), got {arr.dtype} {arr.shape}")
        for name, bound in (("classes", params.num_classes), ("instances", self.instances_per_class)):
            arr = arrays[name]
            if batch and (arr.min() < 0 or arr.max() >= bound):
                raise ValueError(f"{name} must be in 0..{bound - 1}, got {arr.min()}..{arr.max()}")
        classes, instances = arrays["classes"].astype(np.int64), arrays["instances"].astype(np.int64)
        return classes, instances, arrays["keys"].astype(np.uint64)

    def file_stem(self, cls: int, instance: int) -> str:
        """File name (without suffix) of a sample in an export, unique within its class folder."""
        return f"{cls:05d}_{instance:04d}"

    def sample_count(self) -> int:
        return self.num_classes * self.instances_per_class

    def new_batch(self, batch: int) -> np.ndarray:
        """A fresh output array for `batch` samples."""
        return np.empty((batch, *self.image_shape), np.uint8)


def _norm(value: Any) -> Any:
    """Tuples and lists compare equal after a JSON round trip."""
    return list(value) if isinstance(value, tuple) else value
