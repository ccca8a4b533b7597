"""Fixtures of the HTTP service tests: one small store of phantom series, built once per session.

Every series is small (at most 24 x 64 x 64, one of 6 x 160 x 200 for a pyramid) so that the
whole folder runs in well under a minute on two shared cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from voxelflow.ingest import ingest
from voxelflow.service import create_app
from voxelflow.store import VolumeStore
from voxelflow.testing import SeriesInfo, write_series

from svc_helpers import Client


@dataclass(frozen=True)
class Phantoms:
    """The session's store and the ground truth of every series in it.

    `series` by name: "ct" (24 x 64 x 64, series number 3) and "mr" (12 x 48 x 56, series 5)
    share one study; "mono1" is MONOCHROME1, "voilut" has a VOI LUT Sequence, "wcenter" has a
    different Window Center in each file, "enhanced" is one 8-frame Enhanced CT file with
    shuffled frame order, "descending" has Instance Numbers against the slice order, "pyramid"
    (6 x 160 x 200) is stored with pyramid levels 1 and 2.
    """

    root: Path
    store: Path
    series: dict[str, SeriesInfo]
    keys: dict[str, str]  # series name -> store key
    files: dict[str, Path]  # SOP Instance UID -> its file (read back with pydicom)
    window_centers: tuple[float, ...]  # the first Window Center written into each "wcenter" file

    def key(self, name: str) -> str:
        return self.keys[name]

    def base(self, name: str) -> str:
        """``/dicom-web/studies/{study}/series/{series}`` of a series."""
        info = self.series[name]
        return f"/dicom-web/studies/{info.study_uid}/series/{info.series_uid}"

    def instance(self, name: str, index: int) -> tuple[str, Path]:
        """(URL of the instance, its file) of the `index`-th instance (geometric order)."""
        sop = self.series[name].sop_uids[index]
        return f"{self.base(name)}/instances/{sop}", self.files[sop]


def _build(root: Path) -> Phantoms:
    dicom = root / "dicom"
    series: dict[str, SeriesInfo] = {}
    series["ct"] = write_series(dicom / "ct", shape=(24, 64, 64), seed=11, series_number=3)
    series["mr"] = write_series(dicom / "mr", shape=(12, 48, 56), modality="MR", seed=12, series_number=5,
                                study_uid=series["ct"].study_uid)
    series["mono1"] = write_series(dicom / "mono1", shape=(6, 40, 40), photometric="MONOCHROME1", seed=13)
    series["voilut"] = write_series(dicom / "voilut", shape=(6, 40, 40), voi_lut=True, seed=14)
    series["wcenter"] = write_series(dicom / "wcenter", shape=(6, 40, 40), seed=15)
    series["enhanced"] = write_series(dicom / "enhanced", shape=(8, 40, 48), enhanced=True,
                                      shuffle_instance_numbers=True, seed=16)
    series["descending"] = write_series(dicom / "descending", shape=(6, 32, 32), slice_order="descending", seed=18)
    series["pyramid"] = write_series(dicom / "pyramid", shape=(6, 160, 200), spacing=(3.0, 0.5, 0.5), seed=17)

    # a different Window Center in each file (edited after writing, before ingest)
    centers = []
    for i, path in enumerate(series["wcenter"].paths):
        ds = pydicom.dcmread(path)
        center = -160.0 + 70.0 * i
        ds.WindowCenter = [f"{center:g}", "-600", "400"]
        ds.save_as(path)
        centers.append(center)

    store = root / "store"
    report = ingest([dicom], store)
    assert not report.failures, report.table()
    keys = {}
    opened = VolumeStore(store, read_only=True)
    for name, info in series.items():
        (key,) = [k for k in opened.keys() if opened.open(k).meta.get("series_instance_uid") == info.series_uid]
        keys[name] = key
    files = {}
    for path in dicom.rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        files[str(ds.SOPInstanceUID)] = path
    return Phantoms(root=root, store=store, series=series, keys=keys, files=files, window_centers=tuple(centers))


@pytest.fixture(scope="session")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Phantoms:
    return _build(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="session")
def store_volumes(phantoms: Phantoms) -> VolumeStore:
    """The session store opened directly (the library side of each comparison)."""
    return VolumeStore(phantoms.store, read_only=True)


@pytest.fixture(scope="session")
def app(phantoms: Phantoms):
    return create_app(phantoms.store)


@pytest.fixture(scope="session")
def client(app):
    """A client of the default app (no token, no CORS, default limits)."""
    c = Client(app)
    yield c
    c.close()


@pytest.fixture
def client_factory(phantoms: Phantoms):
    """``client_factory(store=None, **settings)``: a client of a fresh app (over the session
    store unless `store` is given), closed after the test."""
    made = []

    def factory(store=None, **settings) -> Client:
        c = Client(create_app(phantoms.store if store is None else store, **settings))
        made.append(c)
        return c

    yield factory
    for c in made:
        c.close()
