"""FormulaDataset, EpochSampler and FormulaDataModule: determinism across loaders, epochs, ranks; Lightning smoke."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import fdsl_app.families
from fdsl_app.data import datamodule as datamodule_module
from fdsl_app.data.datamodule import FormulaDataModule
from fdsl_app.data.synthetic import EpochSampler, FormulaDataset, collate_samples
from fdsl_app.families import ClassParams, create_family, family_class, list_families, register_family
from fdsl_app.families.ifs import IfsFamily, IfsRenderSettings
from fdsl_app.families.params_io import save_params
from fdsl_app.render import pack_systems

TEST_FAMILY = "_test_ifs"

# Three contractive systems (rows a b c d e f p): Sierpinski triangle, a Barnsley-like fern, a twisted tree.
_SYSTEMS = [
    np.array([[0.5, 0, 0, 0.5, 0, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.5, 0, 1 / 3], [0.5, 0, 0, 0.5, 0.25, 0.5, 1 / 3]]),
    np.array([[0.85, 0.04, -0.04, 0.85, 0, 1.6, 0.85], [0.2, -0.26, 0.23, 0.22, 0, 1.6, 0.08],
              [-0.15, 0.28, 0.26, 0.24, 0, 0.44, 0.07]]),
    np.array([[0.6, -0.3, 0.3, 0.6, 0, 0, 0.5], [0.4, 0.2, -0.2, 0.4, 0.6, 0.1, 0.5]]),
]  # fmt: skip


@dataclass
class TinyIFSSettings(IfsRenderSettings):
    """Settings of the test family."""

    classes: int = 3
    instances: int = 2
    image_size: int = 32
    n_points: int = 2000
    mode: str = "fast"


@register_family
class TinyIFS(IfsFamily):
    """A tiny IFS family: fixed systems, fast mode, patch raster; the key seeds chains and masks, so epochs differ."""

    name = TEST_FAMILY
    Settings = TinyIFSSettings

    def validate(self) -> None:
        super().validate()
        self.require(1 <= self.settings.classes <= len(_SYSTEMS), "classes", f"in 1..{len(_SYSTEMS)}")

    @property
    def num_classes(self) -> int:
        return self.settings.classes

    @property
    def instances_per_class(self) -> int:
        return self.settings.instances

    def generate(self, seed: int, *, progress: bool = False) -> ClassParams:
        params, n_maps = pack_systems(_SYSTEMS[: self.settings.classes])
        return ClassParams(self.name, self.describe(), seed, {"params": params, "n_maps": n_maps})

    def instance_layout(self, instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(instances), np.int64), instances % 4


def encode_index(epoch: int, index: int, length: int) -> int:
    """The global index an EpochSampler yields for sample `index` of `epoch` (see fdsl_app.data.synthetic)."""
    return epoch * length + index


def make_dataset(samples_per_epoch: int | None = None, *, seed: int = 7, **settings: Any) -> FormulaDataset:
    family = create_family(TEST_FAMILY, **settings)
    return FormulaDataset(family, family.generate(0), seed=seed, samples_per_epoch=samples_per_epoch)


def epoch_batches(loader: DataLoader, epochs: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every batch of `epochs` epochs, calling set_epoch first as Lightning's fit loop does."""
    batches = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        batches += [(images.clone(), labels.clone()) for images, labels in loader]
    return batches


# --- determinism ---------------------------------------------------------------------------------------------------


def test_same_images_whatever_the_workers() -> None:
    loaders = {
        (workers, persistent): FormulaDataModule(
            TEST_FAMILY, {"n_points": 1000}, seed=3, samples_per_epoch=10, batch_size=4, drop_last=False,
            num_workers=workers, persistent_workers=persistent,
        ).train_dataloader()
        for workers, persistent in [(0, False), (1, False), (2, False), (2, True)]
    }  # fmt: skip
    runs = {setting: epoch_batches(loader) for setting, loader in loaders.items()}
    reference = runs[(0, False)]
    assert len(reference) == 6  # 3 batches (4, 4, 2) per epoch
    for setting, batches in runs.items():
        assert len(batches) == len(reference), setting
        for (images, labels), (ref_images, ref_labels) in zip(batches, reference, strict=True):
            assert torch.equal(images, ref_images), setting
            assert torch.equal(labels, ref_labels), setting
    # And the loader's images are those of the epoch-encoded indices rendered directly, on all cores.
    loader = loaders[(0, False)]
    indices = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        indices += list(loader.sampler)
    direct, _ = loader.dataset.render_batch(indices)
    assert torch.equal(torch.cat([images for images, _ in reference]), direct)


