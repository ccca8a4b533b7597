"""STOW-RS (POST /dicom-web/studies): instances staged on disk, reported per PS3.18, and each
series ingested once idle."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import Client, image, problem

from voxelflow.ingest import ingest
from voxelflow.service import create_app
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series

BOUNDARY = "vf-stow-test-boundary"
TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
IDLE = 0.3


def body(parts: list[bytes], *, close: bool = True) -> bytes:
    out = b"".join(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n"
                   for p in parts)
    return out + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("stow") / "dicom", shape=(8, 40, 48), seed=41, series_number=7)


def _client(store: Path, **settings) -> Client:
    VolumeStore(store)
    return Client(create_app(store, **{"receive_idle_s": IDLE, "refresh_s": 0.05, **settings}))


def _wait_for(store: Path, series_uid: str, timeout: float = 30.0) -> list[str]:
    """The series' keys once its ingest finished (the collector marks it ingested)."""
    marker = store / ".voxelflow" / "received" / f"{series_uid}.ingested"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists():
            return [k for k in VolumeStore(store, read_only=True).keys() if k.startswith(series_uid)]
        time.sleep(0.05)
    raise AssertionError(f"series {series_uid} was not ingested within {timeout} s")


def _sequence(answer: dict, tag: str) -> list[dict]:
    return answer.get(tag, {}).get("Value", [])


def _corrupt(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) - 1000]  # cut inside its Pixel Data


def test_stow_stores_the_good_instances_reports_the_bad_and_ingests_once_idle(series, tmp_path):
    store = tmp_path / "store"
    client = _client(store)
    good = [Path(p).read_bytes() for p in series.paths[:3]] + [Path(p).read_bytes() for p in series.paths[4:]]
    bad = _corrupt(Path(series.paths[3]))
    try:
        answer = client.post("/dicom-web/studies", content=body(good[:3] + [bad] + good[3:]), headers={"Content-Type": TYPE})
        assert answer.status_code == 202, answer.text
        assert answer.headers["content-type"].startswith("application/dicom+json")
        stored = _sequence(answer.json(), "00081199")
        failed = _sequence(answer.json(), "00081198")
        assert [s["00081155"]["Value"][0] for s in stored] == [*series.sop_uids[:3], *series.sop_uids[4:]]
        assert all(s["00081190"]["Value"][0].endswith(f"/series/{series.series_uid}/instances/{s['00081155']['Value'][0]}")
                   for s in stored)
        assert len(failed) == 1
        assert failed[0]["00081197"]["Value"] == [0xC000]
        assert failed[0]["00081155"]["Value"] == [series.sop_uids[3]]  # named, though refused
        # each acknowledged instance is on disk already
        staged = store / ".voxelflow" / "received" / series.series_uid
        assert sorted(p.stem for p in staged.glob("*.dcm")) == sorted(s["00081155"]["Value"][0] for s in stored)
        keys = _wait_for(store, series.series_uid)
        # the series as ingested from the same good files
        (tmp_path / "good").mkdir()
        for n, data in enumerate(good):
            (tmp_path / "good" / f"{n}.dcm").write_bytes(data)
        ingest(tmp_path / "good", VolumeStore(tmp_path / "oracle"))
        oracle = VolumeStore(tmp_path / "oracle", read_only=True)
        got = VolumeStore(store, read_only=True)
        assert sorted(keys) == sorted(oracle.keys())
        for key in keys:
            np.testing.assert_array_equal(got.open(key).to_numpy(), oracle.open(key).to_numpy())
            np.testing.assert_allclose(got.open(key).affine, oracle.open(key).affine)
        # and it renders through DICOMweb once the catalog has it
        url = stored[0]["00081190"]["Value"][0].split("://", 1)[1].split("/", 1)[1]
        rendered = client.get(f"/{url}/rendered", headers={"Accept": "image/png"})
        assert rendered.status_code == 200, rendered.text
        assert image(rendered.content).shape == (40, 48)
        # the missing instance sent later: the series is ingested again, whole, as one volume
        marker = staged.parent / f"{series.series_uid}.ingested"
        marker.unlink()
        fixed = client.post("/dicom-web/studies", content=body([Path(series.paths[3]).read_bytes()]),
                            headers={"Content-Type": TYPE})
        assert fixed.status_code == 200, fixed.text
        keys = _wait_for(store, series.series_uid)
        assert len(keys) == 1
        assert VolumeStore(store, read_only=True).open(keys[0]).shape == (8, 40, 48)
    finally:
        client.close()


def test_stow_statuses_follow_ps3_18(series, tmp_path):
    client = _client(tmp_path / "store")
    data = Path(series.paths[0]).read_bytes()
    try:
        assert client.post("/dicom-web/studies", content=body([data]), headers={"Content-Type": TYPE}).status_code == 200
        none = client.post("/dicom-web/studies", content=body([b"not DICOM" * 50]), headers={"Content-Type": TYPE})
        assert none.status_code == 409
        assert _sequence(none.json(), "00081198")[0]["00081197"]["Value"] == [0xC000]
        other = client.post("/dicom-web/studies/1.2.3.4", content=body([data]), headers={"Content-Type": TYPE})
        assert other.status_code == 409
        assert _sequence(other.json(), "00081198")[0]["00081197"]["Value"] == [0xA900]
        mine = client.post(f"/dicom-web/studies/{series.study_uid}", content=body([data]), headers={"Content-Type": TYPE})
        assert mine.status_code == 200
        assert mine.json()["00081190"]["Value"][0].endswith(f"/studies/{series.study_uid}")
        problem(client.post("/dicom-web/studies", content=data, headers={"Content-Type": "application/dicom"}), 415)
        problem(client.post("/dicom-web/studies", content=body([data]),
                            headers={"Content-Type": f'multipart/related; type="application/dicom+xml"; boundary={BOUNDARY}'}), 415)
        problem(client.post("/dicom-web/studies", content=body([data]), headers={"Content-Type": "multipart/related"}), 400)
        cut = problem(client.post("/dicom-web/studies", content=body([data, data], close=False),
                                  headers={"Content-Type": TYPE}), 400)
        assert "ends" in cut["detail"]
    finally:
        client.close()


def test_stow_body_limit_is_413(series, tmp_path):
    client = _client(tmp_path / "store", max_stow_bytes=2_000)
    try:
        data = Path(series.paths[0]).read_bytes()
        body_ = problem(client.post("/dicom-web/studies", content=body([data]), headers={"Content-Type": TYPE}), 413)
        assert "max_stow_bytes" in body_["detail"]
    finally:
        client.close()
    assert not list((tmp_path / "store" / ".voxelflow" / "received").rglob("*.dcm"))


def test_received_series_are_ingested_after_a_restart(series, tmp_path):
    store = tmp_path / "store"
    client = _client(store, receive_idle_s=3600)  # never idle long enough in this test
    try:
        answer = client.post("/dicom-web/studies", content=body([Path(p).read_bytes() for p in series.paths]),
                             headers={"Content-Type": TYPE})
        assert answer.status_code == 200
    finally:
        client.close()
        client.app.state.service.receiver.close()
    assert VolumeStore(store, read_only=True).keys() == []
    # a new process on the same store: what was acknowledged is ingested
    restarted = _client(store)
    try:
        keys = _wait_for(store, series.series_uid)
        assert VolumeStore(store, read_only=True).open(keys[0]).shape == (8, 40, 48)
    finally:
        restarted.close()
