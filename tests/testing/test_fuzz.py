"""The fuzz harness (voxelflow.testing.fuzz): its mutations, its worker pool, a bounded sample
of cases in the normal run and a million in the ``slow`` one.

Every case runs in a worker process capped at 4 GiB of address space; the right outcome of
decode, scan and ingest is a clean result or a VoxelflowError, anything else a failure.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxelflow.testing import fuzz


@functools.lru_cache(maxsize=1)
def _seed_folder() -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="voxelflow-fuzz-seeds-"))
    fuzz.build_seeds(folder)
    return folder


@functools.lru_cache(maxsize=1)
def _seeds() -> tuple[fuzz.Seed, ...]:
    return tuple(fuzz.load_seeds(_seed_folder()))


def test_seeds_span_the_transfer_syntax_families():
    names = {s.name for s in _seeds()}
    for expected in ("ct-explicit-le", "mr-implicit-le", "ct-explicit-be", "ct-deflated",
                     "ct-rle", "ct-enhanced", "ct-enhanced-rle"):
        assert f"{expected}.dcm" in names
    assert any(name.startswith("pydicom-") for name in names)
    # the JPEG family wherever its encoders are installed
    from voxelflow.testing import available_transfer_syntaxes

    if "jpeg_lossless" in available_transfer_syntaxes():
        assert "ct-enhanced-jpeg-lossless.dcm" in names


def test_element_map_finds_attributes_fragments_and_the_deflated_body():
    seeds = {s.name: s for s in _seeds()}
    native = seeds["ct-explicit-le.dcm"]
    rows = [e for e in native.elements if e.tag == 0x00280010]
    assert len(rows) == 1 and native.data[rows[0].value_pos : rows[0].end] == b"\x10\x00"
    pixels = [e for e in native.elements if e.tag == 0x7FE00010]
    assert pixels and pixels[0].end == len(native.data)
    rle = seeds["ct-enhanced-rle.dcm"]
    fragments = [e for e in rle.elements if e.fragment]
    # the Basic Offset Table, three frames, the sequence delimiter
    assert [e.tag for e in fragments] == [0xFFFEE000] * 4 + [0xFFFEE0DD]
    deflated = seeds["ct-deflated.dcm"]
    assert deflated.body_at is not None
    assert any(e.tag == 0x00280010 for e in deflated.body_elements)
    big = seeds["ct-explicit-be.dcm"]
    assert any(e.tag == 0x00280010 and not e.little for e in big.elements)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, 2**40 - 1))
def test_mutation_is_a_pure_function_of_seed_and_index(seed, index):
    seeds = _seeds()
    data, how = fuzz.mutate(seeds, seed, index)
    assert isinstance(data, bytes)
    assert fuzz.mutate(seeds, seed, index) == (data, how)


def test_mutations_damage_their_seed_in_many_ways():
    seeds = _seeds()
    originals = {s.data for s in seeds}
    made = [fuzz.mutate(seeds, 0, i) for i in range(2000)]
    changed = sum(data not in originals for data, _ in made)
    assert changed > 1900
    kinds = {how.split(" + ")[1] for _, how in made if how.count(" + ") == 2}
    assert {"length", "vr", "transfer_syntax", "pixel_attr", "delete", "duplicate",
            "native_pixels", "fragments", "pixel_attr@body"} <= kinds
    assert len({data for data, _ in made}) > 1900


def test_bounded_sample_has_no_failures(tmp_path):
    # a few hundred cases of every kind: about 5 s on one core
    report = fuzz.run(1500, seed=20261203, jobs=1, out=tmp_path, log=lambda text: None)
    assert report.finished == 1500
    assert not report.failures, json.dumps(report.failures[:3], indent=1)[:6000]
    assert report.decoded > 100 and report.decode_errors > 500 and report.rows > 100
    assert report.rate > 0 and "1500 of 1500 cases" in report.summary()


# a worker that aborts on case 5, hangs on case 9 and raises in decode on case 13
_TRAP_WORKER = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (%(cap)d, %(cap)d))
import os, time
import voxelflow
from voxelflow.testing import fuzz
real_mutate, real_decode = fuzz.mutate, voxelflow.decode
current = [None]
def mutate(seeds, seed, index):
    current[0] = index
    if index == 5:
        os.abort()
    if index == 9:
        time.sleep(600)
    return real_mutate(seeds, seed, index)
def decode(path, **kwargs):
    if current[0] == 13:
        raise TypeError("planted")
    return real_decode(path, **kwargs)
fuzz.mutate, voxelflow.decode = mutate, decode
fuzz._worker_main(sys.argv[1:])
"""


def test_pool_records_crashes_hangs_and_exceptions_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(fuzz, "_WORKER", _TRAP_WORKER)
    monkeypatch.setattr(fuzz, "BATCH", 4)
    report = fuzz.run(20, seed=7, jobs=2, out=tmp_path, timeout=3.0, ingest_every=0,
                      log=lambda text: None)
    found = {f["index"]: f for f in report.failures}
    assert sorted(found) == [5, 9, 13]
    assert found[5]["kind"] == "crash" and "exited -6" in found[5]["why"]
    assert found[9]["kind"] == "timeout" and "no progress" in found[9]["why"]
    assert found[13]["kind"] == "exception"
    assert found[13]["failures"][0][:2] == ["decode", "builtins.TypeError"]
    assert report.finished == 20 and report.respawns == 2
    # each failure's file is the case itself, rebuilt from (seed, index), and named in the log
    seeds = fuzz.load_seeds(_seed_folder())
    for index, failure in found.items():
        assert Path(failure["file"]).read_bytes() == fuzz.mutate(seeds, 7, index)[0]
        assert failure["replay"].endswith(f"--seed 7 --replay {index}")
    lines = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == [5, 9, 13]