def test_next_epoch_redraws_images_but_keeps_labels() -> None:
    dataset = make_dataset()
    n = len(dataset)
    first, labels0 = dataset.render_batch(range(n))
    second, labels1 = dataset.render_batch([encode_index(1, i, n) for i in range(n)])
    assert torch.equal(labels0, labels1)
    assert all(not torch.equal(a, b) for a, b in zip(first, second, strict=True))
    again, _ = dataset.render_batch(range(n))
    assert torch.equal(first, again)


def test_seed_changes_images() -> None:
    first, _ = make_dataset(seed=1).render_batch(range(4))
    second, _ = make_dataset(seed=2).render_batch(range(4))
    assert not torch.equal(first, second)


def test_batch_spanning_epochs_matches_single_samples() -> None:
    dataset = make_dataset()
    indices = [0, 5, encode_index(1, 0, len(dataset)), encode_index(3, 2, len(dataset))]
    batch, labels = dataset.render_batch(indices)
    for row, index in enumerate(indices):
        image, label = dataset[index]
        assert torch.equal(image, batch[row]) and label == labels[row]


# --- index mapping ---------------------------------------------------------------------------------------------------


def test_labels_are_class_ids() -> None:
    dataset = make_dataset(classes=3, instances=2)
    assert len(dataset) == 6 and dataset.num_classes == 3
    for i in range(len(dataset)):
        image, label = dataset[i]
        assert label == i // 2
        assert image.dtype == torch.uint8 and image.shape == (1, 32, 32)
    _, _, classes, instances = dataset.locate(range(6))
    assert classes.tolist() == [0, 0, 1, 1, 2, 2] and instances.tolist() == [0, 1, 0, 1, 0, 1]


