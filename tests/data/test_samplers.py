"""Samplers: resumable training order and duplicate-free evaluation shards."""
import pytest

from data.samplers import ResumableDistributedSampler, ShardSampler


def test_resume_mid_epoch_continues_the_same_order():
    full = list(ResumableDistributedSampler(50, batch_size=4, seed=3, rank=0, world_size=1))
    assert len(full) == 48 and len(set(full)) == 48
    resumed = ResumableDistributedSampler(50, batch_size=4, seed=3, rank=0, world_size=1)
    resumed.set_position(epoch=0, start_batch=5)
    assert list(resumed) == full[20:] and len(resumed) == 28


def test_epochs_differ_and_seed_reproduces():
    a = ResumableDistributedSampler(40, 4, seed=0, rank=0, world_size=1)
    b = ResumableDistributedSampler(40, 4, seed=0, rank=0, world_size=1)
    a.set_position(1, 0)
    assert list(a) != list(b)
    b.set_position(1, 0)
    assert list(a) == list(b)


def test_ranks_partition_the_epoch():
    shards = [list(ResumableDistributedSampler(23, 2, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 6 for s in shards)
    flat = [i for s in shards for i in s]
    assert len(set(flat)) == 18


def test_too_small_dataset_is_an_error():
    with pytest.raises(ValueError, match="smaller than one global batch"):
        ResumableDistributedSampler(5, 4, seed=0, rank=0, world_size=2)


def test_shards_cover_without_duplicates():
    shards = [list(ShardSampler(11, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
