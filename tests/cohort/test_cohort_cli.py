"""`voxelflow cohort` as a user runs it: its own local cluster of worker processes, exit codes,
and a run killed with SIGKILL, then resumed, ending as one uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from voxelflow import VolumeStore
from voxelflow.cohort.manifest import iter_rows
from voxelflow.testing.cohort import write_cohort

#: What must agree between two runs of one cohort (timings, tries and workers may differ).
SAME = ("key", "study_uid", "series_uid", "files", "slices", "shape", "status", "findings",
        "error_class", "error_message", "source_digest", "pipeline", "bytes", "outputs", "version")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cli") / "src")


def _cohort(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "voxelflow", "cohort", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def _outputs(store):
    """Every output file under the store's cohort folder and every volume, as comparable values."""
    store = VolumeStore(store)
    files = {}
    for kind in ("thumbnails", "qa", "nifti"):
        for path in sorted((store.path / "cohort" / kind).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(store.path))] = path.read_bytes()
    volumes = {k: (store.open(k).to_numpy(), store.open(k).affine) for k in store}
    return files, volumes


def _manifest(store):
    return [{c: r[c] for c in SAME} for r in iter_rows(os.path.join(store, "cohort", "manifest.sqlite"))]


def test_a_cohort_run_reports_failures_with_exit_code_3(cohort, tmp_path):
    code, out, err = _finish(_cohort(cohort.root, "--store", tmp_path / "out", "--workers", "2"))
    assert code == 3, out + err
    assert "dashboard http://127.0.0.1:" in err
    assert "cohort: 6 done, 0 failed, 0 quarantined" in out
    assert "volumes/s" in out and "MB/s" in out
    for path in cohort.corrupt:
        assert f"FAILED {path}: FileError:" in out
    assert "Traceback" not in err
    report = json.loads((tmp_path / "out" / "cohort" / "report.json").read_text())
    assert report["counts"]["done"] == 6


def test_bad_arguments_fail_before_anything_is_made(cohort, tmp_path):
    (tmp_path / "p.yaml").write_text("outputs: {thumbnail: maybe}\n")
    code, _, err = _finish(_cohort(cohort.root, "--store", tmp_path / "out", "--pipeline", tmp_path / "p.yaml"))
    assert code == 2 and "outputs.thumbnail: must be true or false" in err and "Traceback" not in err
    code, _, err = _finish(_cohort(tmp_path / "missing", "--store", tmp_path / "out"))
    assert code == 2 and "missing: no such file or folder" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no DICOM here")
    code, out, err = _finish(_cohort(tmp_path / "empty", "--store", tmp_path / "out", "--workers", "1"))
    assert code == 2 and "no DICOM image found" in err, out + err
    assert not (tmp_path / "out").exists()


def test_a_killed_run_resumes_to_the_outputs_of_an_uninterrupted_one(cohort, tmp_path):
    pipeline = tmp_path / "pipeline.json"
    pipeline.write_text(json.dumps({
        "steps": [{"call": "voxelflow.testing.cohort:slow_down", "with": {"seconds": 0.4}}],
        "outputs": {"nifti": True},
    }))
    whole = tmp_path / "whole"
    code, out, err = _finish(_cohort(cohort.root, "--store", whole, "--workers", "2", "--pipeline", pipeline))
    assert code == 3, out + err

    killed = tmp_path / "killed"
    process = _cohort(cohort.root, "--store", killed, "--workers", "2", "--pipeline", pipeline,
                      start_new_session=True)
    manifest = killed / "cohort" / "manifest.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if manifest.exists():
            try:
                done = [r for r in iter_rows(manifest) if r["status"] == "done"]
            except sqlite3.Error:  # the run is still creating its tables
                done = []
            if len(done) >= 2:
                break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # the client: no handler runs, no cleanup
    process.communicate(timeout=30)
    rows = list(iter_rows(manifest))
    assert 2 <= sum(r["status"] == "done" for r in rows) < 6, "the kill came too late to test a resume"

    # its worker processes go down with it (they watch the client's cluster)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the killed client by 60 s")

    code, out, err = _finish(_cohort(cohort.root, "--store", killed, "--workers", "2", "--pipeline", pipeline))
    assert code == 3, out + err
    assert "already done" in out
    assert _manifest(killed) == _manifest(whole)
    files_killed, volumes_killed = _outputs(killed)
    files_whole, volumes_whole = _outputs(whole)
    assert files_killed.keys() == files_whole.keys()
    for name in files_whole:
        if name.endswith(".nii.gz"):  # gzip stamps the time: compare the images
            import nibabel as nib

            a, b = nib.load(killed / name), nib.load(whole / name)
            np.testing.assert_array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj))
            np.testing.assert_array_equal(a.affine, b.affine)
        else:
            assert files_killed[name] == files_whole[name], name
    assert volumes_killed.keys() == volumes_whole.keys()
    for key, (array, affine) in volumes_whole.items():
        np.testing.assert_array_equal(volumes_killed[key][0], array)
        np.testing.assert_array_equal(volumes_killed[key][1], affine)
    # nothing half-written is left where outputs are looked for
    leftovers = [p for p in (killed / "cohort").rglob(".*") if p.is_file()]
    assert not leftovers, leftovers
