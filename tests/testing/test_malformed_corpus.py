"""The malformed-file corpus (voxelflow.testing.malformed) through decode, scan and ingest.

Every file is decoded and scanned in a child process capped at 4 GiB of address space, where
a crash, a signal or an unbounded allocation shows up as a failed case instead of taking the
test runner down. The cases are batched into a few children (one per case would spend most of
the time importing); a child that dies or stalls is replaced by a fresh one for the cases it
had not reached, and the case it was working on is reported as the culprit.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from voxelflow.errors import StoreError, VoxelflowError
from voxelflow.testing.malformed import CASES, STORE_CASES, MalformedCase

ADDRESS_SPACE = 4 << 30  # issue 13: no class may need more
CASE_TIMEOUT = 30.0  # seconds without progress before a child is called hung
BATCHES = 2

# The child: cap the address space before importing anything big, then decode and scan each
# file, writing one JSON line when a case starts and one when it ends (flushed: a crash
# leaves the culprit's "start" line without its result).
_CHILD = r"""
import json, resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (%(cap)d, %(cap)d))
import voxelflow
from voxelflow.errors import VoxelflowError

def name_of(exc):
    return f"{type(exc).__module__}.{type(exc).__qualname__}"

specs = json.loads(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
for name, path, kwargs in specs:
    out.write(json.dumps({"name": name, "phase": "start"}) + "\n")
    out.flush()
    decode = {"raised": None, "message": "", "voxelflow": False, "warnings": [], "shape": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            decode["shape"] = list(voxelflow.decode(path, **kwargs).shape)
        except BaseException as exc:  # noqa: BLE001 - the parent judges the type
            decode.update(raised=name_of(exc), message=str(exc),
                          voxelflow=isinstance(exc, VoxelflowError))
    decode["warnings"] = [[name_of(w.message), str(w.message)] for w in caught]
    scan = {"raised": None, "where": None, "reason": "", "invalid": []}
    try:
        index = voxelflow.scan(path, workers=1)
        for where in ("errors", "skipped", "no_pixels"):
            issues = getattr(index, where)
            if issues:
                scan.update(where=where.rstrip("s") if where != "no_pixels" else where,
                            reason=issues[0].reason)
        if index.rows:
            scan.update(where="row", invalid=list(index.rows[0].invalid))
    except BaseException as exc:  # noqa: BLE001
        scan.update(raised=name_of(exc), reason=str(exc))
    out.write(json.dumps({"name": name, "phase": "done", "decode": decode, "scan": scan}) + "\n")
    out.flush()
"""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _run_batch(specs: list[list], folder: Path, tag: str, results: dict, *,
               child: str = _CHILD, timeout: float = CASE_TIMEOUT) -> None:
    """Run `specs` in children until every case has a result (or is blamed for a crash)."""
    remaining = list(specs)
    attempt = 0
    while remaining:
        attempt += 1
        lines_path = folder / f"results-{tag}-{attempt}.jsonl"
        lines_path.touch()
        err_path = folder / f"stderr-{tag}-{attempt}.txt"
        with err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", child % {"cap": ADDRESS_SPACE}, json.dumps(remaining),
                 str(lines_path)],
                stdout=subprocess.DEVNULL, stderr=err,
            )
            seen = 0
            last = time.monotonic()
            hung = False
            while proc.poll() is None:
                time.sleep(0.05)
                count = len(lines_path.read_text().splitlines())
                if count != seen:
                    seen, last = count, time.monotonic()
                elif time.monotonic() - last > timeout:
                    proc.kill()
                    proc.wait()
                    hung = True
        started = None
        for line in lines_path.read_text().splitlines():
            record = json.loads(line)
            if record["phase"] == "start":
                started = record["name"]
            else:
                results[record["name"]] = record
                started = None
        if started is not None:
            stderr = err_path.read_text(errors="replace")[-2000:]
            results[started] = {"name": started, "phase": "failed",
                                "why": "hung" if hung else f"child exited {proc.returncode}",
                                "stderr": stderr}
        before = len(remaining)
        remaining = [s for s in remaining if s[0] not in results]
        if len(remaining) == before:  # the child died before its first case (import failed?)
            stderr = err_path.read_text(errors="replace")[-2000:]
            for spec in remaining:
                results[spec[0]] = {"name": spec[0], "phase": "failed",
                                    "why": f"child exited {proc.returncode}", "stderr": stderr}
            return


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """{name: path} of every case's file, in one folder."""
    folder = tmp_path_factory.mktemp("malformed")
    return {case.name: case.make(folder) for case in CASES}


@pytest.fixture(scope="module")
def results(corpus, tmp_path_factory):
    """{name: what the child saw} for every case, decoded and scanned under the 4 GiB cap."""
    work = tmp_path_factory.mktemp("children")
    specs = [[case.name, str(corpus[case.name]), dict(case.decode_kwargs)] for case in CASES]
    found: dict[str, dict] = {}
    threads = [threading.Thread(target=_run_batch, args=(specs[i::BATCHES], work, str(i), found))
               for i in range(BATCHES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def test_harness_blames_the_case_that_kills_or_stalls_its_child(tmp_path):
    # a crash (SIGABRT) and a hang are told apart, blamed on their cases, and the cases
    # after them still run in a fresh child
    trap = _CHILD.replace(
        "    decode = {", "    import os, time\n"
        "    if name == 'abort':\n        os.abort()\n"
        "    if name == 'hang':\n        time.sleep(60)\n"
        "    decode = {", 1)
    specs = [[name, str(tmp_path / "missing.dcm"), {}] for name in ("a", "abort", "b", "hang", "c")]
    found: dict[str, dict] = {}
    _run_batch(specs, tmp_path, "t", found, child=trap, timeout=3.0)
    assert {name: found[name]["phase"] for name in found} == {
        "a": "done", "abort": "failed", "b": "done", "hang": "failed", "c": "done"}
    assert "exited -6" in found["abort"]["why"] and found["hang"]["why"] == "hung"
    assert found["a"]["decode"]["raised"] == "voxelflow.errors.DecodeError"


def test_corpus_is_broad_and_stable():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    assert len(CASES) >= 30
    groups = {case.klass for case in CASES}
    assert {"container", "truncation", "sequences-lengths", "pixel-module", "pixel-data",
            "encapsulation", "rle", "jpeg", "deflate", "lut-rescale"} <= groups
    for case in CASES:
        assert re.fullmatch(r"[a-z0-9-]+", case.name), case.name
        error = case.expect.error
        assert error is None or (issubclass(error, VoxelflowError) and error is not VoxelflowError)
        assert case.expect.scan in ("error", "skipped", "row")


def test_damaged_store_classes_are_part_of_the_corpus():
    # tests/store/test_damaged.py applies each to every read path
    names = [case.name for case in STORE_CASES]
    assert len(names) == len(set(names)) and len(STORE_CASES) >= 30
    assert {case.klass for case in STORE_CASES} == {"store-chunk", "store-metadata"}
    for case in STORE_CASES:
        assert issubclass(case.error, StoreError) and case.error is not VoxelflowError
        re.compile(case.match)


def test_cases_write_the_same_bytes_each_time(tmp_path):
    for case in CASES[:3] + CASES[-3:]:
        assert case.make(tmp_path / "a").read_bytes() == case.make(tmp_path / "b").read_bytes()


def _series_uid(path: Path) -> str:
    import warnings

    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            return str(ds.get("SeriesInstanceUID", "") or "")
        except Exception:  # noqa: BLE001 - damaged on purpose: no series to compare
            return ""


def test_every_case_is_its_own_series(corpus):
    # cases sharing a series would be grouped by ingest: one failure would hide the other
    uids: dict[str, str] = {}
    for name, path in corpus.items():
        uid = _series_uid(path)
        if uid:
            assert uid not in uids, f"{name} shares its series with {uids[uid]}"
            uids[uid] = name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_malformed_file(case: MalformedCase, corpus, results):
    path = str(corpus[case.name])
    result = results.get(case.name)
    assert result is not None, "no result: the batch never reached this case"
    assert result["phase"] == "done", (
        f"the child process {result['why']} on this case (a crash, a signal, the 4 GiB cap or "
        f"a hang):\n{result['stderr']}"
    )
    expect = case.expect
    decode = result["decode"]
    if expect.error is None:
        assert decode["raised"] is None, f"decode raised {decode['raised']}: {decode['message']}"
        if expect.warning is not None:
            messages = [text for kind, text in decode["warnings"]
                        if kind == _qualified(expect.warning)]
            assert messages, f"no {expect.warning.__name__}: {decode['warnings']}"
            assert any(re.search(expect.match, text, re.IGNORECASE) for text in messages), messages
    else:
        assert decode["raised"] == _qualified(expect.error), (
            f"decode raised {decode['raised']} ({decode['message']!r}), expected "
            f"{expect.error.__name__}"
        )
        assert decode["voxelflow"]
        assert re.search(expect.match, decode["message"], re.IGNORECASE | re.DOTALL), decode["message"]
        assert path in decode["message"], "the message must name the file"

    scan = result["scan"]
    assert scan["raised"] is None, f"scan raised {scan['raised']}: {scan['reason']}"
    assert scan["where"] == expect.scan, scan
    if expect.scan_match:
        assert re.search(expect.scan_match, scan["reason"], re.IGNORECASE), scan["reason"]
    if expect.scan_invalid is not None:
        assert expect.scan_invalid in scan["invalid"], scan


# The batch: a good phantom series among every malformed file, ingested in a child process.
_INGEST_CHILD = r"""
import json, resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (%(cap)d, %(cap)d))
import numpy as np
import voxelflow
from voxelflow.ingest import ingest
from voxelflow.store import VolumeStore

warnings.simplefilter("ignore")
folder, store_path, truth_path = sys.argv[1:4]
report = ingest(folder, store_path)
store = VolumeStore(store_path)
truth = np.load(truth_path)
volumes = []
for v in report.volumes:
    same = None
    if v.status == "written":
        data = store.open(v.key).to_numpy()
        same = bool(data.shape == truth.shape and np.array_equal(data, truth))
    volumes.append([v.key, v.status, same])
print(json.dumps({"volumes": volumes, "failures": report.failures,
                  "non_dicom": report.non_dicom}))
"""


def test_ingest_batch_of_good_and_malformed_files(tmp_path):
    import numpy as np

    from voxelflow.testing import write_series

    folder = tmp_path / "in"
    info = write_series(folder / "good", shape=(4, 16, 16), modality="MR", noise=False)
    bad = {case.name: case.make(folder / "bad") for case in CASES}
    np.save(tmp_path / "truth.npy", info.volume)
    proc = subprocess.run(
        [sys.executable, "-c", _INGEST_CHILD % {"cap": ADDRESS_SPACE}, str(folder),
         str(tmp_path / "store"), str(tmp_path / "truth.npy")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    good = [v for v in report["volumes"] if v[2]]
    assert len(good) == 1, report["volumes"]  # the good series, voxel for voxel
    failures = " ".join(f"{what} {reason}" for what, reason in report["failures"])
    skipped = [case for case in CASES if case.expect.scan == "skipped"]
    assert report["non_dicom"] == len(skipped)
    for case in CASES:
        if case.expect.error is not None and case.expect.scan != "skipped" \
                and not case.decode_kwargs:
            assert str(bad[case.name]) in failures, f"{case.name} not reported as a failure"
