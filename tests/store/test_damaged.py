"""Damaged stores: every read path of a stored volume (``open``, ``to_numpy``,
``to_dask().compute()``, ``mpr``, out-of-core ``resample``) raises the StoreError subclass that
names the damaged chunk or field, never a zarr / blosc / JSON error, a crash or wrong voxels.

The damage classes are :data:`voxelflow.testing.malformed.STORE_CASES`, applied to copies of
the store its ``write_pristine`` writes with ``VolumeStore.write``: chunk files deleted,
truncated (at 0 and 1 byte, inside the blosc header, inside the checksum ...), bits flipped in
the payload and in the header, overwritten with garbage or with another array's chunk; the
metadata truncated, not JSON, edited (shape, dtype, chunks, attributes removed, an affine
non-finite or singular), a level removed. Stores written before checksums ("old": no crc32c
codec) must still read, and their truncated chunks, which blosc 1 would read past their end
(a SIGSEGV once in a few runs), are read in child processes under a 4 GiB address-space cap,
twenty times, each asserting a normal exit.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import voxelflow
from voxelflow import Plane
from voxelflow.errors import CorruptChunkError, StoreError
from voxelflow.store import VolumeStore
from voxelflow.testing.damaged_store import CHUNK, CHUNK_FILE, SHAPE, pristine_affine, pristine_data
from voxelflow.testing.malformed import STORE_CASES, write_pristine
from voxelflow.volume import Volume

NAMED = r"chunk \(1, 0, 1\).*c/1/0/1"
CHUNK_CASES = {case.name: case for case in STORE_CASES if case.klass == "store-chunk"}
METADATA_CASES = {case.name: case for case in STORE_CASES if case.klass == "store-metadata"}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """Undamaged stores, new (with checksums) and old (without), for tests to copy."""
    return {kind: write_pristine(tmp_path_factory.mktemp(f"pristine-{kind}"), checksums=kind == "new")
            for kind in ("new", "old")}


def _copy(pristine: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    root = tmp_path / kind
    shutil.copytree(pristine[kind], root)
    return root


def _plane() -> Plane:
    # slice 11 whole: crosses the damaged chunk
    return Plane.axial((0.8 * 47.5, 0.8 * 39.5, 2.0 * 11), spacing=0.8, size=(90, 110))


# each read path of a stored volume, as the child processes also run them
READS = {
    "to_numpy": lambda v: v.to_numpy(),
    "to_dask": lambda v: v.to_dask().compute(),
    "mpr": lambda v: voxelflow.mpr(v, _plane(), level=0),
    "resample": lambda v: voxelflow.resample(v, spacing=(3.0, 1.1, 1.1)).to_numpy(),
}


def test_new_stores_checksum_every_chunk_and_old_ones_still_read(pristine) -> None:
    data = pristine_data()
    for kind in ("new", "old"):
        document = json.loads((pristine[kind] / "v" / "0" / "zarr.json").read_text())
        names = [codec["name"] for codec in document["codecs"]]
        assert names == (["bytes", "blosc", "crc32c"] if kind == "new" else ["bytes", "blosc"])
        volume = VolumeStore(pristine[kind], read_only=True).open("v")
        np.testing.assert_array_equal(volume.to_numpy(), data)
        np.testing.assert_array_equal(volume.to_dask().compute(), data)
        np.testing.assert_array_equal(volume.array[8:16, :16, 16:32], data[8:16, :16, 16:32])
        reference = Volume(data, pristine_affine())
        np.testing.assert_array_equal(READS["mpr"](volume), voxelflow.mpr(reference, _plane()))
        np.testing.assert_allclose(READS["resample"](volume), READS["resample"](reference))
        # dask workers unpickle the array, store and its checked layouts with it
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(volume.array))[...], data)
        level1 = VolumeStore(pristine[kind], read_only=True).open("v", level=1)
        assert level1.to_numpy().shape == level1.shape


# -- damaged chunks of new stores: the checksum catches every change ---------------------------


@pytest.mark.parametrize("how", list(CHUNK_CASES))
def test_damaged_chunk_raises_naming_it_on_every_read_path(pristine, tmp_path, how) -> None:
    root = _copy(pristine, "new", tmp_path)
    case = CHUNK_CASES[how]
    case.damage(root)
    expected = case.error
    assert case.match == NAMED
    store = VolumeStore(root, read_only=True)
    store.open("v")  # opening reads no chunk
    for name, read in READS.items():
        with pytest.raises(expected, match=NAMED) as caught:
            read(store.open("v"))
        assert "level 0" in str(caught.value), name
    with pytest.raises(expected, match=NAMED):
        store.open("v").array[8:16, :16, 16:32]
    # the rest of the volume still reads
    np.testing.assert_array_equal(store.open("v").array[:8], pristine_data()[:8])


def test_corrupt_chunk_error_carries_the_place_on_every_read_path(pristine, tmp_path) -> None:
    root = _copy(pristine, "new", tmp_path)
    CHUNK_CASES["payload bit flipped"].damage(root)
    store = VolumeStore(root, read_only=True)
    for name, read in READS.items():
        with pytest.raises(CorruptChunkError) as caught:
            read(store.open("v"))
        error = caught.value
        assert (error.key, error.level, error.array, error.chunk) == ("v", 0, "0", CHUNK), name
        assert Path(error.path) == root / CHUNK_FILE, name
    # dask ships worker errors pickled: the place must survive it
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.chunk, copy.array, copy.key, copy.level, str(copy)) == (
        error.path, error.chunk, error.array, error.key, error.level, str(error))


# -- damaged metadata: open refuses, naming the file and the field ------------------------------


@pytest.mark.parametrize("how", list(METADATA_CASES))
def test_damaged_metadata_raises_naming_the_field(pristine, tmp_path, how) -> None:
    case = METADATA_CASES[how]
    assert issubclass(case.error, StoreError)
    root = _copy(pristine, "new", tmp_path)
    case.damage(root)
    store = VolumeStore(root, read_only=True)
    for level in (0, 1):
        with pytest.raises(case.error, match=case.match) as caught:
            store.open("v", level=level)
        # a StoreError of its own, never the builtin errors zarr and json raise
        assert not isinstance(caught.value, (KeyError, TypeError, UnicodeError))
    assert store.open("w").shape == SHAPE  # its neighbour is untouched


# -- truncated and altered chunks in child processes: no crash, twenty times -----------------

_CHILD = textwrap.dedent(
    """
    import json, re, resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import numpy as np
    import voxelflow
    from voxelflow import Plane
    from voxelflow.errors import CorruptChunkError
    from voxelflow.store import VolumeStore

    plane = Plane.axial((0.8 * 47.5, 0.8 * 39.5, 2.0 * 11), spacing=0.8, size=(90, 110))
    reads = [
        lambda v: v.to_numpy(),
        lambda v: v.to_dask().compute(),
        lambda v: voxelflow.mpr(v, plane, level=0),
        lambda v: voxelflow.resample(v, spacing=(3.0, 1.1, 1.1)).to_numpy(),
    ]
    cases, repeats, every_path = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    for repeat in range(repeats):
        # every path once (in one child); then zarr's reading (to_dask and resample read
        # chunks as to_numpy does, only slower) and the renderer's, again and again: the
        # crash came once in a few reads
        for root, must_raise in cases:
            store = VolumeStore(root, read_only=True)
            for read in reads if every_path and repeat == 0 else reads[::2]:
                try:
                    read(store.open("v"))
                except CorruptChunkError as error:
                    assert re.search(r"level 0 chunk \\(1, 0, 1\\).*c/1/0/1", str(error)), error
                else:
                    # an old store's flipped payload bit may decode: nothing to check it by
                    assert not must_raise, (root, "read without error")
    print("ok")
    """
)

# (damage, whether every read must raise): applied to new and old stores alike
CHILD_DAMAGE = [
    ("truncated to 0 bytes", True),
    ("truncated to 1 byte", True),
    ("truncated inside the blosc header", True),
    ("truncated to half", True),
    ("one byte short", True),
    ("header bit flipped", True),
    ("payload bit flipped", False),
    ("garbage", True),
]
_TRUNCATIONS = (15, 16, 17, 30, 100)  # header and block offsets cut at several lengths


@pytest.mark.parametrize("runs,repeats", [
    pytest.param(2, 2, id="sample"),  # 4 reads of every case, in 2 fresh processes
    pytest.param(5, 4, id="exhaustive", marks=pytest.mark.slow),  # 20 reads, in 5
])
def test_truncated_chunks_never_crash_a_reader(pristine, tmp_path, runs, repeats) -> None:
    # old stores: there no checksum stands between a cut chunk and blosc, only the header
    # checks (new stores' chunks are caught by their checksum first, tested above)
    cases = []
    for n, (how, must_raise) in enumerate(CHILD_DAMAGE):
        root = _copy(pristine, "old", tmp_path / f"{n}")
        CHUNK_CASES[how].damage(root)
        cases.append((str(root), must_raise))
    for cut in _TRUNCATIONS:
        root = _copy(pristine, "old", tmp_path / f"cut{cut}")
        chunk = root / CHUNK_FILE
        chunk.write_bytes(chunk.read_bytes()[:cut])
        cases.append((str(root), True))
    argument = json.dumps(cases)
    running: list[subprocess.Popen[str]] = []
    finished = []
    for run in range(runs):
        running.append(
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, argument, str(repeats), str(int(run == 0))],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if len(running) == 2:  # a few at a time: each imports voxelflow
            finished.append(_finish(running.pop(0)))
    finished.extend(_finish(child) for child in running)
    for returncode, out, err in finished:
        # a negative return code is the signal that killed the child (-11: SIGSEGV)
        assert returncode == 0 and out.strip() == "ok", (returncode, err[-2000:])


def _finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = child.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        return -999, out, "timed out\n" + err
    return child.returncode, out, err
