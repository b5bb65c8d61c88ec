"""A map-style dataset that renders a formula family on the fly, and the sampler that feeds it epochs.

Indices. The dataset has ``len(dataset)`` samples per epoch (``samples_per_epoch``, by default one pass over the
family: ``num_classes * instances_per_class``). The index a sampler hands to the dataset ENCODES the epoch::

    global_index = epoch * len(dataset) + i        # 0 <= i < len(dataset)

so a persistent DataLoader worker, which keeps its copy of the dataset across epochs and never sees
``set_epoch``, still knows the epoch of every sample. ``i`` maps to the family's base index ``b`` (``b = i`` when an
epoch is one pass over the family; with another ``samples_per_epoch``, ``b = (epoch * len + i) * stride mod
base_length`` for a stride coprime with the base length, so consecutive epochs walk through the whole family, every
epoch spreads over all classes, and a long epoch wraps around them), ``class = b // instances_per_class`` (also the
label) and ``instance = b % instances_per_class``. Every random choice of a sample (chain seeds, patch masks,
noise, formula-space crops and flips) derives from ``sample_keys(seed, epoch, i)``, a counter-based hash, never
from worker, thread or process state: the same (seed, epoch, i) gives the same bytes with any number of workers,
persistent or not, processes or nodes, and a later epoch (or the second wrap within an epoch) redraws whatever the
family draws at random.
``dataset[i]`` with ``i < len(dataset)`` is therefore sample ``i`` of epoch 0.

Batches. ``__getitems__`` (which the DataLoader calls with a whole batch of indices) renders the batch with one
``family.render`` call into one buffer; the samples it returns are zero-copy views of that buffer, and
:func:`collate_samples` turns them back into the batch tensor without copying. Inside a DataLoader worker the
buffer is allocated in shared memory, so the batch reaches the main process without the copy ``default_collate``
would make, and the renderer runs on one thread (the workers are the parallelism); outside workers it uses all
cores.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, default_collate, get_worker_info
from torch.utils.data.distributed import DistributedSampler

from fdsl_app.families.base import ClassParams, Family
from fdsl_app.families.ifs import IfsFamily
from fdsl_app.render.formula_space import sample_formula_augment
from fdsl_app.render.keys import sample_keys

#: One sample: a uint8 image tensor and its class id.
Sample = tuple[torch.Tensor, int]

_MAX_SEED = 2**64


class FormulaDataset(Dataset[Sample]):
    """Samples of a formula family, rendered on demand; see the module docstring for the index scheme.

    Args:
        family: the family that renders (its settings fix image size, raster, ...).
        params: class parameters for `family` (``family.generate(seed)`` or a loaded parameter file).
        seed: run seed of the per-sample random keys, in ``[0, 2**64)``.
        samples_per_epoch: samples per epoch; defaults to one pass, ``num_classes * instances_per_class``. Larger
            values wrap around the classes (1p-frac has 1000 images but trains for many more steps per epoch).
        channels_first: images as ``(C, H, W)`` (gray gives ``C = 1``), else the renderer's ``(H, W)`` or
            ``(H, W, 3)``. Colour images in ``(C, H, W)`` are views of the renderer's ``(H, W, 3)`` bytes: their
            batches come in ``torch.channels_last`` memory format.

    Raises:
        ValueError: `params` do not belong to `family`, or `seed` / `samples_per_epoch` are out of range.
    """

    def __init__(
        self,
        family: Family,
        params: ClassParams,
        *,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        channels_first: bool = True,
        formula_augment: FormulaAugmentSpec | None = None,
        draw_plans: bool = False,
    ) -> None:
        family.check_params(params)
        if formula_augment is not None and not family.formula_augment:
            raise ValueError(f"family {family.name!r} with these settings has no formula-space augmentation")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        base = family.num_classes * family.instances_per_class
        if base < 1:
            raise ValueError(f"family {family.name!r} defines no samples (num_classes * instances_per_class = 0)")
        if samples_per_epoch is not None and (
            isinstance(samples_per_epoch, bool) or not isinstance(samples_per_epoch, int) or samples_per_epoch < 1
        ):
            raise ValueError(f"samples_per_epoch must be a positive int or None (one pass), got {samples_per_epoch!r}")
        self.family = family
        self.params = params
        self.seed = int(seed)
        self.base_length = base
        self.length = samples_per_epoch if samples_per_epoch is not None else base
        self.stride = _coprime_stride(base)
        self.channels_first = channels_first
        self.formula_augment = formula_augment
        if draw_plans and not (isinstance(family, IfsFamily) and family.settings.mode == "cached"):
            raise ValueError(f"family {family.name!r} draws on the device only in mode cached (an attractor cache)")
        self.draw_plans = draw_plans

    def __len__(self) -> int:
        return self.length

    @property
    def num_classes(self) -> int:
        return self.family.num_classes

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one image tensor as this dataset returns it."""
        shape = self.family.image_shape
        if self.formula_augment is not None:  # drawn at the training size
            size = self.formula_augment.size
            shape = (size, size, *shape[2:])
        if not self.channels_first:
            return shape
        return (1, *shape) if len(shape) == 2 else (shape[2], shape[0], shape[1])

    def locate(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(epochs, positions within the epoch, classes, instances)`` of global indices, as int64 arrays."""
        flat = np.asarray(indices, dtype=np.int64).reshape(-1)
        if flat.size and flat.min() < 0:
            raise IndexError(f"sample indices must be >= 0 (epoch * len + i), got {int(flat.min())}")
        epochs, positions = np.divmod(flat, self.length)
        base = (
            positions if self.length == self.base_length else (flat % self.base_length) * self.stride % self.base_length
        )
        classes, instances = np.divmod(base, self.family.instances_per_class)
        return epochs, positions, classes, instances

    def labels(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class ids of global indices, without rendering."""
        return self.locate(indices)[2]

    def keys(self, epochs: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Per-sample uint64 keys of (run seed, epoch, position); a batch may span epochs."""
        keys = np.empty(positions.shape, np.uint64)
        for epoch in np.unique(epochs):
            where = epochs == epoch
            keys[where] = sample_keys(self.seed, int(epoch), positions[where])
        return keys

    def render_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Render global indices with one ``family.render`` call.

        Returns:
            ``(images, labels)``: uint8 images ``(B, *sample_shape)``, a view of the buffer the renderer wrote
            (shared memory inside a DataLoader worker), and int64 class ids ``(B,)``.
        """
        epochs, positions, classes, instances = self.locate(indices)
        if self.draw_plans:
            return self._plans(epochs, positions, classes, instances), torch.from_numpy(classes)
        shape = self.sample_shape if not self.channels_first else None
        raw = self.family.image_shape
        if self.formula_augment is not None:
            raw = (self.formula_augment.size, self.formula_augment.size, *raw[2:])
        buffer = _new_buffer((len(classes), *(shape or raw)))
        threads = 1 if get_worker_info() is not None else None
        keys = self.keys(epochs, positions)
        extra = {}
        if self.formula_augment is not None:
            a = self.formula_augment
            extra["augment"] = sample_formula_augment(keys, a.scale, a.hflip, a.vflip, self.family.image_shape[0])
        self.family.render(self.params, classes, instances, keys, buffer.numpy(), threads=threads, **extra)
        return self._layout(buffer), torch.from_numpy(classes)

    def _plans(
        self, epochs: np.ndarray, positions: np.ndarray, classes: np.ndarray, instances: np.ndarray
    ) -> torch.Tensor:
        """What a device draw needs instead of images: ``(B, 7)`` int64 rows (:class:`~fdsl_app.families.ifs.
        DrawPlan`), a few bytes a sample."""
        keys = self.keys(epochs, positions)
        augment = None
        if self.formula_augment is not None:
            a = self.formula_augment
            augment = sample_formula_augment(keys, a.scale, a.hflip, a.vflip, self.family.image_shape[0])
        plan = self.family.draw_plan(self.params, classes, instances, keys, augment)
        rows = _new_buffer((len(classes), 7), torch.int64)
        rows.numpy()[:] = plan.pack(self.family.image_shape[0])
        return rows

    def _layout(self, buffer: torch.Tensor) -> torch.Tensor:
        """The renderer's ``(B, H, W[, 3])`` buffer as ``(B, C, H, W)`` views when channels-first."""
        if not self.channels_first:
            return buffer
        return buffer.unsqueeze(1) if buffer.dim() == 3 else buffer.permute(0, 3, 1, 2)

    def __getitems__(self, indices: Sequence[int]) -> RenderedBatch:
        """A batch of samples whose images are views of one rendered buffer (the DataLoader's batched fetch)."""
        return RenderedBatch(*self.render_batch(indices))

    def __getitem__(self, index: int) -> Sample:
        return self.__getitems__([index])[0]


@dataclass(frozen=True)
class FormulaAugmentSpec:
    """Random resized crop (area `scale`) and flips applied in formula space, drawing at `size` px."""

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    vflip: float = 0.0


def _coprime_stride(n: int) -> int:
    """A stride near 0.618 n with gcd(stride, n) = 1: stepping by it visits every residue once, classes interleaved."""
    stride = max(1, round(0.6180339887 * n))
    while math.gcd(stride, n) != 1:
        stride += 1
    return stride


def _new_buffer(shape: tuple[int, ...], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """A tensor to render into: in shared memory inside a DataLoader worker, where the batch must end up."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(shape)


class RenderedBatch(Sequence[Sample]):
    """The ``(image, label)`` samples of one render call, kept as the two batch tensors: :func:`collate_samples`
    hands them on whole (no per-sample views to make and check); any other collate sees a sequence of samples."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.images[index], int(self.labels[index])


def collate_samples(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``(image, label)`` samples into uint8 images ``(B, *image.shape)`` and int64 labels ``(B,)``.

    A :class:`RenderedBatch` (what ``FormulaDataset.__getitems__`` gives every loader, through ``Subset`` too) is its
    buffer, no copy. Anything else is stacked as ``default_collate`` does.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    if isinstance(samples, RenderedBatch):
        return samples.images, samples.labels
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return default_collate([image for image, _ in samples]), labels


class EpochSampler(DistributedSampler[int]):
    """Global indices ``epoch * len(data_source) + i`` of one epoch, shuffled per (seed, epoch) or in order.

    Call :meth:`set_epoch` before each epoch (Lightning's fit loop does, for any sampler with that method). The
    order of epoch ``e`` is ``default_rng(SeedSequence([seed, e])).permutation(n)`` when shuffling, ``0..n-1``
    otherwise.

    Several processes: the epoch's order is padded by repeating its start (``drop_last=False``) or cut at its end
    (``drop_last=True``) to a multiple of ``num_replicas``; rank ``r`` takes ``order[r::num_replicas]``. All ranks
    then have the same length (DDP needs equal batch counts), their union is the single-process epoch (plus the
    padding) and batch ``s`` of ``W`` ranks with batch size ``b`` together hold batch ``s`` of one process with
    batch size ``W * b``. ``num_replicas`` and ``rank`` default to ``torch.distributed``'s world size and rank
    when it is initialised, else 1 and 0.

    This is a :class:`~torch.utils.data.distributed.DistributedSampler` only so that Lightning leaves it alone
    (it wraps any other sampler in its own ``DistributedSamplerWrapper``, which would shard a second time); it
    shares nothing else with torch's implementation. A ``drop_last`` for incomplete batches is the DataLoader's.

    Args:
        data_source: the dataset (only its length is used).
        seed: seed of the shuffle order.
        shuffle: permute each epoch, else sequential.
        num_replicas, rank: processes sharing the epoch and this one's place among them.
        drop_last: cut the order to a multiple of `num_replicas` instead of padding it.
        epoch: the first epoch (as :meth:`set_epoch`).
        encode_epoch: yield ``epoch * len + i`` (for :class:`FormulaDataset`), else plain positions ``i`` (for any
            map-style dataset: real data gets the same per-(seed, epoch) order and mid-epoch resume).
    """

    def __init__(
        self,
        data_source: Sized,
        *,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        epoch: int = 0,
        encode_epoch: bool = True,
    ) -> None:
        # DistributedSampler.__init__ is not called: it insists on torch.distributed being initialised.
        num_replicas, rank = _replicas(num_replicas, rank)
        length = len(data_source)
        if drop_last and length < num_replicas:
            raise ValueError(f"drop_last leaves no samples: {length} samples per epoch for {num_replicas} replicas")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        self.dataset = data_source
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        rounded = length // num_replicas if drop_last else -(-length // num_replicas)
        self.total_size = rounded * num_replicas
        self.num_samples = rounded
        self.epoch = 0
        self._start: tuple[int, int] | None = None  # see start_at()
        self.encode_epoch = encode_epoch
        self.drawn: list[int] | None = None  # indices handed out this epoch, when recording (see record())
        self.drawn_epoch = 0
        self.set_epoch(epoch)

    def record(self) -> None:
        """Keep the indices of each iteration in :attr:`drawn` and its epoch in :attr:`drawn_epoch` (reset when an
        iteration starts)."""
        self.drawn, self.drawn_epoch = [], self.epoch

    def start_at(self, epoch: int, skip: int = 0) -> None:
        """Make the next iteration yield epoch `epoch` from `skip` indices into this rank's share, whatever
        :meth:`set_epoch` says until then (one-shot). A resumed run continues exactly where its checkpoint was taken,
        with the epoch counted from the training steps (see :class:`~fdsl_app.training.callbacks.DataPosition`)."""
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.set_epoch(epoch)
        self._start = (int(epoch), int(skip))

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch `epoch`."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions ``i`` of one epoch in the single-process order (no padding, no sharding)."""
        if not self.shuffle:
            return np.arange(self.length, dtype=np.int64)
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch])).permutation(self.length)

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._start is not None:  # one-shot: later epochs follow set_epoch and start from their beginning
            (self.epoch, skip), self._start = self._start, None
        order = self.epoch_order(self.epoch)
        if self.total_size > self.length:  # pad by repeating the start, several times over if the epoch is short
            order = np.resize(order, self.total_size)
        mine = order[self.rank : self.total_size : self.num_replicas][skip:]
        indices = (mine + self.epoch * self.length if self.encode_epoch else mine).tolist()
        if self.drawn is None:
            return iter(indices)
        self.drawn, self.drawn_epoch = [], self.epoch
        return self._recorded(indices, self.drawn)

    @staticmethod
    def _recorded(indices: list[int], drawn: list[int]) -> Iterator[int]:
        for index in indices:
            drawn.append(index)
            yield index

    def __len__(self) -> int:
        return self.num_samples


def trainer_replicas(trainer: Any) -> dict[str, int]:
    """``num_replicas`` and ``rank`` for an :class:`EpochSampler` of `trainer`'s data-parallel world (empty without a
    trainer: the sampler then asks torch.distributed)."""
    kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
    return {"num_replicas": int(kwargs["num_replicas"]), "rank": int(kwargs["rank"])} if kwargs else {}


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Explicit values, else torch.distributed's when initialised, else a single process."""
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ValueError(f"num_replicas must be an int >= 1, got {num_replicas!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ValueError(f"rank must be an int in [0, num_replicas={num_replicas}), got {rank!r}")
    return num_replicas, rank
