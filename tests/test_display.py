"""The display pipeline: PS3.3 C.11 semantics, the API, dask / zarr / volumes, render_frame.

Formulas are checked against literal scalar statements of the standard's pseudo-code
(``shared/reference/display-pipeline.md``), rounded once, half up: ``floor(y + 0.5)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

import voxelflow
from voxelflow.display import (
    LUT,
    PRESETS,
    AutoWindow,
    DisplayPipeline,
    Rescale,
    Window,
    auto_window,
    display_lut,
    display_values,
    parse_window,
    preset,
    render_frame,
    voi_options,
    window,
    write_preset_pngs,
)
from voxelflow.errors import DisplayError, VoxelflowError
from voxelflow.testing import dataset_from_array, save_dataset, write_series

BACKENDS = ("reference", "cython", "numba")


def spec_y(x: float, function: str, c: float, w: float, ymax: float) -> float:
    """PS3.3 C.11.2.1.2.1 / C.11.2.1.3.1 / C.11.2.1.3.2 with ymin = 0, unrounded."""
    if function == "LINEAR":
        if x <= c - 0.5 - (w - 1) / 2:
            return 0.0
        if x > c - 0.5 + (w - 1) / 2:
            return ymax
        return ((x - (c - 0.5)) / (w - 1) + 0.5) * ymax
    if function == "LINEAR_EXACT":
        if x <= c - w / 2:
            return 0.0
        if x > c + w / 2:
            return ymax
        return ((x - c) / w + 0.5) * ymax
    z = -4 * (x - c) / w
    return 0.0 if z > 700 else ymax / (1 + math.exp(z))  # exp overflows past e**709


def spec_display(
    x: float, function: str, c: float, w: float, bits: int, inverse: bool = False
) -> int:
    ymax = float((1 << bits) - 1)
    y = min(max(spec_y(x, function, c, w, ymax), 0.0), ymax)
    return math.floor((ymax - y if inverse else y) + 0.5)


# -- the window formulas at and around the edges ---------------------------------------------

EDGE_WINDOWS = [
    (40.0, 1.0),  # a threshold
    (40.0, 2.0),
    (40.0, 3.0),  # odd
    (40.0, 4.0),  # even
    (40.5, 7.0),
    (-600.0, 1500.0),
    (2047.5, 4096.0),
    (127.0, 254.0),
]


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize("c,w", EDGE_WINDOWS)
@pytest.mark.parametrize("dtype", ["int16", "uint16", "int8", "uint8", "int32", "float32"])
@pytest.mark.parametrize("bits", [8, 16])
def test_window_edges_match_the_standard(
    function: str, c: float, w: float, dtype: str, bits: int
) -> None:
    info = np.iinfo(dtype) if dtype != "float32" else None
    edges = [c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2, c - w / 2, c + w / 2, c]
    values = sorted({math.floor(e) + d for e in edges for d in range(-3, 4)})
    if dtype == "float32":
        values = sorted(set(values) | {e + d for e in edges for d in (-0.5, -0.25, 0.25, 0.5)})
    else:
        values = [v for v in values if info.min <= v <= info.max] + [int(info.min), int(info.max)]
    if not values:
        pytest.skip("the window lies outside the dtype")
    arr = np.array(values, dtype=dtype)
    expected = [spec_display(float(v), function, c, w, bits) for v in arr.tolist()]
    pipeline = DisplayPipeline(
        modality=Rescale(), voi=Window(center=c, width=w, function=function), bits=bits
    )
    for backend in BACKENDS:
        got = window(arr, pipeline, backend=backend)
        assert got.dtype == (np.uint8 if bits == 8 else np.uint16)
        assert got.tolist() == expected, backend


@pytest.mark.parametrize(
    "function,c,w,x,expected",
    [
        ("LINEAR", 40, 1, [39, 40], [0, 255]),  # w = 1 is a threshold at c - 0.5
        ("LINEAR", 40, 2, [39, 40], [0, 255]),
        ("LINEAR", 40, 4, [38, 39, 40, 41], [0, 85, 170, 255]),
        ("LINEAR", 40, 3, [39.5], [128]),  # 127.5 rounds half up
        ("LINEAR_EXACT", 40, 4, [38, 39, 40, 41, 42, 43], [0, 64, 128, 191, 255, 255]),
        ("LINEAR_EXACT", 40, 1, [39.5, 40, 40.5], [0, 128, 255]),
        ("SIGMOID", 40, 400, [40, -1e9, 1e9], [128, 0, 255]),
    ],
)
def test_known_display_values(
    function: str, c: float, w: float, x: list[float], expected: list[int]
) -> None:
    got = window(np.array(x, np.float64), center=c, width=w, function=function)
    assert got.tolist() == expected


def test_rounds_once_after_the_inversion() -> None:
    # y = 127.5: rounded half up it is 128 both ways; inverting the rounded value would give 127.
    pipe = DisplayPipeline(voi=Window(center=40, width=3), inverse=True)
    assert window(np.array([39.5]), pipe).tolist() == [128]
    assert window(np.array([38.0, 41.0]), pipe).tolist() == [255, 0]


@pytest.mark.parametrize("bits", [1, 2, 7, 8, 9, 12, 15, 16])
def test_output_depths(bits: int) -> None:
    arr = np.arange(-1024, 3072, dtype=np.int16)
    got = window(arr, center=1024, width=4096, bits=bits)
    assert got.dtype == (np.uint8 if bits <= 8 else np.uint16)
    assert got.min() == 0 and got.max() == (1 << bits) - 1
    assert np.all(np.diff(got.astype(np.int64)) >= 0)


def test_float_output_is_unquantised() -> None:
    arr = np.array([38, 39, 40, 41, 42], np.int16)
    got = window(arr, center=40, width=4, function="linear_exact", bits=None)
    assert got.dtype == np.float32
    assert got.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (
        window(
            arr.astype(np.float32), center=40, width=4, function="linear-exact", bits=None
        ).tolist()
        == got.tolist()
    )


def test_nan_and_inf_in_float_input() -> None:
    x = np.array([np.nan, -np.inf, np.inf, 40.0], np.float32)
    assert window(x, center=40, width=401).tolist() == [0, 0, 255, 128]
    assert window(x, center=40, width=401, function="sigmoid").tolist() == [0, 0, 255, 128]
    inverted = DisplayPipeline(voi=Window(center=40, width=401), inverse=True)
    assert window(x, inverted).tolist() == [255, 255, 0, 127]


# -- every path and backend agrees with the NumPy statement of the chain ------------------------

PIPELINES = [
    DisplayPipeline(modality=Rescale(slope=1, intercept=-1024), voi=Window(center=40, width=400)),
    DisplayPipeline(
        modality=Rescale(slope=0.5, intercept=3.25),
        voi=Window(center=-600, width=1500, function="LINEAR_EXACT"),
        bits=12,
    ),
    DisplayPipeline(
        modality=Rescale(slope=-2, intercept=100),
        voi=Window(center=40, width=80, function="SIGMOID"),
        inverse=True,
    ),
    DisplayPipeline(voi=Window(center=10, width=1), bits=None),
    DisplayPipeline(
        modality=LUT(first_mapped=-100, bits=12, data=np.arange(0, 4000, 10)),
        voi=Window(center=2000, width=1000),
        bits=16,
    ),
    DisplayPipeline(
        modality=Rescale(slope=1.5, intercept=-20),
        voi=LUT(first_mapped=-50, bits=8, data=(np.arange(300) * 255 // 299)),
        inverse=True,
    ),
]


@pytest.mark.parametrize("pipeline", PIPELINES, ids=range(len(PIPELINES)))
@pytest.mark.parametrize(
    "dtype", ["int16", "uint16", "uint8", "int32", "uint32", "float32", "float64", "int64"]
)
def test_every_path_equals_the_numpy_chain(pipeline: DisplayPipeline, dtype: str) -> None:
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        arr = rng.normal(0, 2000, 3000).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(max(info.min, -5000), min(info.max, 5000), 3000, dtype=dtype)
    expected = np.empty(arr.size, pipeline.out_dtype)
    display_values(arr, pipeline, expected)
    for backend in BACKENDS:
        got = window(arr, pipeline, backend=backend)
        assert got.tobytes() == expected.tobytes(), backend


def test_full_range_table_for_large_input_equals_narrow_table() -> None:
    rng = np.random.default_rng(1)
    big = rng.integers(-32768, 32767, 65536 * 16 + 5, dtype=np.int16, endpoint=True)
    for pipeline in PIPELINES:
        expected = np.empty(big.size, pipeline.out_dtype)
        display_values(big, pipeline, expected)
        for backend in ("cython", "numba"):
            assert window(big, pipeline, backend=backend).tobytes() == expected.tobytes()


def test_wide_int32_uses_the_arithmetic_kernel() -> None:
    # A window two billion wide over int32: no table could span it.
    arr = np.array([-(2**31), -5, 0, 5, 2**31 - 1], np.int32)
    pipe = DisplayPipeline(voi=Window(center=0, width=4e9))
    got = window(arr, pipe)
    assert got.tolist() == [spec_display(float(v), "LINEAR", 0, 4e9, 8) for v in arr.tolist()]


def test_display_tables_are_cached_and_narrow() -> None:
    pipe = DisplayPipeline(modality=Rescale(intercept=-1024), voi=Window(center=40, width=400))
    table, first = display_lut(pipe, np.int16)
    again, _ = display_lut(DisplayPipeline.from_dict(pipe.to_dict()), np.int16)
    assert again is table and not table.flags.writeable
    # Only the stored values where the display changes: 1024 + 40 -+ 200, plus margins.
    assert first <= 1024 - 160 and first + table.size - 1 >= 1024 + 240
    assert table.size < 410 and table[0] == 0 and table[-1] == 255
    full, full_first = display_lut(pipe, np.int16, full=True)
    assert full.size == 65536 and full_first == -32768
    with pytest.raises(DisplayError, match="resolve"):
        display_lut(DisplayPipeline(), np.int16)


def test_input_layouts_and_out() -> None:
    arr = np.arange(-50, 150, dtype=np.int16).reshape(10, 20)
    expected = window(arr, center=40, width=100)
    assert np.array_equal(window(arr.T, center=40, width=100), expected.T)
    assert np.array_equal(window(arr.astype(">i2"), center=40, width=100), expected)
    out = np.asfortranarray(np.zeros((10, 20), np.uint8))
    assert window(arr, center=40, width=100, out=out) is out and np.array_equal(out, expected)
    strided = np.zeros((10, 40), np.uint8)[:, ::2]
    window(arr, center=40, width=100, out=strided)
    assert np.array_equal(strided, expected)
    with pytest.raises(DisplayError, match="out"):
        window(arr, center=40, width=100, out=np.zeros((10, 20), np.uint16))
    assert window(np.zeros((0, 3), np.int16), center=0, width=1).shape == (0, 3)
    assert window(np.array([True, False]), center=0.5, width=1).tolist() == [255, 0]


# -- bad parameters name the parameter --------------------------------------------------------

BAD = [
    ({"center": 40, "width": 0.5}, "width"),
    ({"center": 40, "width": 0, "function": "linear_exact"}, "width"),
    ({"center": 40, "width": -1, "function": "sigmoid"}, "width"),
    ({"center": math.nan, "width": 400}, "center"),
    ({"center": 40, "width": math.inf}, "width"),
    ({"center": 40, "width": 400, "function": "gamma"}, "function"),
    ({"center": 40}, "width"),
    ({"width": 40}, "center"),
    ({"preset": "kidney"}, "preset"),
    ({"preset": "lung", "center": 1, "width": 2}, "preset"),
    ({"auto": "median"}, "method"),
    ({"bits": 0}, "bits"),
    ({"bits": 17}, "bits"),
    ({"bits": 8.0}, "bits"),
]


@pytest.mark.parametrize("kwargs,name", BAD, ids=[b[1] + str(i) for i, b in enumerate(BAD)])
def test_bad_parameters_raise_naming_them(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(DisplayError, match=name) as exc:
        window(np.zeros(4, np.int16), **kwargs)
    assert isinstance(exc.value, VoxelflowError) and isinstance(exc.value, ValueError)


def test_bad_values_raise() -> None:
    with pytest.raises(DisplayError, match="slope"):
        Rescale(slope=math.nan)
    with pytest.raises(DisplayError, match="bits per entry"):
        LUT(first_mapped=0, bits=8, data=[0, 256])
    with pytest.raises(DisplayError, match="entries"):
        LUT(first_mapped=0, bits=8, data=[])
    with pytest.raises(DisplayError, match="percentiles"):
        AutoWindow(method="percentile", percentiles=(90, 10))
    with pytest.raises(DisplayError, match="fraction"):
        AutoWindow(method="histogram", fraction=0.5)
    with pytest.raises(DisplayError, match="pipeline"):
        window(np.zeros(3), pipeline="lung")
    with pytest.raises(DisplayError, match="keys"):
        DisplayPipeline.from_dict({"window": 1})
    with pytest.raises(DisplayError, match="modality"):
        DisplayPipeline(modality=Window(center=1, width=1))  # type: ignore[arg-type]
    with pytest.raises(DisplayError, match="integer or float"):
        window(np.array(["a"]), center=1, width=1)


# -- value objects ---------------------------------------------------------------------------


def test_pipeline_round_trips_through_json() -> None:
    for pipeline in [
        *PIPELINES,
        DisplayPipeline(),
        DisplayPipeline(voi=AutoWindow(method="percentile", percentiles=(2, 98))),
    ]:
        text = json.dumps(pipeline.to_dict())
        again = DisplayPipeline.from_dict(json.loads(text))
        assert again == pipeline and hash(again) == hash(pipeline)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PIPELINES[0].bits = 4  # type: ignore[misc]


def test_presets() -> None:
    assert preset("lung") == PRESETS["lung"] and preset("Soft Tissue") == PRESETS["soft_tissue"]
    assert preset("soft-tissue").center == 40 and preset("soft-tissue").width == 400
    for name in ("brain", "subdural", "stroke", "lung", "mediastinum", "abdomen", "liver", "bone"):
        assert PRESETS[name].function == "LINEAR"
    hu = np.array([-1000, -600, 40, 400, 1300], np.int16)
    assert window(hu, preset="lung").tolist() == window(hu, center=-600, width=1500).tolist()
    assert parse_window("bone") == PRESETS["bone"]
    assert parse_window((40, 400, "sigmoid")) == Window(center=40, width=400, function="SIGMOID")
    assert parse_window("minmax") == AutoWindow()
    with pytest.raises(DisplayError):
        parse_window(42)


# -- automatic windows -----------------------------------------------------------------------


def test_auto_minmax_maps_min_to_black_and_max_to_white() -> None:
    arr = np.array([[-1000, 0, 50], [200, 3000, 7]], np.int16)
    got = window(arr)
    assert got.min() == 0 and got.max() == 255
    assert got[0, 0] == 0 and got[1, 1] == 255
    w = auto_window(arr, modality=Rescale(slope=2, intercept=1))
    assert (w.center, w.width) == ((-1999 + 6001 + 1) / 2, 6001 - -1999 + 1)
    f = np.array([0.0, 0.25, 1.0, np.nan], np.float32)
    assert window(f, bits=None).tolist()[:3] == [0.0, 0.25, 1.0]


def test_auto_methods() -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 1000, 10_000).astype(np.int16)
    arr[:5] = -2000  # padding
    arr[5:7] = 4000  # hot pixels
    assert auto_window(arr).width == 6001
    no_extremes = auto_window(arr, "minmax_no_extremes")
    assert no_extremes.center - 0.5 - (no_extremes.width - 1) / 2 == float(np.sort(arr)[5])
    hist = auto_window(arr, "histogram", fraction=0.01)
    lo = hist.center - 0.5 - (hist.width - 1) / 2
    hi = hist.center - 0.5 + (hist.width - 1) / 2
    assert 0 < lo < 20 and 980 < hi < 1000
    pct = auto_window(arr, "percentile", percentiles=(5, 95))
    p5, p95 = np.percentile(arr, [5, 95])
    assert pct.center - 0.5 - (pct.width - 1) / 2 == pytest.approx(p5)
    assert pct.center - 0.5 + (pct.width - 1) / 2 == pytest.approx(p95)
    floats = arr.astype(np.float64) + 0.5
    pctf = auto_window(floats, AutoWindow(method="percentile", percentiles=(5, 95)))
    assert pctf.center - 0.5 - (pctf.width - 1) / 2 == pytest.approx(p5 + 0.5)
    # Constant and empty images.
    assert window(np.full(4, 7, np.int16)).tolist() == [0, 0, 0, 0]
    empty = auto_window(np.array([np.nan], np.float32))
    assert (empty.center, empty.width) == (0.5, 1.0)


# -- dask, zarr and volumes -----------------------------------------------------------------


def _volume() -> np.ndarray:
    return np.random.default_rng(2).integers(-1024, 3000, (7, 33, 29)).astype(np.int16)


def test_dask_is_lazy_and_equals_numpy() -> None:
    import dask.array as da
    vol = _volume()
    pipe = DisplayPipeline(modality=Rescale(intercept=-10), voi=Window(center=40, width=400))
    for chunks in [(2, 10, 7), (7, 33, 29), (3, 5, 29)]:
        lazy = window(da.from_array(vol, chunks=chunks), pipe)
        assert isinstance(lazy, da.Array) and lazy.dtype == np.uint8
        assert np.array_equal(lazy.compute(), window(vol, pipe))
    auto = window(da.from_array(vol, chunks=(2, 10, 7)))
    assert np.array_equal(auto.compute(), window(vol))
    floats = da.from_array(vol.astype(np.float32), chunks=(3, 11, 10))
    assert np.array_equal(window(floats).compute(), window(vol.astype(np.float32)))
    with pytest.raises(DisplayError, match="in memory"):
        window(floats, auto="percentile")
    with pytest.raises(DisplayError, match="out"):
        window(floats, pipe, out=np.empty(vol.shape, np.uint8))


def test_zarr_chunk_by_chunk_equals_numpy(tmp_path: Any) -> None:
    import zarr
    vol = _volume()
    z = zarr.create_array(
        store=str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(2, 16, 16), dtype=vol.dtype
    )
    z[...] = vol
    expected = window(vol, preset="bone", bits=12)
    assert np.array_equal(window(z, preset="bone", bits=12), expected)
    out = zarr.create_array(
        store=str(tmp_path / "o.zarr"), shape=vol.shape, chunks=(3, 8, 8), dtype=np.uint16
    )
    assert window(z, preset="bone", bits=12, out=out) is out
    assert np.array_equal(out[...], expected)
    assert np.array_equal(window(z, auto="histogram"), window(vol, auto="histogram"))
    # Per-chunk regions when a slab of chunk rows would be too large.
    from voxelflow.display import apply as display_apply

    saved = display_apply._SLAB_BYTES
    display_apply._SLAB_BYTES = 1
    try:
        assert np.array_equal(window(z, preset="bone", bits=12), expected)
    finally:
        display_apply._SLAB_BYTES = saved


def test_volume_like_objects_bring_their_pipeline() -> None:
    vol = _volume()
    meta = {
        "rescale": {"slope": 1.0, "intercept": -1024.0},
        "values": "stored",
        "windows": [(40.0, 400.0, "soft tissue")],
        "photometric": "MONOCHROME2",
    }
    obj = SimpleNamespace(array=vol, meta=meta)
    pipe = DisplayPipeline(modality=Rescale(intercept=-1024), voi=Window(center=40, width=400))
    assert np.array_equal(window(obj), window(vol, pipe))
    assert np.array_equal(window(obj, preset="lung"), window(vol, pipe.with_voi(PRESETS["lung"])))
    displayed = SimpleNamespace(array=vol, meta={"display": pipe.to_dict()})
    assert np.array_equal(window(displayed), window(vol, pipe))
    modality = SimpleNamespace(array=vol, meta={**meta, "values": "modality"})
    assert np.array_equal(window(modality), window(vol, center=40, width=400))
    tagged = SimpleNamespace(
        array=vol,
        metadata={
            "RescaleSlope": 1,
            "RescaleIntercept": -1024,
            "WindowCenter": 40,
            "WindowWidth": 400,
        },
    )
    assert np.array_equal(window(tagged), window(vol, pipe))
    if hasattr(voxelflow, "Volume"):
        real = voxelflow.Volume(vol, np.eye(4), meta)
        assert np.array_equal(window(real), window(vol, pipe))


# -- DICOM datasets --------------------------------------------------------------------------


def _mono(arr: np.ndarray, **attrs: Any) -> Dataset:
    ds = dataset_from_array(arr)
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _lut_item(descriptor: list[int], data: Any, vr: str = "US", desc_vr: str = "US") -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, desc_vr, descriptor)
    item.add_new(0x00283006, vr, data)
    item.LUTExplanation = "test"
    return item


def test_multiple_windows_selectable_by_index() -> None:
    arr = np.array([[-1000, 40, 400]], np.int16)
    ds = _mono(
        arr,
        WindowCenter=[40, -600],
        WindowWidth=[400, 1500],
        WindowCenterWidthExplanation=["SOFT", "LUNG"],
    )
    soft = DisplayPipeline.from_dataset(ds)
    lung = DisplayPipeline.from_dataset(ds, voi_index=1)
    assert soft.voi == Window(center=40, width=400, explanation="SOFT")
    assert lung.voi == Window(center=-600, width=1500, explanation="LUNG")
    assert render_frame(ds, voi_index=1).tolist() == window(arr, lung).tolist()
    with pytest.raises(DisplayError, match="voi_index 2 out of range.*SOFT.*LUNG"):
        DisplayPipeline.from_dataset(ds, voi_index=2)
    ds.VOILUTFunction = "LINEAR_EXACT"
    assert DisplayPipeline.from_dataset(ds).voi.function == "LINEAR_EXACT"
    ds.WindowWidth = [0, 1500]
    with pytest.raises(DisplayError, match=r"Window Center/Width value 1.*width"):
        DisplayPipeline.from_dataset(ds)


def test_voi_lut_sequence() -> None:
    arr = np.array([[-2000, -1024, -1023, -1, 0, 3071, 5000]], np.int16)
    entries = np.arange(4096) * 65535 // 4095
    ds = _mono(arr, RescaleSlope=1, RescaleIntercept=0, WindowCenter=40, WindowWidth=400)
    # First mapped -1024 written as US 64512: signed by context (CT values can be negative).
    ds.VOILUTSequence = DicomSequence([_lut_item([4096, 64512, 16], entries.tolist())])
    options = voi_options(ds)
    assert isinstance(options[0], LUT) and options[0].first_mapped == -1024
    assert isinstance(options[1], Window)  # a window and a LUT: alternatives, LUT first
    got = render_frame(ds)
    expected = [0, 0, 0, 64, 64, 255, 255]  # the LUT alone, scaled from 16 to 8 bits
    expected[3] = math.floor(entries[1023] / 65535 * 255 + 0.5)
    expected[4] = math.floor(entries[1024] / 65535 * 255 + 0.5)
    expected[2] = math.floor(entries[1] / 65535 * 255 + 0.5)
    assert got.tolist() == [expected]
    assert render_frame(ds, voi_index=1).tolist() == window(arr, center=40, width=400).tolist()


def test_voi_lut_descriptor_details() -> None:
    arr = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    # 0 entries means 65536; declared 16 bits holding 8 is scaled as 8 bits.
    ds = _mono(arr)
    ds.VOILUTSequence = DicomSequence([_lut_item([0, 0, 16], (np.arange(65536) % 256).tolist())])
    lut = voi_options(ds)[0]
    assert lut.entries == 65536 and lut.bits == 8
    assert render_frame(ds).tolist() == arr.tolist()
    # 8-bit entries packed two per word in OW.
    ds.VOILUTSequence = DicomSequence(
        [_lut_item([256, 0, 8], bytes(255 - np.arange(256, dtype=np.uint8)), vr="OW")]
    )
    assert render_frame(ds).tolist() == (255 - arr).tolist()
    # OW with one entry per 16-bit word, as the transfer syntax orders them.
    ds.VOILUTSequence = DicomSequence(
        [_lut_item([256, 0, 12], (np.arange(256) * 16).astype("<u2").tobytes(), vr="OW")]
    )
    assert voi_options(ds)[0].table.tolist() == (np.arange(256) * 16).tolist()
    # Inconsistent with its data: too few entries, too many bytes, values beyond the bits.
    for item, message in [
        (_lut_item([256, 0, 8], list(range(255))), "LUT Data holds 255 entries"),
        (_lut_item([256, 0, 16], bytes(1000), vr="OW"), "LUT Data holds 1000 bytes"),
        (_lut_item([2, 0, 8], [0, 300]), "more than the 8 bits"),
        (_lut_item([2, 0, 20], [0, 3]), "bits per entry"),
        (_lut_item([2, 0], [0, 3]), "3 values"),
    ]:
        ds.VOILUTSequence = DicomSequence([item])
        with pytest.raises(DisplayError, match=message):
            DisplayPipeline.from_dataset(ds)


def test_modality_lut_sequence() -> None:
    arr = np.array([[-2048, -2047, 0, 2047]], np.int16)
    ds = _mono(arr)
    # First mapped -2048 as SS for signed pixel data; values beyond the table clamp.
    ds.ModalityLUTSequence = DicomSequence(
        [_lut_item([4096, -2048, 16], (np.arange(4096) * 16).tolist(), desc_vr="SS")]
    )
    pipe = DisplayPipeline.from_dataset(ds)
    assert isinstance(pipe.modality, LUT) and pipe.modality.first_mapped == -2048
    assert pipe.modality.apply(arr).tolist() == [[0, 16, 2048 * 16, 4095 * 16]]
    got = render_frame(ds, window=(32768, 65536))
    assert got.tolist() == window(pipe.modality.apply(arr), center=32768, width=65536).tolist()


def test_monochrome1_and_presentation_lut_shape() -> None:
    arr = np.array([[0, 100, 200, 4095]], np.uint16)
    ds = _mono(arr, WindowCenter=2048, WindowWidth=4096)
    plain = render_frame(ds)
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = render_frame(ds)
    assert (
        inverted.tolist()
        == window(arr, DisplayPipeline(voi=Window(center=2048, width=4096), inverse=True)).tolist()
    )
    assert (plain.astype(int) + inverted).tolist() == [[255, 255, 255, 255]]
    ds.PresentationLUTShape = "IDENTITY"  # explicit shape wins
    assert render_frame(ds).tolist() == plain.tolist()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PresentationLUTShape = "INVERSE"
    assert render_frame(ds).tolist() == inverted.tolist()
    ds.PresentationLUTShape = "GAMMA"
    with pytest.raises(DisplayError, match="Presentation LUT Shape"):
        render_frame(ds)


def test_monochrome1_series_displays_like_monochrome2(tmp_path: Any) -> None:
    m2 = write_series(tmp_path / "m2", shape=(3, 32, 32), noise=False)
    m1 = write_series(tmp_path / "m1", shape=(3, 32, 32), noise=False, photometric="MONOCHROME1")
    for k in range(3):
        a = render_frame(m2.paths[k]).astype(int)
        b = render_frame(m1.paths[k]).astype(int)
        # LINEAR's c - 0.5 makes mirrored windows differ by 255 / (w - 1) < 1 grey level.
        assert np.abs(a - b).max() <= 1
        stored = voxelflow.decode(m1.paths[k])
        slope, intercept = m1.rescale[k]
        raw = window(
            stored,
            DisplayPipeline(
                modality=Rescale(slope=slope, intercept=intercept),
                voi=Window(center=m1.windows[0][0], width=m1.windows[0][1]),
            ),
        )
        assert b.tolist() == (255 - raw.astype(int)).tolist() or np.abs(b - (255 - raw)).max() <= 1


def test_enhanced_per_frame_rescale_and_shared_window(tmp_path: Any) -> None:
    info = write_series(
        tmp_path,
        shape=(4, 24, 24),
        enhanced=True,
        per_slice_rescale=True,
        windows=[(40.0, 400.0, "SOFT"), (-600.0, 1500.0, "LUNG")],
    )
    path = info.paths[0]
    for g in range(4):
        frame = info.instance_numbers[g] - 1
        slope, intercept = info.rescale[g]
        pipe = DisplayPipeline.from_dataset(
            pydicom.dcmread(path, stop_before_pixels=True), frame=frame, voi_index=1
        )
        assert pipe.modality == Rescale(slope=slope, intercept=intercept)
        assert pipe.voi == Window(center=-600, width=1500, explanation="LUNG")
        got = render_frame(path, frame=frame, voi_index=1)
        assert got.tolist() == window(info.volume[g], pipe).tolist()
    with pytest.raises(DisplayError, match="frame 4 out of range"):
        DisplayPipeline.from_dataset(pydicom.dcmread(path, stop_before_pixels=True), frame=4)


def test_render_frame_file_without_a_window_uses_minmax(tmp_path: Any) -> None:
    arr = np.array([[5, 10, 20], [30, 40, 55]], np.uint16)
    path = save_dataset(dataset_from_array(arr), tmp_path / "a.dcm")
    got = render_frame(path)
    assert got.min() == 0 and got.max() == 255 and got[0, 0] == 0 and got[1, 2] == 255
    assert render_frame(path, window="lung").tolist() == window(arr, preset="lung").tolist()
    assert render_frame(path, bits=None).dtype == np.float32
    with pytest.raises(DisplayError, match="voi_index"):
        render_frame(path, voi_index=1)
    with pytest.raises(voxelflow.DecodeError):
        render_frame(tmp_path / "missing.dcm")


def test_colour_frames_pass_through(tmp_path: Any) -> None:
    rgb = np.random.default_rng(4).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    ds = dataset_from_array(rgb, photometric="RGB")
    assert np.array_equal(render_frame(ds), rgb)
    assert render_frame(ds, bits=None).max() <= 1.0
    assert np.array_equal(render_frame(ds, bits=16), rgb.astype(np.uint16) * 257)
    idx = np.arange(30, dtype=np.uint8).reshape(6, 5)
    red = np.arange(256, dtype=np.uint8)
    pal = dataset_from_array(
        idx,
        photometric="PALETTE COLOR",
        palette={"red": red, "green": red[::-1].copy(), "blue": red},
    )
    got = render_frame(save_dataset(pal, tmp_path / "p.dcm"))
    assert got.shape == (6, 5, 3) and got[..., 0].tolist() == idx.tolist()
    with pytest.raises(DisplayError, match="colour"):
        DisplayPipeline.from_dataset(ds)


def test_write_preset_pngs(tmp_path: Any) -> None:
    from PIL import Image

    vol = _volume()
    paths = write_preset_pngs(vol, tmp_path / "png", rescale=(1.0, -1024.0))
    assert [p.name for p in paths] == [
        "middle_slice_lung.png",
        "middle_slice_soft_tissue.png",
        "middle_slice_bone.png",
    ]
    for path, name in zip(paths, ("lung", "soft_tissue", "bone")):
        pixels = np.asarray(Image.open(path))
        expected = window(
            vol[3], DisplayPipeline(modality=Rescale(intercept=-1024), voi=PRESETS[name])
        )
        assert np.array_equal(pixels, expected)
    assert not list((tmp_path / "png").glob(".*tmp"))
    with pytest.raises(DisplayError, match="preset"):
        write_preset_pngs(vol, tmp_path / "x", presets=["kidney"])
    assert not (tmp_path / "x").exists()


def test_public_api() -> None:
    for name in (
        "window",
        "render_frame",
        "DisplayPipeline",
        "Window",
        "AutoWindow",
        "auto_window",
        "write_preset_pngs",
    ):
        assert name in voxelflow.__all__ and getattr(voxelflow, name) is not None
