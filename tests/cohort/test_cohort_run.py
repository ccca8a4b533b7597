"""voxelflow.cohort.run on a real local cluster of worker processes: good series, corrupt files,
a duplicate series, a 4-D series, crashing and flaky steps, a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

from voxelflow import VolumeStore
from voxelflow.cohort import Manifest, run
from voxelflow.errors import ParameterError
from voxelflow.ingest import ingest
from voxelflow.testing.cohort import CRASH_MARKER, write_cohort

CRASH = "voxelflow.testing.cohort:crash_if_marked"
FLAKY = "voxelflow.testing.cohort:fail_io_first"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    return write_cohort(root / "src", marked=[CRASH_MARKER, "FLAKY"])


def _rows(store):
    with Manifest(VolumeStore(store).path / "cohort" / "manifest.sqlite") as m:
        return {r["key"]: r for r in m.rows()}


def test_a_mixed_cohort_ingests_every_good_series_like_ingest_and_reports_the_rest(cohort, client, tmp_path):
    report = run(cohort.root, tmp_path / "out", client=client)
    store = VolumeStore(tmp_path / "out")
    rows = _rows(tmp_path / "out")

    # every good series (and the marked ones: no crash step here) is one done volume
    by_series = {r["series_uid"]: r for r in rows.values() if r["status"] == "done"}
    for uid, shape in cohort.good.items():
        assert uid in by_series, uid
        assert tuple(by_series[uid]["shape"]) == shape
    # the same volumes, voxel for voxel and affine, as ingest in one process
    reference = VolumeStore(tmp_path / "ref")
    ingest(cohort.root, reference)
    assert sorted(store.keys()) == sorted(reference.keys())
    for key in reference:
        a, b = store.open(key), reference.open(key)
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
        np.testing.assert_array_equal(a.affine, b.affine)

    # the 4-D series is one (t, z, y, x) volume; the duplicated folder a finding with its count
    four_d = by_series[cohort.four_d]
    assert four_d["shape"] == [3, 6, 48, 48]
    duplicate = by_series[cohort.duplicate]
    (finding,) = [f for f in duplicate["findings"] if f["code"] == "duplicate_instances"]
    assert finding["count"] == 12

    # corrupt files: recorded with their reason, the rest continued
    with Manifest(store.path / "cohort" / "manifest.sqlite") as m:
        errors = dict(m.file_errors())
    for path in cohort.corrupt:
        assert str(path) in errors
    # the series that lost a file to truncation: its readable slices are a volume, the lost file
    # a failure of the run (exit code 3 from the CLI), not silence
    assert by_series[cohort.short]["shape"] == [3, 16, 16]
    assert report.partial and {w for w, _, _ in report.failures} >= {str(p) for p in cohort.corrupt}

    # outputs: a thumbnail PNG and a QA record per volume, named in the row
    from PIL import Image

    for row in by_series.values():
        outputs = row["outputs"]
        with Image.open(store.path / outputs["thumbnail"]) as image:
            assert image.mode == "L" and max(image.size) <= 256
            assert np.ptp(np.asarray(image)) > 50  # windowed, not blank
        qa = json.loads((store.path / outputs["qa"]).read_text())
        assert qa["key"] == row["key"] and qa["shape"] == row["shape"]
        assert qa["findings"] == row["findings"]
        assert row["version"] and row["pipeline"] and row["seconds"] > 0 and row["peak_rss"] > 0
    assert report.counts["done"] == len(by_series)


def test_a_rerun_skips_what_is_done(cohort, client, tmp_path):
    first = run(cohort.root, tmp_path / "out", client=client)
    assert first.processed == first.counts["done"]
    stamps = {k: r["finished"] for k, r in _rows(tmp_path / "out").items()}
    again = run(cohort.root, tmp_path / "out", client=client)
    assert again.processed == 0 and again.skipped == first.counts["done"]
    assert {k: r["finished"] for k, r in _rows(tmp_path / "out").items()} == stamps
    # a changed pipeline redoes the volumes
    third = run(cohort.root, tmp_path / "out", {"outputs": {"thumbnail_size": 64}}, client=client)
    assert third.processed == first.counts["done"]


def test_a_step_that_crashes_its_worker_is_quarantined_and_the_rest_are_done(cohort, client, tmp_path):
    pids = set(client.run(os.getpid).values())
    report = run(cohort.root, tmp_path / "out", {"steps": [CRASH]}, client=client)
    rows = _rows(tmp_path / "out")
    (crashed,) = [r for r in rows.values() if r["series_uid"] in
                  [u for u, m in cohort.marked.items() if m == CRASH_MARKER]]
    assert crashed["status"] == "quarantined"
    assert crashed["error_class"] == "WorkerDied" and crashed["tries"] == 3
    assert "quarantined at faults.max_tries = 3" in crashed["error_message"]
    done = [r for r in rows.values() if r["status"] == "done"]
    assert len(done) == len(cohort.good) + len(cohort.marked) + 1 - 1  # + the short series
    assert set(client.run(os.getpid).values()) != pids  # its workers really died
    assert report.counts["quarantined"] == 1
    assert not VolumeStore(tmp_path / "out").__contains__(crashed["key"])

    # a re-run leaves it quarantined; retry_quarantined runs it again (and it crashes again)
    again = run(cohort.root, tmp_path / "out", {"steps": [CRASH]}, client=client)
    assert again.processed == 0 and any(w == crashed["key"] for w, _, _ in again.failures)
    retried = run(cohort.root, tmp_path / "out", {"steps": [CRASH]}, client=client, retry_quarantined=True)
    assert retried.processed == 1 and _rows(tmp_path / "out")[crashed["key"]]["status"] == "quarantined"


def test_transient_io_errors_are_retried_with_backoff(cohort, client, tmp_path):
    flaky = next(u for u, m in cohort.marked.items() if m == "FLAKY")
    step = {"call": FLAKY, "with": {"marker": "FLAKY", "times": 2}}
    run(cohort.root, tmp_path / "out", {"steps": [step], "faults": {"io_backoff_s": 0.01}}, client=client)
    (row,) = [r for r in _rows(tmp_path / "out").values() if r["series_uid"] == flaky]
    assert row["status"] == "done" and row["io_retries"] == 2

    # past the retries it fails with the I/O error named, and nothing of it is stored
    step["with"]["times"] = 5
    run(cohort.root, tmp_path / "again", {"steps": [step], "faults": {"io_backoff_s": 0.01}}, client=client)
    (row,) = [r for r in _rows(tmp_path / "again").values() if r["series_uid"] == flaky]
    assert row["status"] == "failed" and row["error_class"] == "OSError" and row["io_retries"] == 3
    assert "Input/output error" in row["error_message"]
    assert row["key"] not in VolumeStore(tmp_path / "again")


def test_a_worker_killed_mid_run_loses_no_good_volume(cohort, client, tmp_path):
    slow = {"call": "voxelflow.testing.cohort:slow_down", "with": {"seconds": 0.6}}
    killed = []

    def kill_one_worker():
        # once the run is under way (its first volume written), SIGKILL a worker process
        manifest = tmp_path / "out" / "cohort" / "manifest.sqlite"
        for _ in range(600):
            if manifest.exists() and any(r["status"] == "done" for r in _rows(tmp_path / "out").values()):
                break
            threading.Event().wait(0.05)
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    report = run(cohort.root, tmp_path / "out", {"steps": [slow]}, client=client)
    killer.join()
    assert killed
    rows = _rows(tmp_path / "out")
    assert report.counts["done"] == len(cohort.good) + len(cohort.marked) + 1  # + the short series
    assert report.counts["failed"] == report.counts["quarantined"] == 0
    store = VolumeStore(tmp_path / "out")
    for row in rows.values():
        assert row["key"] in store
        store.verify(row["key"])


def test_processing_steps_and_nifti_match_the_library_calls(cohort, client, tmp_path):
    import nibabel as nib

    from voxelflow import reorient, resample
    from voxelflow.cohort import Crop
    from voxelflow.cohort.tasks import crop

    pipeline = {"resample": {"spacing": 1.5}, "reorient": "RAS", "crop": {"threshold": -500, "margin_mm": 3},
                "outputs": {"nifti": True, "thumbnail_size": 64}}
    run(cohort.root, tmp_path / "out", pipeline, client=client)
    store = VolumeStore(tmp_path / "out")
    reference = VolumeStore(tmp_path / "ref")
    ingest(cohort.root, reference)
    ct = next(r for r in _rows(tmp_path / "out").values() if r["series_uid"] == cohort.duplicate)
    resampled = reorient(resample(reference.open(ct["key"]), spacing=1.5), "RAS")
    expected, note = crop(resampled, Crop(threshold=-500, margin_mm=3))
    assert note is None and expected.shape != resampled.shape  # the crop cut air away
    got = store.open(ct["key"])
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    np.testing.assert_allclose(got.affine, expected.affine, atol=1e-9)
    image = nib.load(store.path / ct["outputs"]["nifti"])
    assert image.shape == got.shape[::-1]
    assert (store.path / ct["outputs"]["nifti"]).with_suffix("").with_suffix(".json").is_file()


def test_the_library_never_starts_a_cluster(cohort, tmp_path):
    with pytest.raises(ParameterError, match="no dask.distributed client"):
        run(cohort.root, tmp_path / "out")