def test_samples_per_epoch_wraps_around_classes() -> None:
    dataset = make_dataset(samples_per_epoch=13)  # base length 6, stride coprime with 6
    assert len(dataset) == 13
    images, labels = dataset.render_batch(range(13))
    base = [i * dataset.stride % 6 for i in range(13)]
    assert labels.tolist() == [b // 2 for b in base]
    assert sorted(base[:6]) == list(range(6))  # any 6 consecutive positions cover the family once
    # The second pass draws the same (class, instance) afresh: the key is per position, not per base index.
    assert base[0] == base[6] and not torch.equal(images[0], images[6])
    # Epoch 1 starts at global index 13 and continues the walk where epoch 0 stopped.
    assert divmod(13, len(dataset)) == (1, 0)
    assert dataset.labels([13]).tolist() == [13 * dataset.stride % 6 // 2]


def test_short_epochs_walk_through_the_whole_family() -> None:
    dataset = make_dataset(samples_per_epoch=4)  # base length 6: an epoch sees 4 samples
    epochs = [sorted(dataset.labels(range(e * 4, e * 4 + 4)).tolist()) for e in range(3)]
    assert all(len(set(labels)) >= 2 for labels in epochs)  # each epoch spans several classes
    seen = dataset.labels(range(12)).tolist()
    assert sorted(seen) == sorted([c for c in range(3) for _ in range(4)])  # 2 passes: every sample twice


def test_rejects_bad_dataset_arguments() -> None:
    family = create_family(TEST_FAMILY)
    params = family.generate(0)
    with pytest.raises(ValueError, match="samples_per_epoch"):
        FormulaDataset(family, params, samples_per_epoch=0)
    with pytest.raises(ValueError, match="seed"):
        FormulaDataset(family, params, seed=-1)
    with pytest.raises(ValueError, match="settings"):
        FormulaDataset(create_family(TEST_FAMILY, classes=2), params)
    with pytest.raises(IndexError, match=">= 0"):
        FormulaDataset(family, params)[-1]


# --- the buffer -> tensor path ----------------------------------------------------------------------------------------


def test_getitems_returns_views_of_one_buffer() -> None:
    dataset = make_dataset()
    samples = dataset.__getitems__([0, 3, 4, 1])
    first = samples[0][0]
    step = first.numel()
    for j, (image, label) in enumerate(samples):
        assert image.dtype == torch.uint8 and image.shape == (1, 32, 32)
        assert image.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
        assert image.data_ptr() == first.data_ptr() + j * step
        assert isinstance(label, int)
    assert first.untyped_storage().nbytes() == 4 * step  # one buffer for the batch, nothing else
    images, labels = collate_samples(samples)
    assert images.data_ptr() == first.data_ptr() and images.shape == (4, 1, 32, 32)  # collate copies nothing
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 2, 0]
    assert images.numpy().any()  # the renderer wrote into that buffer


def test_a_rendered_batch_is_a_sequence_of_samples_for_any_collate() -> None:
    from torch.utils.data import default_collate

    samples = make_dataset().__getitems__([5, 2, 7])
    images, labels = collate_samples(samples)
    assert len(samples) == 3 and [label for _, label in samples] == labels.tolist()
    assert [label for _, label in samples[1:]] == labels.tolist()[1:]
    theirs = default_collate(samples)  # a collate that knows nothing of RenderedBatch copies the same samples
    assert torch.equal(theirs[0], images) and torch.equal(theirs[1], labels)


def test_color_and_channels_last_layouts() -> None:
    family = create_family(TEST_FAMILY, color=True)
    params = family.generate(0)
    chw = FormulaDataset(family, params).__getitems__([0, 1])
    hwc = FormulaDataset(family, params, channels_first=False).__getitems__([0, 1])
    assert chw[0][0].shape == (3, 32, 32) and hwc[0][0].shape == (32, 32, 3)
    assert torch.equal(chw[1][0], hwc[1][0].permute(2, 0, 1))
    images, _ = collate_samples(chw)
    assert images.shape == (2, 3, 32, 32) and images.data_ptr() == chw[0][0].data_ptr()
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_collate_copies_samples_from_different_batches() -> None:
    dataset = make_dataset()
    samples = [dataset[2], dataset[0]]
    images, labels = collate_samples(samples)
    assert torch.equal(images[0], samples[0][0]) and torch.equal(images[1], samples[1][0])
    assert labels.tolist() == [1, 0]


# --- the sampler ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [10, 11, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks_split_the_single_process_epoch(length: int, drop_last: bool) -> None:
    data = range(length)
    world = 8 if length == 3 and not drop_last else 2  # 3 samples for 8 ranks: the padding repeats the epoch
    single = EpochSampler(data, seed=5, num_replicas=1, rank=0)
    ranks = [EpochSampler(data, seed=5, num_replicas=world, rank=r, drop_last=drop_last) for r in range(world)]
    for epoch in (0, 1):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        order = list(single)
        assert sorted(order) == [encode_index(epoch, i, length) for i in range(length)]
        parts = [list(sampler) for sampler in ranks]
        assert len({len(part) for part in parts}) == 1  # equal lengths: DDP needs equal batch counts
        interleaved = [index for row in zip(*parts, strict=True) for index in row]
        total = len(parts[0]) * world
        assert total == (length // world * world if drop_last else -(-length // world) * world)
        # Rank r takes every world-th index of the epoch's order, padded by repeating its start or cut at its end.
        assert interleaved == (order * world)[:total]
        if total <= length:
            assert len(set(interleaved)) == total  # disjoint


def test_sampler_shuffles_per_epoch_deterministically() -> None:
    sampler = EpochSampler(range(20), seed=1)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append([divmod(index, 20) for index in sampler])
    assert orders[0] == orders[2] and orders[0] != orders[1]
    assert {e for e, _ in orders[1]} == {1}
    sequential = EpochSampler(range(5), shuffle=False, epoch=2)
    assert list(sequential) == [10, 11, 12, 13, 14] and len(sequential) == 5


def test_sampler_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        EpochSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        EpochSampler(range(4), num_replicas=0)
    with pytest.raises(ValueError, match="drop_last"):
        EpochSampler(range(1), num_replicas=2, rank=0, drop_last=True)
    with pytest.raises(ValueError, match="epoch"):
        EpochSampler(range(4)).set_epoch(-1)


# --- the DataModule -------------------------------------------------------------------------------------------------


class LinearProbe(L.LightningModule):
    """A linear layer on flattened images; records what reached it."""

    def __init__(self, pixels: int, classes: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(pixels, classes)
        self.seen: list[tuple[torch.dtype, tuple[int, ...], torch.dtype]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        self.seen.append((images.dtype, tuple(images.shape), labels.dtype))
        logits = self.layer(images.flatten(1).float() / 255)
        return torch.nn.functional.cross_entropy(logits, labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


# num_workers=0 on purpose (fast); Lightning 2.6's pytree helper trips torch >= 2.10's LeafSpec deprecation.
@pytest.mark.filterwarnings("ignore:The 'train_dataloader' does not have many workers")
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
def test_lightning_trainer_fits_and_sets_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    epochs_seen: list[int] = []

    class RecordingSampler(EpochSampler):
        def __iter__(self) -> Iterator[int]:
            epochs_seen.append(self.epoch)
            return super().__iter__()

    monkeypatch.setattr(datamodule_module, "EpochSampler", RecordingSampler)
    data = FormulaDataModule(TEST_FAMILY, {"n_points": 500}, batch_size=4, samples_per_epoch=8)
    model = LinearProbe(32 * 32, data.num_classes)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=2, max_steps=2, limit_train_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2
    assert epochs_seen == [0, 1]  # Lightning called set_epoch before each epoch
    assert model.seen == [(torch.uint8, (4, 1, 32, 32), torch.int64)] * 2


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"num_workers": -1}, "num_workers"),
        ({"batch_size": 0}, "batch_size"),
        ({"persistent_workers": True}, "persistent_workers"),
        ({"samples_per_epoch": 0}, "samples_per_epoch"),
        ({"prefetch_factor": 2}, "prefetch_factor"),
        ({"seed": -1}, "seed"),
        ({"param_seed": 1.5}, "param_seed"),
        ({"family": "no_such_family"}, "no_such_family"),
        ({"settings": {"no_such_setting": 1}}, "no_such_setting"),
    ],
)
def test_datamodule_rejects_bad_settings(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FormulaDataModule(**{"family": TEST_FAMILY, **kwargs})


def test_datamodule_rejects_batches_that_drop_last_would_empty() -> None:
    data = FormulaDataModule(TEST_FAMILY, batch_size=8)  # 6 samples per epoch
    with pytest.raises(ValueError, match="batch_size"):
        data.train_dataloader()


def test_datamodule_from_parameter_file(tmp_path: Any) -> None:
    family = create_family(TEST_FAMILY, classes=2)
    path = save_params(family.generate(11), tmp_path / "tiny.npz")
    data = FormulaDataModule(TEST_FAMILY, {"image_size": 16}, params_path=str(path))  # render settings may change
    data.setup("fit")
    assert data.num_classes == 2 and data.dataset is not None
    assert data.dataset.params.seed == 11 and data.dataset[0][0].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="classes"):
        FormulaDataModule(TEST_FAMILY, {"classes": 3}, params_path=str(path))


def test_datamodule_generates_from_param_seed() -> None:
    data = FormulaDataModule(TEST_FAMILY, seed=4, param_seed=9)
    data.setup()
    assert data.dataset is not None and data.dataset.params.seed == 9 and data.dataset.seed == 4


# --- every registered family ---------------------------------------------------------------------------------------


def _import_family_modules() -> None:
    """Import every module of fdsl_app.families, so that each family registers whether or not the package does."""
    for module in pkgutil.iter_modules(fdsl_app.families.__path__):
        importlib.import_module(f"fdsl_app.families.{module.name}")


_import_family_modules()

#: Small values for whichever of these settings a family has: a few classes of tiny images, fast to generate.
_TINY = {
    "classes": 2, "instances": 2, "image_size": 32, "n_points": 2000,
    "search_size": 64, "search_points": 5000, "max_redraws": 1000,
}  # fmt: skip


@pytest.mark.parametrize("name", [name for name in list_families() if not name.startswith("_")])
def test_every_registered_family_loads(name: str) -> None:
    fields = {field.name for field in dataclasses.fields(family_class(name).Settings)}
    tiny = {key: value for key, value in _TINY.items() if key in fields}
    data = FormulaDataModule(name, tiny, seed=1, samples_per_epoch=6, batch_size=3, shuffle=False)
    loader = data.train_dataloader()
    batches = epoch_batches(loader)
    assert len(batches) == 4
    for images, labels in batches:
        assert images.dtype == torch.uint8 and images.shape[0] == 3 and images.shape[-2:] == (32, 32)
        assert images.shape[1] in (1, 3)
        assert labels.dtype == torch.int64 and 0 <= int(labels.min()) and int(labels.max()) < data.num_classes
    assert data.dataset is not None
    again, _ = data.dataset.render_batch(range(3))
    assert torch.equal(batches[0][0], again)
