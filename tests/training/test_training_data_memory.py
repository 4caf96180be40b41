"""Built-in datasets, the dataset registry, sharding and batching."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from precision.common.registry import DuplicateNameError, UnknownNameError
from training.data import (
    DATASETS,
    DatasetInfo,
    ShardSpec,
    iterate_batches,
    load_dataset,
    make_synthetic,
    num_batches,
    register_dataset,
)
from training.data.base import Split


def test_digits_split_is_fixed_and_stratified() -> None:
    data = load_dataset("digits")
    assert (len(data.train), len(data.test)) == (1438, 359)
    assert data.train.inputs.shape == (1438, 1, 8, 8)
    assert data.train.inputs.dtype == torch.float32
    assert data.test.targets.dtype == torch.int64
    train_counts = torch.bincount(data.train.targets, minlength=10).double()
    test_counts = torch.bincount(data.test.targets, minlength=10).double()
    # Stratified: every class in the test split within one example of its share.
    share = (train_counts + test_counts) * 359 / 1797
    assert torch.all((test_counts - share).abs() <= 1.0)
    again = load_dataset("digits")
    assert torch.equal(data.test.inputs, again.test.inputs)
    assert abs(float(data.train.inputs.mean())) < 1e-5
    assert abs(float(data.train.inputs.std()) - 1.0) < 1e-3


def test_synthetic_is_seeded_and_learnable() -> None:
    a = make_synthetic(seed=3, num_train=400, num_test=200, separation=4.0)
    b = make_synthetic(seed=3, num_train=400, num_test=200, separation=4.0)
    c = make_synthetic(seed=4, num_train=400, num_test=200, separation=4.0)
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert not torch.equal(a.train.inputs, c.train.inputs)
    # Nearest class mean (estimated on train) classifies the test split well.
    x = a.train.inputs.flatten(1)
    means = torch.stack([x[a.train.targets == k].mean(0) for k in range(a.num_classes)])
    pred = torch.cdist(a.test.inputs.flatten(1), means).argmin(1)
    assert (pred == a.test.targets).double().mean() > 0.9


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    info = DATASETS.get("digits")
    with pytest.raises(DuplicateNameError, match="digits"):
        register_dataset(info)
    with pytest.raises(UnknownNameError, match="choose from digits"):
        load_dataset("imagenet-1k-please")


@pytest.mark.parametrize("info", DATASETS.infos(), ids=lambda i: i.name)
def test_registry_records_are_consistent(info: DatasetInfo) -> None:
    assert info.needs_data_dir == bool(info.files)
    assert info.num_classes >= 2 and len(info.input_shape) == 3
    if not info.needs_data_dir:
        data = load_dataset(info.name)
        assert data.input_shape == info.input_shape
        assert int(data.train.targets.max()) < info.num_classes


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(1, 40),
    world=st.integers(1, 6),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
)
def test_shards_match_torch_distributed_sampler(
    size: int, world: int, seed: int, epoch: int, shuffle: bool, drop_last: bool
) -> None:
    dataset = list(range(size))
    for rank in range(world):
        spec = ShardSpec(
            rank=rank, world_size=world, seed=seed, shuffle=shuffle, drop_last=drop_last
        )
        sampler = DistributedSampler(
            dataset,  # type: ignore[arg-type]
            num_replicas=world,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        sampler.set_epoch(epoch)
        assert spec.indices(size, epoch).tolist() == list(sampler)
        assert spec.num_samples(size) == len(sampler)


def test_shards_partition_each_epoch() -> None:
    size, world = 103, 4
    shards = [ShardSpec(rank=r, world_size=world, seed=7).indices(size, 2) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    covered = torch.cat(shards)
    assert set(covered.tolist()) == set(range(size))
    assert len(covered) - size == (-size) % world  # only the padding repeats
    other_epoch = ShardSpec(rank=0, world_size=world, seed=7).indices(size, 3)
    assert not torch.equal(shards[0], other_epoch)


def test_shard_spec_validates() -> None:
    with pytest.raises(ValueError, match="rank=2"):
        ShardSpec(rank=2, world_size=2)


@pytest.mark.parametrize("drop_last", [True, False])
def test_iterate_batches(drop_last: bool) -> None:
    split = Split(inputs=torch.arange(10.0).reshape(10, 1, 1, 1), targets=torch.arange(10))
    order = torch.tensor([9, 3, 1, 0, 2, 8, 7])
    batches = list(iterate_batches(split, 3, indices=order, drop_last=drop_last))
    assert len(batches) == num_batches(len(order), 3, drop_last=drop_last)
    seen = torch.cat([y for _, y in batches])
    expected = order[:6] if drop_last else order
    assert torch.equal(seen, expected)
    for x, y in batches:
        assert torch.equal(x.reshape(-1).long(), y)
