"""Atomic writes: a killed or failing writer leaves nothing visible and the next write redoes it;
concurrent writers of one key never mix; an overwrite swaps whole volumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from voxelflow.errors import VolumeChangedError, VolumeNotFoundError
from voxelflow.store import VolumeStore, atomic
from voxelflow.store.pyramid import downsample_mean
from voxelflow.volume import Volume


def staging(store: VolumeStore) -> list[Path]:
    return sorted((store.path / ".voxelflow" / "staging").iterdir())


def volume(seed: int, shape=(24, 96, 80)) -> Volume:
    array = np.random.default_rng(seed).integers(-1000, 2000, size=shape, dtype=np.int16)
    return Volume(array, np.diag([2.0, 0.8, 0.8, 1.0]), {"seed": seed})


WRITER = textwrap.dedent(
    """
    import pathlib, sys, time
    import numpy as np, dask, dask.array as da
    from voxelflow.store import VolumeStore
    from voxelflow.volume import Volume

    root = pathlib.Path(sys.argv[1])

    def slow(block, block_info=None):
        if len(list(root.glob(".voxelflow/staging/*/0/c/*/0/0"))) >= 2:
            print("sleeping", flush=True)  # two chunks are on disk: be killed mid-write
            time.sleep(30)
        return block

    source = da.from_array(np.ones((8, 32, 32), np.int16), chunks=(1, 32, 32))
    lazy = source.map_blocks(slow, dtype=np.int16)
    with dask.config.set(scheduler="synchronous"):
        volume = Volume(lazy, np.eye(4))
        VolumeStore(root).write("study/series/1", volume, chunks=(1, 32, 32))
    print("finished", flush=True)
    """
)


def test_a_writer_killed_mid_write_leaves_nothing_and_the_next_write_redoes_it(tmp_path):
    root = tmp_path / "s"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line == "sleeping\n", line + process.stderr.read()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=20) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    store = VolumeStore(root)
    assert "study/series/1" not in store and store.keys() == []
    with pytest.raises(VolumeNotFoundError):
        store.open("study/series/1")
    assert not (root / "study" / "series" / "1").exists()
    (partial,) = staging(store)
    assert partial.name.endswith(".partial") and len(list(partial.glob("0/c/*/0/0"))) >= 2
    # the dead writer's lock died with it: the next write of the key goes ahead and cleans up
    result = store.write("study/series/1", Volume(np.ones((8, 32, 32), np.int16), np.eye(4)))
    assert not result.skipped and staging(store) == []
    np.testing.assert_array_equal(store.open("study/series/1").to_numpy(), 1)


def test_a_failing_source_leaves_nothing_behind(tmp_path):
    store = VolumeStore(tmp_path / "s")

    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 3:
            raise RuntimeError("decoder failed on slice 3")
        return block

    lazy = da.zeros((6, 16, 16), dtype=np.int16, chunks=(1, 16, 16)).map_blocks(
        explode, dtype=np.int16
    )
    with pytest.raises(RuntimeError, match="slice 3"):
        store.write("k", Volume(lazy, np.eye(4)))
    assert "k" not in store and not (store.path / "k").exists() and staging(store) == []
    assert not store.write("k", volume(0)).skipped  # the key's lock was released


def test_interrupted_replace_keeps_the_old_volume(tmp_path, monkeypatch):
    store = VolumeStore(tmp_path / "s")
    store.write("k", volume(1))

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    # the pyramid fails once level-0 chunks are on their way
    monkeypatch.setattr("voxelflow.store.pyramid._downsample_into", fail)
    with pytest.raises(KeyboardInterrupt):
        store.write("k", volume(2), overwrite=True)
    np.testing.assert_array_equal(store.open("k").to_numpy(), volume(1).array)
    assert staging(store) == []


def run_together(*calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def assert_whole(store: VolumeStore, key: str, candidates: list[Volume]) -> Volume:
    """The stored volume is exactly one candidate: level 0, level 1 and meta all from it."""
    stored = store.open(key)
    (match,) = [c for c in candidates if stored.meta == c.meta]
    np.testing.assert_array_equal(stored.to_numpy(), match.array)
    np.testing.assert_array_equal(
        store.open(key, level=1).to_numpy(), downsample_mean(match.array, (1, 2, 2))
    )
    return match


def test_concurrent_writes_of_one_key_one_wins_the_other_skips(tmp_path):
    store = VolumeStore(tmp_path / "s")
    first, second = volume(1), volume(2)
    results = run_together(lambda: store.write("k", first), lambda: store.write("k", second))
    assert sorted(r.skipped for r in results) == [False, True]
    winner = assert_whole(store, "k", [first, second])
    assert winner is (first if not results[0].skipped else second)
    assert staging(store) == []


def test_concurrent_overwrites_of_one_key_never_mix(tmp_path):
    store = VolumeStore(tmp_path / "s")
    candidates = [volume(seed) for seed in range(3)]
    results = run_together(*(lambda v=v: store.write("k", v, overwrite=True) for v in candidates))
    assert not any(r.skipped for r in results)
    assert_whole(store, "k", candidates)
    assert staging(store) == []


def test_concurrent_writes_of_sibling_keys(tmp_path):
    store = VolumeStore(tmp_path / "s")
    keys = [f"study/series/{n}" for n in range(4)]
    run_together(
        *(lambda k=k, n=n: store.write(k, volume(n, (4, 16, 16))) for n, k in enumerate(keys))
    )
    assert store.keys() == keys


def test_readers_see_one_whole_version_during_overwrites(tmp_path):
    store = VolumeStore(tmp_path / "s")
    versions = [volume(seed, (8, 40, 40)) for seed in range(2)]
    store.write("k", versions[0], chunks=(2, 40, 40))
    stop = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def read_repeatedly():
        while not stop.is_set():
            try:
                opened = store.open("k")
                values = opened.to_numpy()
            except VolumeChangedError:
                continue  # replaced between open and read: loud, and a reopen sees the new one
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                return
            matches = [n for n, v in enumerate(versions) if np.array_equal(values, v.array)]
            if len(matches) != 1 or opened.meta != versions[matches[0]].meta:
                failures.append(AssertionError("read a mix of two versions"))
                return
            seen.append(matches[0])

    reader = threading.Thread(target=read_repeatedly)
    reader.start()
    try:
        for n in range(6):
            store.write("k", versions[(n + 1) % 2], chunks=(2, 40, 40), overwrite=True)
    finally:
        stop.set()
        reader.join(timeout=60)
    assert not failures, failures
    assert seen


def test_overwrite_without_rename_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # e.g. not Linux
    store = VolumeStore(tmp_path / "s")
    store.write("k", volume(1))
    store.write("k", volume(2), overwrite=True)
    np.testing.assert_array_equal(store.open("k").to_numpy(), volume(2).array)
    assert staging(store) == []


def test_remove_partials_spares_keys_being_written(tmp_path):
    store = VolumeStore(tmp_path / "s")
    dead = atomic.new_staging(store.path, "dead")
    (dead / "zarr.json").write_text("{}")
    with atomic.key_lock(store.path, "busy"):
        busy = atomic.new_staging(store.path, "busy")
        assert store.remove_partials() == 1
        assert staging(store) == [busy]
    assert store.remove_partials() == 1 and staging(store) == []


def test_locks_exclude_threads_of_one_process(tmp_path):
    root = tmp_path / "s"
    VolumeStore(root)
    order = []

    def hold(name):
        with atomic.key_lock(root, "k"):
            order.append(f"{name} in")
            time.sleep(0.1)
            order.append(f"{name} out")

    threads = [threading.Thread(target=hold, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [o.split()[1] for o in order] == ["in", "out", "in", "out"]
    assert os.listdir(root / ".voxelflow" / "locks")