# a worker whose stdout holds every line until the batch's "done": the pool gets a case's
# exception and "done" in one read, as a loaded machine can deliver them
_BURST_WORKER = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (%(cap)d, %(cap)d))
import io
import voxelflow
from voxelflow.testing import fuzz
current = [None]
real_mutate, real_decode = fuzz.mutate, voxelflow.decode
def mutate(seeds, seed, index):
    current[0] = index
    return real_mutate(seeds, seed, index)
def decode(path, **kwargs):
    if current[0] == 2:
        raise TypeError("planted")
    return real_decode(path, **kwargs)
class Burst(io.StringIO):
    def flush(self):
        text = self.getvalue()
        if '"done"' in text:
            sys.__stdout__.write(text)
            sys.__stdout__.flush()
            self.seek(0)
            self.truncate()
fuzz.mutate, voxelflow.decode = mutate, decode
sys.stdout = Burst()
fuzz._worker_main(sys.argv[1:])
"""


def test_pool_reads_an_exception_and_done_sent_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(fuzz, "_WORKER", _BURST_WORKER)
    monkeypatch.setattr(fuzz, "BATCH", 4)
    report = fuzz.run(8, seed=7, jobs=1, out=tmp_path, timeout=3.0, ingest_every=0,
                      log=lambda text: None)
    assert [(f["index"], f["kind"]) for f in report.failures] == [(2, "exception")]
    assert report.finished == 8 and report.respawns == 0

def test_command_line_exit_codes(tmp_path):
    env = dict(os.environ)
    clean = subprocess.run(
        [sys.executable, "-m", "voxelflow.testing.fuzz", "--count", "40", "--seed", "3",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "40 of 40 cases" in clean.stdout and "cases/s" in clean.stdout
    replay = subprocess.run(
        [sys.executable, "-m", "voxelflow.testing.fuzz", "--seed", "3", "--replay", "11"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert replay.returncode == 0 and "failures: 0" in replay.stdout, replay.stdout + replay.stderr


# cases that once made pydicom's fallback read a damaged length in one call, allocating up to
# 4.2 GiB before it failed (a MemoryError turned into a DecodeError): with its reads bounded
# by the file, they fail with no allocation worth the name, under a 1 GiB cap too
_SMALL_CAP_CHILD = textwrap.dedent(
    """
    import json, resource, sys, warnings
    warnings.simplefilter("ignore")
    import voxelflow
    from voxelflow.errors import VoxelflowError
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    out = []
    for path in sys.argv[1:]:
        try:
            voxelflow.decode(path)
            decoded = "ok"
        except VoxelflowError as exc:
            decoded = str(exc)
        index = voxelflow.scan(path, workers=1)
        out.append([decoded, [e.reason for e in index.errors]])
    print(json.dumps(out))
    """
)


def test_damaged_lengths_in_the_pydicom_fallback_allocate_nothing_big(tmp_path):
    seeds = fuzz.load_seeds(_seed_folder())
    paths = []
    for index in (2, 11, 265):
        path = tmp_path / f"case-{index}.dcm"
        path.write_bytes(fuzz.mutate(seeds, 1, index)[0])
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", _SMALL_CAP_CHILD, *paths], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MemoryError" not in proc.stdout, proc.stdout


@pytest.mark.slow
def test_one_million_mutated_files(tmp_path):
    jobs = max(1, min(4, os.cpu_count() or 1))
    report = fuzz.run(1_000_000, seed=13, jobs=jobs, out=tmp_path)
    print(report.summary())
    assert report.finished == 1_000_000
    assert not report.failures, json.dumps(report.failures[:5], indent=1)[:10000]


# (run seed, case) of every failure the fuzzer found in the ingest planner, each fixed where it
# lived (voxelflow.dicom.series): a geometry ParameterError, numpy's LinAlgError and matmul
# ValueError, pydicom's lazy struct.error / NotImplementedError / ValueError
FOUND = [(13, 1664), (13, 4933), (13, 16752), (5, 1964), (6, 2480), (13, 403864), (13, 491865),
         (13, 852881)]

_FOUND_CHILD = textwrap.dedent(
    """
    import json, resource, sys, tempfile, warnings
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    warnings.simplefilter("ignore")
    from voxelflow.testing import fuzz
    seeds = fuzz.load_seeds(sys.argv[1])
    work = tempfile.mkdtemp()
    out = []
    for seed, index in json.loads(sys.argv[2]):
        path = f"{work}/case.dcm"
        with open(path, "wb") as f:
            f.write(fuzz.mutate(seeds, seed, index)[0])
        failures, _, _ = fuzz._check_case(path, f"{work}/store", ingest=True, palette=False)
        out.append([seed, index, [f[:3] for f in failures]])
    print(json.dumps(out))
    """
)


def test_cases_the_fuzzer_found_now_ingest_cleanly():
    proc = subprocess.run([sys.executable, "-c", _FOUND_CHILD, str(_seed_folder()),
                           json.dumps(FOUND)], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r for r in results if r[2]] == []
