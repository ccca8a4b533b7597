"""Philips MR values against the dcm2niix wheel: precise floating-point values from the private
MR Scale Slope (2005,100E) by default (dcm2niix ``-p y``), display values on request (``-p n``).

Where dcm2niix itself is wrong the test says so and checks the stronger claim: with Scale Slopes
that differ between slices, dcm2niix (v1.0.2026) applies one slice's factor to every slice of a
classic series, and falls back to display values for an enhanced one; voxelflow applies each
slice's own factor, which the tests check against the ground truth and against dcm2niix's
display values divided, slice by slice, by RS * SS.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings

import nibabel as nib
import numpy as np
import pytest

from voxelflow.dicom.scan import scan
from voxelflow.dicom.series import plan_volumes
from voxelflow.errors import ParameterError
from voxelflow.ingest import convert, ingest
from voxelflow.store import VolumeStore
from voxelflow.testing.philips import write_philips_series

# bits_stored=10 makes the phantom's Rescale Slope 2, so display and precise values differ
OPTIONS = {"bits_stored": 10, "shape": (6, 24, 24)}
SLOPES = [0.01, 0.02, 0.015, 0.01, 0.03, 0.0125]


def _dcm2niix(src, out, precise):
    dcm2niix = shutil.which("dcm2niix")
    assert dcm2niix, "dcm2niix (PyPI package dcm2niix) is a test dependency"
    out.mkdir()
    subprocess.run([dcm2niix, "-z", "n", "-b", "n", "-p", "y" if precise else "n", "-o", str(out), "-f", "ref", str(src)],
                   check=True, capture_output=True, timeout=120)
    (ref,) = out.glob("*.nii")
    return _canonical(ref)


def _canonical(path):
    image = nib.as_closest_canonical(nib.load(path))
    return image.affine, image.get_fdata()


def _ours(src, out, scaling="precise"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = convert(src, out, sidecar=False, philips_scaling=scaling)
    assert not report.failures, report.table()
    (volume,) = report.volumes
    return (*_canonical(volume.output), volume)


def _float32_close(a, b):
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6 * np.abs(b).max())


@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
@pytest.mark.parametrize("precise", [True, False], ids=["precise", "display"])
def test_values_agree_with_dcm2niix(tmp_path, enhanced, precise):
    info = write_philips_series(tmp_path / "dicom", enhanced=enhanced, **OPTIONS)
    ref_affine, ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref", precise)
    affine, data, volume = _ours(tmp_path / "dicom", tmp_path / "ours", "precise" if precise else "display")
    np.testing.assert_allclose(affine, ref_affine, atol=1e-3)
    _float32_close(data, ref)
    truth = info.precise_values() if precise else info.display_values()
    # our (z, y, x) against the canonical (x, y, z): compare sorted values of each slice
    assert np.allclose(np.sort(data.reshape(-1)), np.sort(truth.reshape(-1)), rtol=1e-5)
    assert ("philips_precise" in volume.findings) == precise
    assert ("philips_display" in volume.findings) == (not precise)
    if precise:  # display and precise values differ by 1 / (RS * SS) = 40 here
        assert np.abs(ref).max() > 10 * np.abs(info.display_values()).max()


def _slices(data):
    """(z, values) of a canonical (x, y, z) array: each slice's sorted values."""
    return np.sort(data.transpose(2, 0, 1).reshape(data.shape[2], -1), axis=1)


@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
@pytest.mark.parametrize("per_slice_rescale", [False, True], ids=["scale-slope", "scale-and-rescale"])
def test_per_slice_factors_apply_per_slice(tmp_path, enhanced, per_slice_rescale):
    info = write_philips_series(tmp_path / "dicom", enhanced=enhanced, scale_slope=SLOPES,
                                per_slice_rescale=per_slice_rescale, **OPTIONS)
    _, data, volume = _ours(tmp_path / "dicom", tmp_path / "ours")
    assert "philips_precise" in volume.findings
    truth = info.precise_values()
    ours = _slices(data)
    for k in range(truth.shape[0]):
        np.testing.assert_allclose(ours[k], np.sort(truth[k].reshape(-1)), rtol=1e-5)
    # dcm2niix's display values (-p n, per slice right) divided per slice by RS * SS: the same
    _, display = _dcm2niix(tmp_path / "dicom", tmp_path / "ref_n", precise=False)
    factor = 1.0 / (info.series.rescale[:, 0] * info.scale_slope)
    np.testing.assert_allclose(ours, _slices(display) * factor[:, None], rtol=1e-5)
    # dcm2niix's -p y: one slice's factor for a classic series, display values for an enhanced one
    _, ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref_y", precise=True)
    assert not np.allclose(ours, _slices(ref), rtol=1e-3)


def test_display_option_equals_dcm2niix_p_n_on_varying_slopes(tmp_path):
    write_philips_series(tmp_path / "dicom", scale_slope=SLOPES, **OPTIONS)
    _, ref = _dcm2niix(tmp_path / "dicom", tmp_path / "ref", precise=False)
    _, data, volume = _ours(tmp_path / "dicom", tmp_path / "ours", "display")
    _float32_close(data, ref)
    assert "philips_display" in volume.findings


