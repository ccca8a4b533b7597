"""Pipeline specs: YAML / JSON / Python, every bad key named."""

from __future__ import annotations

import json

import pytest

from voxelflow.cohort import Crop, Pipeline, PipelineError, Resample, Step, load_pipeline


def test_default_pipeline_is_ingest_with_thumbnails():
    p = load_pipeline(None)
    assert p == Pipeline()
    assert p.resample is None and p.crop is None and p.reorient is None and p.steps == ()
    assert p.outputs.thumbnail and not p.outputs.nifti
    assert p.faults.max_tries == 3


def test_yaml_and_json_files_give_the_same_pipeline(tmp_path):
    document = {
        "ingest": {"philips_scaling": "display", "gaps": "fill", "compressor": "zstd"},
        "resample": {"spacing": [2.0, 1.0, 1.0], "interp": "cubic", "anti_alias": False},
        "reorient": "ras",
        "crop": {"threshold": -500, "margin_mm": 4},
        "steps": ["voxelflow.testing.cohort:slow_down",
                  {"call": "voxelflow.testing.cohort:slow_down", "with": {"seconds": 0}}],
        "outputs": {"nifti": True, "thumbnail_size": 128},
        "faults": {"max_tries": 2, "io_retries": 1, "io_backoff_s": 0},
    }
    (tmp_path / "p.json").write_text(json.dumps(document))
    yaml_text = """
ingest: {philips_scaling: display, gaps: fill, compressor: zstd}
resample: {spacing: [2.0, 1.0, 1.0], interp: cubic, anti_alias: false}
reorient: ras
crop: {threshold: -500, margin_mm: 4}
steps:
  - voxelflow.testing.cohort:slow_down
  - call: voxelflow.testing.cohort:slow_down
    with: {seconds: 0}
outputs: {nifti: true, thumbnail_size: 128}
faults: {max_tries: 2, io_retries: 1, io_backoff_s: 0}
"""
    (tmp_path / "p.yaml").write_text(yaml_text)
    a, b = load_pipeline(tmp_path / "p.json"), load_pipeline(tmp_path / "p.yaml")
    assert a == b
    assert a.reorient == "RAS"
    assert a.resample == Resample((2.0, 1.0, 1.0), "cubic", False)
    assert a.crop == Crop(threshold=-500.0, margin_mm=4.0)
    assert a.steps[1] == Step("voxelflow.testing.cohort:slow_down", {"seconds": 0})
    assert Pipeline.from_dict(a.to_dict()) == a
    a.check_steps()


def test_digest_follows_what_the_pipeline_makes_not_its_retries():
    base = Pipeline()
    assert base.digest() == Pipeline().digest()
    assert Pipeline.from_dict({"faults": {"max_tries": 5}}).digest() == base.digest()
    assert Pipeline.from_dict({"resample": {"spacing": 1}}).digest() != base.digest()
    assert Pipeline.from_dict({"outputs": {"nifti": True}}).digest() != base.digest()


@pytest.mark.parametrize(("document", "named"), [
    ({"resampel": {"spacing": 1}}, "resampel: unknown key"),
    ({"resample": {"interp": "linear"}}, "resample.spacing: is required"),
    ({"resample": {"spacing": -1}}, "resample.spacing: must be > 0"),
    ({"resample": {"spacing": [1, 2]}}, "resample.spacing: must be one number or three"),
    ({"resample": {"spacing": 1, "interp": "bicubic"}}, "resample.interp: must be one of"),
    ({"resample": {"spacing": 1, "antialias": True}}, "resample.antialias: unknown key"),
    ({"ingest": {"tilt": "fix"}}, "ingest.tilt: must be one of keep, correct"),
    ({"ingest": {"compressor": "gzip"}}, "ingest.compressor: must be one of"),
    ({"reorient": "LPX"}, "pipeline reorient: "),
    ({"crop": {}}, "crop: give box or threshold"),
    ({"crop": {"box": [[0, 4], [0, 4]]}}, "crop.box: must be three"),
    ({"crop": {"box": [[0, 4], [5, 4], [0, 4]]}}, "crop.box[1]: must be 0 <= start < stop"),
    ({"crop": {"threshold": "air"}}, "crop.threshold: must be a finite number"),
    ({"outputs": {"nifti": "yes"}}, "outputs.nifti: must be true or false"),
    ({"outputs": {"thumbnail_size": 8}}, "outputs.thumbnail_size: must be an integer >= 16"),
    ({"faults": {"max_tries": 0}}, "faults.max_tries: must be an integer >= 1"),
    ({"steps": "voxelflow.testing.cohort:slow_down"}, "steps: must be a list"),
    ({"steps": ["voxelflow.testing.cohort.slow_down"]}, "a step is named 'package.module:function'"),
    ({"steps": [{"with": {}}]}, "steps[0].call: is required"),
    (["not", "a", "mapping"], "must be a mapping"),
])
def test_bad_pipelines_name_the_key(document, named):
    with pytest.raises(PipelineError) as raised:
        Pipeline.from_dict(document)
    assert named in str(raised.value)


def test_a_step_that_does_not_import_fails_before_any_task(tmp_path):
    pipeline = Pipeline.from_dict({"steps": ["voxelflow.testing.cohort:no_such_step"]})
    with pytest.raises(PipelineError, match="cannot import 'voxelflow.testing.cohort:no_such_step'"):
        pipeline.check_steps()


def test_bad_files_name_the_file_and_the_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("resample: {spacing: [1, 2\n")
    with pytest.raises(PipelineError, match=r"bad.yaml: not valid yaml.*line"):
        load_pipeline(tmp_path / "bad.yaml")
    (tmp_path / "wrong.json").write_text('{"outputs": {"nifty": true}}')
    with pytest.raises(PipelineError, match=r"wrong.json: pipeline outputs.nifty: unknown key"):
        load_pipeline(tmp_path / "wrong.json")
    with pytest.raises(PipelineError, match="cannot be read"):
        load_pipeline(tmp_path / "missing.yaml")
