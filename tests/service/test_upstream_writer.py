"""The retrieval's part writer on its own (no archive): parts that a request waits for reach
it as they are received, before the parts in front of them are written; receiving runs at
most the read-ahead in front of writing; what the staging check refuses is never handed over."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from voxelflow.errors import InstanceError
from voxelflow.service.staging import Staging
from voxelflow.service.upstream import _PartWriter
from voxelflow.store import VolumeStore
from voxelflow.testing import write_series

CHUNK = 4096


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("writer") / "dicom", shape=(12, 32, 40), seed=5)


class Watch:
    """Wants `sops` until each has arrived; notes what was staged when each arrived."""

    def __init__(self, sops, staging: Staging, series_uid: str) -> None:
        self.sops = list(sops)
        self.staging = staging
        self.series_uid = series_uid
        self.got: list[tuple[str, bytes, set[str]]] = []

    def wanted(self):
        return tuple(self.sops)

    def arrived(self, sop: str, data: bytes) -> None:
        self.got.append((sop, data, self.staging.sops(self.series_uid)))
        if sop in self.sops:
            self.sops.remove(sop)


def _feed(writer: _PartWriter, datas: list[bytes]) -> None:
    size = 0
    for data in datas:
        writer.put("part", {}, size)
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            size += len(chunk)
            writer.put("data", chunk, size)
        writer.put("end", None, size)


def _run(writer: _PartWriter, datas: list[bytes]) -> None:
    def work() -> None:
        try:
            _feed(writer, datas)
            writer.finish()
        finally:
            writer.close()

    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _catch(work, errors), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the writer did not finish"
    if errors:
        raise errors[0]


def _catch(fn, errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
        errors.append(exc)


def test_a_wanted_part_is_handed_over_before_anything_is_written(series, tmp_path):
    staging = Staging(VolumeStore(tmp_path / "store"), "pulls", durable=False)
    datas = [Path(p).read_bytes() for p in series.paths]
    middle = series.sop_uids[6]
    # a prefix of another UID and a UID of no instance are only candidates, never handed over
    watch = Watch([middle, series.sop_uids[3][:-1], "1.2.3.4"], staging, series.series_uid)
    staged: list[str] = []
    writer = _PartWriter(staging, series.series_uid, lambda s, n: staged.append(s.sop), watch)
    _run(writer, datas)
    arrived = [(sop, data, before) for sop, data, before in watch.got if sop == middle]
    assert len(arrived) == 1
    _, data, before = arrived[0]
    assert data == datas[series.sop_uids.index(middle)]
    assert before == set(), "writing waits while a request waits for a part"
    assert all(sop in series.sop_uids for sop, _, _ in watch.got)
    assert sorted(staged) == sorted(series.sop_uids) and staging.sops(series.series_uid) == set(series.sop_uids)


def test_receiving_runs_at_most_the_read_ahead_in_front_of_writing(series, tmp_path):
    staging = Staging(VolumeStore(tmp_path / "store"), "pulls", durable=False)
    datas = [Path(p).read_bytes() for p in series.paths]
    watch = Watch(["1.2.3.4"], staging, series.series_uid)  # waited for, and never coming
    writer = _PartWriter(staging, series.series_uid, None, watch, read_ahead=3 * CHUNK)
    most = [0]
    put = writer.put

    def tracked(event, value, size):
        put(event, value, size)
        most[0] = max(most[0], writer._ahead)

    writer.put = tracked
    _run(writer, datas)
    assert 0 < most[0] <= 4 * CHUNK
    assert staging.sops(series.series_uid) == set(series.sop_uids)


def test_a_wanted_part_the_check_refuses_is_not_handed_over(series, tmp_path):
    staging = Staging(VolumeStore(tmp_path / "store"), "pulls", durable=False)
    datas = [Path(p).read_bytes() for p in series.paths]
    broken = datas[2][: len(datas[2]) - 500]  # its pixel data cut short
    watch = Watch([series.sop_uids[2]], staging, series.series_uid)
    writer = _PartWriter(staging, series.series_uid, None, watch)
    with pytest.raises(InstanceError, match="Pixel Data length"):
        _run(writer, [datas[0], datas[1], broken, datas[3]])
    assert watch.got == []
    assert staging.sops(series.series_uid) == set(series.sop_uids[:2])


def test_what_no_uid_can_be_is_never_looked_for(series, tmp_path):
    """A request's path names any text: an empty or non-ASCII "UID" is no candidate, does not
    hold writing, and does not fail the retrieval."""
    staging = Staging(VolumeStore(tmp_path / "store"), "pulls", durable=False)
    watch = Watch(["", "1.2.\u00e9"], staging, series.series_uid)
    writer = _PartWriter(staging, series.series_uid, None, watch)
    _run(writer, [Path(p).read_bytes() for p in series.paths])
    assert watch.got == [] and not writer._hold
    assert staging.sops(series.series_uid) == set(series.sop_uids)