@pytest.mark.parametrize("value", [0.0, float("nan"), float("inf"), "0.0125"], ids=["zero", "nan", "inf", "text"])
@pytest.mark.parametrize("enhanced", [False, True], ids=["classic", "enhanced"])
def test_invalid_scale_slope_is_refused(tmp_path, value, enhanced):
    write_philips_series(tmp_path / "dicom", enhanced=enhanced, scale_slope=value, **OPTIONS)
    report = convert(tmp_path / "dicom", tmp_path / "ours", sidecar=False)
    assert not report.volumes
    (reason,) = [why for _, why in report.failures]
    assert "invalid_rescale" in reason and "(2005,100E)" in reason and "dcm" in reason
    # the display values do not need the private value: they convert
    report = convert(tmp_path / "dicom", tmp_path / "display", sidecar=False, philips_scaling="display")
    assert report.volumes and not report.failures


def test_one_invalid_slice_refuses_the_series(tmp_path):
    write_philips_series(tmp_path / "dicom", scale_slope=[*SLOPES[:-1], 0.0], **OPTIONS)
    report = convert(tmp_path / "dicom", tmp_path / "ours", sidecar=False)
    assert not report.volumes and "invalid_rescale" in report.failures[0][1]


def test_scale_slope_of_another_creator_is_not_read(tmp_path):
    write_philips_series(tmp_path / "dicom", creator="SOMEONE ELSE", **OPTIONS)
    rows = scan(tmp_path / "dicom", workers=1).rows
    assert all(r.philips_scale_slope is None for r in rows)
    write_philips_series(tmp_path / "anon", creator=None, **OPTIONS)
    assert all(r.philips_scale_slope == pytest.approx(0.0125) for r in scan(tmp_path / "anon", workers=1).rows)


def test_store_keeps_both_transforms_and_windows_fit(tmp_path):
    info = write_philips_series(tmp_path / "dicom", **OPTIONS)
    report = ingest(tmp_path / "dicom", tmp_path / "store")
    (v,) = report.volumes
    volume = VolumeStore(tmp_path / "store").open(v.key)
    meta = volume.meta
    rs, ri = info.series.rescale[0]
    ss = info.scale_slope[0]
    assert meta["values"] == "stored"
    assert meta["rescale"]["slope"] == pytest.approx(1 / ss, rel=1e-6)
    assert meta["philips_scaling"]["values"] == "precise"
    assert meta["philips_scaling"]["display_rescale"] == {"slope": rs, "intercept": ri}
    # the files' windows are display values: in the stored volume they are precise ones
    for written, stored in zip(info.series.windows, meta["windows"]):
        assert stored["center"] == pytest.approx(written[0] / (rs * ss))
        assert stored["width"] == pytest.approx(written[1] / (rs * ss))
    display = meta["display"]
    assert display["modality"]["slope"] == pytest.approx(meta["rescale"]["slope"])
    assert display["voi"]["center"] == pytest.approx(info.series.windows[0][0] / (rs * ss))
    precise = volume.to_numpy() * meta["rescale"]["slope"] + meta["rescale"]["intercept"]
    center, width = display["voi"]["center"], display["voi"]["width"]
    assert center - width / 2 < precise.max() and center + width / 2 > precise.min()


def test_modality_values_keep_a_window_per_slice(tmp_path):
    info = write_philips_series(tmp_path / "dicom", scale_slope=SLOPES, **OPTIONS)
    (plan,), failures = plan_volumes(scan(tmp_path / "dicom", workers=1).rows)
    assert not failures and plan.meta["values"] == "modality"
    rs = info.series.rescale[:, 0]
    expected = [info.series.windows[0][0] / (rs[k] * info.scale_slope[k]) for k in range(len(SLOPES))]
    got = [w[0]["center"] for w in plan.meta.get("slice_windows", [])]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_unknown_policy_is_a_parameter_error(tmp_path):
    write_philips_series(tmp_path / "dicom", **OPTIONS)
    with pytest.raises(ParameterError, match="philips_scaling"):
        plan_volumes(scan(tmp_path / "dicom", workers=1).rows, philips_scaling="raw")


def test_cli_flag(tmp_path):
    from voxelflow.cli import main

    info = write_philips_series(tmp_path / "dicom", **OPTIONS)
    assert main(["-q", "convert", str(tmp_path / "dicom"), "-o", str(tmp_path / "out"), "--philips-scaling", "display"]) == 0
    (out,) = (tmp_path / "out").glob("*.nii*")
    data = nib.load(out).get_fdata()
    assert np.allclose(np.sort(data.reshape(-1)), np.sort(info.display_values().reshape(-1)))


def test_an_index_from_before_the_philips_fields_is_not_reused(tmp_path):
    """A store's saved scan index written by an earlier version lacks the Philips fields: a
    re-scan reads those files again rather than reuse rows that would give display values."""
    import gzip
    import json

    from voxelflow.dicom.index import Index

    info = write_philips_series(tmp_path / "src", **OPTIONS)
    saved = tmp_path / "index.jsonl.gz"
    scan([tmp_path / "src"]).save(saved)
    with gzip.open(saved, "rt", encoding="utf-8") as f:
        header, *lines = [json.loads(line) for line in f]
    dropped = [header["fields"].index(name) for name in ("manufacturer", "philips_scale_slope", "philips_scale_intercept")]
    header["fields"] = [n for i, n in enumerate(header["fields"]) if i not in dropped]
    old = [[e[0], *(v for i, v in enumerate(e[1:]) if i not in dropped)] if e[0] == "row" else e for e in lines]
    with gzip.open(saved, "wt", encoding="utf-8") as f:
        for entry in [header, *old]:
            f.write(json.dumps(entry) + "\n")
    assert all(row.philips_scale_slope is None for row in Index.load(saved).rows)
    rescanned = scan([tmp_path / "src"], previous=saved)
    assert len(rescanned.rows) == len(info.paths)
    assert all(row.philips_scale_slope is not None for row in rescanned.rows)
