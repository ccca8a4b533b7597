"""Damaged stores: every read path of a stored volume (``open``, ``to_numpy``,
``to_dask().compute()``, ``mpr``, out-of-core ``resample``) raises the StoreError subclass that
names the damaged chunk or field, never a zarr / blosc / JSON error, a crash or wrong voxels.

Stores are written by ``VolumeStore.write`` and then damaged on disk: chunk files deleted,
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
import math
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
from voxelflow.errors import CorruptChunkError, MissingChunkError, StoreError
from voxelflow.store import VolumeStore
from voxelflow.volume import Volume

SHAPE = (24, 80, 96)  # level 0 of 3 x 5 x 6 chunks, and a level 1 (96 > 64)
CHUNKS = (8, 16, 16)
CHUNK = (1, 0, 1)  # the damaged chunk: z 8..15, y 0..15, x 16..31
CHUNK_FILE = "v/0/c/1/0/1"
NAMED = r"chunk \(1, 0, 1\).*c/1/0/1"


def _affine() -> np.ndarray:
    a = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 3] = 2.0, 0.8, 0.8, 1.0  # k superior, j posterior, i left
    return a


def _data() -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.normal(0.0, 300.0, SHAPE) + 40.0).astype(np.int16)


def _strip_checksums(root: Path) -> None:
    """Turn a store into one written before checksums: no crc32c codec, no trailing 4 bytes."""
    for document in root.glob("*/[0-9]*/zarr.json"):
        body = json.loads(document.read_text())
        assert body["codecs"][-1]["name"] == "crc32c"
        body["codecs"] = body["codecs"][:-1]
        document.write_text(json.dumps(body))
        for chunk in (document.parent / "c").rglob("*"):
            if chunk.is_file():
                chunk.write_bytes(chunk.read_bytes()[:-4])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    """Undamaged stores, new (with checksums) and old (without), for tests to copy."""
    roots = {}
    for kind in ("new", "old"):
        root = tmp_path_factory.mktemp(f"pristine-{kind}")
        store = VolumeStore(root)
        store.write("v", Volume(_data(), _affine(), {"modality": "CT"}), chunks=CHUNKS)
        # another array's chunks, the same chunk shape but float32: their checksums are valid
        donor = np.random.default_rng(4).normal(size=SHAPE).astype(np.float32)
        store.write("w", Volume(donor, _affine()), chunks=CHUNKS, pyramid=False)
        if kind == "old":
            _strip_checksums(root)
        roots[kind] = root
    return roots


def _copy(pristine: dict[str, Path], kind: str, tmp_path: Path) -> Path:
    root = tmp_path / kind
    shutil.copytree(pristine[kind], root)
    return root


def _flip(path: Path, at: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[at % len(raw)] ^= 1 << bit
    path.write_bytes(bytes(raw))


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
    data = _data()
    for kind in ("new", "old"):
        document = json.loads((pristine[kind] / "v" / "0" / "zarr.json").read_text())
        names = [codec["name"] for codec in document["codecs"]]
        assert names == (["bytes", "blosc", "crc32c"] if kind == "new" else ["bytes", "blosc"])
        volume = VolumeStore(pristine[kind], read_only=True).open("v")
        np.testing.assert_array_equal(volume.to_numpy(), data)
        np.testing.assert_array_equal(volume.to_dask().compute(), data)
        np.testing.assert_array_equal(volume.array[8:16, :16, 16:32], data[8:16, :16, 16:32])
        reference = Volume(data, _affine())
        np.testing.assert_array_equal(READS["mpr"](volume), voxelflow.mpr(reference, _plane()))
        np.testing.assert_allclose(READS["resample"](volume), READS["resample"](reference))
        # dask workers unpickle the array, store and its checked layouts with it
        np.testing.assert_array_equal(pickle.loads(pickle.dumps(volume.array))[...], data)
        level1 = VolumeStore(pristine[kind], read_only=True).open("v", level=1)
        assert level1.to_numpy().shape == level1.shape


# -- damaged chunks of new stores: the checksum catches every change ---------------------------

CHUNK_DAMAGE = {
    "deleted": lambda p: p.unlink(),
    "truncated to 0 bytes": lambda p: p.write_bytes(b""),
    "truncated to 1 byte": lambda p: p.write_bytes(p.read_bytes()[:1]),
    "truncated inside the blosc header": lambda p: p.write_bytes(p.read_bytes()[:9]),
    "truncated to half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "one byte short": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "payload bit flipped": lambda p: _flip(p, 200, 3),
    "header bit flipped": lambda p: _flip(p, 5, 1),  # the decoded size
    "garbage": lambda p: p.write_bytes(
        np.random.default_rng(9).integers(0, 256, p.stat().st_size, dtype=np.uint8).tobytes()
    ),
    "another array's chunk": lambda p: shutil.copyfile(p.parents[5] / "w/0/c/1/0/1", p),
}


@pytest.mark.parametrize("how", list(CHUNK_DAMAGE))
def test_damaged_chunk_raises_naming_it_on_every_read_path(pristine, tmp_path, how) -> None:
    root = _copy(pristine, "new", tmp_path)
    CHUNK_DAMAGE[how](root / CHUNK_FILE)
    expected = MissingChunkError if how == "deleted" else CorruptChunkError
    store = VolumeStore(root, read_only=True)
    store.open("v")  # opening reads no chunk
    for name, read in READS.items():
        with pytest.raises(expected, match=NAMED) as caught:
            read(store.open("v"))
        assert "level 0" in str(caught.value), name
    with pytest.raises(expected, match=NAMED):
        store.open("v").array[8:16, :16, 16:32]
    # the rest of the volume still reads
    np.testing.assert_array_equal(store.open("v").array[:8], _data()[:8])


def test_corrupt_chunk_error_carries_the_place_on_every_read_path(pristine, tmp_path) -> None:
    root = _copy(pristine, "new", tmp_path)
    CHUNK_DAMAGE["payload bit flipped"](root / CHUNK_FILE)
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


def _edit(path: Path, change) -> None:
    body = json.loads(path.read_text())
    change(body)
    path.write_text(json.dumps(body))


def _record(change):
    return lambda root: _edit(root / "v" / "zarr.json", lambda b: change(b["attributes"]["voxelflow"]))


def _level0(change):
    return lambda root: _edit(root / "v" / "0" / "zarr.json", change)


def _set_affine(value):
    def change(record):
        affine = np.array(record["affine"])
        value(affine)
        record["affine"] = affine.tolist()
    return _record(change)


METADATA_DAMAGE = {
    "group zarr.json truncated": (
        lambda root: (root / "v/zarr.json").write_bytes((root / "v/zarr.json").read_bytes()[:100]),
        r"v/zarr\.json.*not JSON",
    ),
    "group zarr.json not UTF-8": (
        lambda root: (root / "v/zarr.json").write_bytes(b"\xff\xfe\x00garbage"),
        r"v/zarr\.json.*not JSON",
    ),
    "level zarr.json truncated": (
        lambda root: (root / "v/0/zarr.json").write_bytes((root / "v/0/zarr.json").read_bytes()[:50]),
        r"level 0.*v/0/zarr\.json.*not JSON",
    ),
    "level zarr.json not JSON": (
        lambda root: (root / "v/0/zarr.json").write_text("[1, 2"),
        r"level 0.*v/0/zarr\.json.*not JSON",
    ),
    "level shape shrunk": (
        _level0(lambda b: b.update(shape=[16, 80, 96])),
        r"level 0.*shape \[16, 80, 96\] differs",
    ),
    "level dtype changed": (
        _level0(lambda b: b.update(data_type="int32")),
        r"level 0.*data_type int32 differs from attribute 'dtype' int16",
    ),
    "level dtype not a type": (
        _level0(lambda b: b.update(data_type={"name": 7})),
        r"level 0.*data_type",
    ),
    "level chunk shape changed": (
        _level0(lambda b: b["chunk_grid"]["configuration"].update(chunk_shape=[8, 8, 8])),
        r"level 0.*chunk_shape \[8, 8, 8\] differs from attribute 'chunks'",
    ),
    "level codecs garbled": (
        _level0(lambda b: b.update(codecs="blosc")),
        r"level 0.*codecs",
    ),
    "attribute shape changed": (
        _record(lambda r: r.update(shape=[24, 80, 95])),
        r"'levels\[0\]' shape \[24, 80, 96\] does not match shape \[24, 80, 95\]",
    ),
    "attribute shape missing": (_record(lambda r: r.pop("shape")), r"attribute 'shape'"),
    "attribute dtype missing": (_record(lambda r: r.pop("dtype")), r"attribute 'dtype'"),
    "attribute levels missing": (_record(lambda r: r.pop("levels")), r"attribute 'levels'"),
    "attribute chunks text": (_record(lambda r: r.update(chunks="8,16,16")), r"attribute 'chunks'"),
    "attribute affine missing": (_record(lambda r: r.pop("affine")), r"attribute 'affine'"),
    "attribute meta not an object": (_record(lambda r: r.update(meta="CT")), r"attribute 'meta'"),
    "level path not a number": (
        _record(lambda r: r["levels"][1].update(path="../w/0")),
        r"'levels\[1\]' path '\.\./w/0' is not a new level number",
    ),
    "affine not finite": (
        _set_affine(lambda a: a.__setitem__((0, 2), math.nan)),
        r"attribute 'affine' has non-finite entries",
    ),
    "affine infinite": (
        _set_affine(lambda a: a.__setitem__((1, 3), math.inf)),
        r"attribute 'affine' has non-finite entries",
    ),
    "affine singular": (
        _set_affine(lambda a: a.__setitem__((slice(None), 1), 0.0)),
        r"attribute 'affine' is singular",
    ),
    "affine 3 x 3": (
        _record(lambda r: r.update(affine=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])),
        r"attribute 'affine' is not a 4 x 4",
    ),
    "level affine disagrees": (
        _record(lambda r: r["levels"][1]["affine"][0].__setitem__(3, 5.0)),
        r"'levels\[1\]' affine does not match",
    ),
    "a level missing": (
        lambda root: shutil.rmtree(root / "v" / "1"),
        r"level 1.*v/1/zarr\.json.*missing",
    ),
    "levels and OME datasets differ": (
        _record(lambda r: r["levels"].pop()),
        r"'ome' multiscales lists 2 datasets for 1 levels",
    ),
}


@pytest.mark.parametrize("how", list(METADATA_DAMAGE))
def test_damaged_metadata_raises_naming_the_field(pristine, tmp_path, how) -> None:
    damage, message = METADATA_DAMAGE[how]
    root = _copy(pristine, "new", tmp_path)
    damage(root)
    store = VolumeStore(root, read_only=True)
    for level in (0, 1):
        with pytest.raises(StoreError, match=message) as caught:
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
        CHUNK_DAMAGE[how](root / CHUNK_FILE)
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
