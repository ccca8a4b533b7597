"""The cohort pipeline: what is done to every volume, from a YAML / JSON file or Python objects.

One volume goes through::

    ingest (decode, geometry policies, Philips scaling)
      -> resample (optional: spacing, interp, anti-aliasing)
      -> reorient (optional: three letters, e.g. "LPS" or "RAS")
      -> crop (optional: an index box, or the bounding box of voxels above a threshold)
      -> steps (optional: your own functions, ``"package.module:function"``)
      -> outputs: the zarr store (always), NIfTI (optional), a MIP thumbnail PNG, a QA record

A pipeline file holds the same keys as :meth:`Pipeline.from_dict` takes, e.g.::

    ingest: {philips_scaling: precise, tilt: keep, compressor: blosc}
    resample: {spacing: [1.0, 1.0, 1.0], interp: linear, anti_alias: true}
    reorient: RAS
    crop: {threshold: -500, margin_mm: 5}
    outputs: {nifti: true, thumbnail: true, thumbnail_size: 256}
    faults: {max_tries: 3, io_retries: 3, io_backoff_s: 0.5}

Every key is checked; a wrong one raises :class:`PipelineError` naming it (``resample.interp``)
and what it may be. A pipeline's :meth:`~Pipeline.digest` is recorded with each volume it made,
so a re-run with a different pipeline redoes the volumes, never mixes the two.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError

__all__ = [
    "Crop",
    "Faults",
    "IngestOptions",
    "Outputs",
    "Pipeline",
    "PipelineError",
    "Resample",
    "Step",
    "load_pipeline",
]


class PipelineError(ParameterError):
    """A pipeline that cannot run: names the key and what it may be."""


def _fail(where: str, message: str) -> PipelineError:
    return PipelineError(f"pipeline {where}: {message}")


def _keys(value: Any, allowed: Sequence[str], where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"must be a mapping of {', '.join(allowed)}, got {type(value).__name__}")
    unknown = [str(k) for k in value if k not in allowed]
    if unknown:
        raise _fail(f"{where}.{unknown[0]}" if where else unknown[0],
                    f"unknown key; {where or 'the pipeline'} takes {', '.join(allowed)}")
    return value


def _choice(value: Any, allowed: Sequence[str], where: str) -> str:
    if value not in allowed:
        raise _fail(where, f"must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {value!r}")
    return value


def _number(value: Any, where: str, *, positive: bool = False, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise _fail(where, f"must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(where, f"must be >= {minimum:g}, got {value!r}")
    return float(value)


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(where, f"must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class IngestOptions:
    """How DICOM becomes a volume: the geometry policies of :class:`~voxelflow.dicom.series.GeometryPolicy`,
    the Philips MR scaling, and how the store keeps it (codec name, pyramid)."""

    tilt: str = "keep"
    nonuniform: str = "refuse"
    gaps: str = "split"
    philips_scaling: str = "precise"
    compressor: str = "blosc"
    pyramid: bool = True

    def __post_init__(self) -> None:
        from ..dicom.series import (
            GAP_POLICIES,
            NONUNIFORM_POLICIES,
            PHILIPS_SCALINGS,
            TILT_POLICIES,
        )
        from ..store import COMPRESSORS

        for name, allowed in (("tilt", TILT_POLICIES), ("nonuniform", NONUNIFORM_POLICIES),
                              ("gaps", GAP_POLICIES), ("philips_scaling", PHILIPS_SCALINGS),
                              ("compressor", tuple(COMPRESSORS))):
            _choice(getattr(self, name), allowed, f"ingest.{name}")
        _bool(self.pyramid, "ingest.pyramid")

    def policy(self) -> Any:
        from ..dicom.series import GeometryPolicy

        return GeometryPolicy(tilt=self.tilt, nonuniform=self.nonuniform, gaps=self.gaps)


@dataclass(frozen=True)
class Resample:
    """:func:`voxelflow.resample` onto `spacing` mm (one number: isotropic; three: z, y, x)."""

    spacing: float | tuple[float, float, float]
    interp: str = "linear"
    anti_alias: bool = True

    def __post_init__(self) -> None:
        from ..resampling import INTERPOLATIONS

        spacing = self.spacing
        if isinstance(spacing, (list, tuple)):
            if len(spacing) != 3:
                raise _fail("resample.spacing", f"must be one number or three (z, y, x), got {len(spacing)}")
            object.__setattr__(self, "spacing", tuple(
                _number(s, f"resample.spacing[{i}]", positive=True) for i, s in enumerate(spacing)))
        else:
            object.__setattr__(self, "spacing", _number(spacing, "resample.spacing", positive=True))
        _choice(self.interp, tuple(INTERPOLATIONS), "resample.interp")
        _bool(self.anti_alias, "resample.anti_alias")


@dataclass(frozen=True)
class Crop:
    """An index `box` ([start, stop) per axis z, y, x; stop is clipped to the volume), or the bounding box of the voxels whose modality value is above `threshold`
    (e.g. -500 HU: the body without the air around it), grown by `margin_mm`. A threshold no
    voxel passes keeps the whole volume (and says so in a finding)."""

    box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    threshold: float | None = None
    margin_mm: float = 0.0

    def __post_init__(self) -> None:
        if (self.box is None) == (self.threshold is None):
            raise _fail("crop", "give box or threshold (one of them)")
        if self.box is not None:
            if not isinstance(self.box, (list, tuple)) or len(self.box) != 3:
                raise _fail("crop.box", "must be three [start, stop] pairs (z, y, x)")
            pairs = []
            for i, pair in enumerate(self.box):
                if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                        or any(isinstance(v, bool) or not isinstance(v, int) for v in pair)):
                    raise _fail(f"crop.box[{i}]", f"must be [start, stop] integers, got {pair!r}")
                if not 0 <= pair[0] < pair[1]:
                    raise _fail(f"crop.box[{i}]", f"must be 0 <= start < stop, got {list(pair)}")
                pairs.append((int(pair[0]), int(pair[1])))
            object.__setattr__(self, "box", tuple(pairs))
        else:
            object.__setattr__(self, "threshold", _number(self.threshold, "crop.threshold"))
        object.__setattr__(self, "margin_mm", _number(self.margin_mm, "crop.margin_mm", minimum=0.0))


@dataclass(frozen=True)
class Step:
    """Your own step: ``function(volume, context, **arguments) -> Volume``, named by its import
    path ``"package.module:function"`` (importable on every worker). `context` is a
    :class:`voxelflow.cohort.tasks.StepContext` (the key, the plan's metadata, the try)."""

    call: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.call, str) or self.call.count(":") != 1 or not all(self.call.split(":")):
            raise _fail("steps", f"a step is named 'package.module:function', got {self.call!r}")
        if not isinstance(self.arguments, Mapping) or not all(isinstance(k, str) for k in self.arguments):
            raise _fail(f"steps[{self.call}].with", "must be a mapping of argument names to values")
        object.__setattr__(self, "arguments", dict(self.arguments))

    def resolve(self) -> Callable[..., Any]:
        module, name = self.call.split(":")
        try:
            function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise _fail("steps", f"cannot import {self.call!r}: {exc}") from None
        if not callable(function):
            raise _fail("steps", f"{self.call!r} is not callable")
        return function  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Outputs:
    """What each volume leaves besides its store entry: a NIfTI (``.nii.gz`` with its BIDS
    side-car), a MIP thumbnail (PNG, at most `thumbnail_size` pixels a side) and the QA record
    (always; JSON, also in the manifest)."""

    nifti: bool = False
    thumbnail: bool = True
    thumbnail_size: int = 128

    def __post_init__(self) -> None:
        _bool(self.nifti, "outputs.nifti")
        _bool(self.thumbnail, "outputs.thumbnail")
        _integer(self.thumbnail_size, "outputs.thumbnail_size", 16)
        if self.thumbnail_size > 4096:
            raise _fail("outputs.thumbnail_size", f"must be <= 4096, got {self.thumbnail_size}")


@dataclass(frozen=True)
class Faults:
    """Retries. A volume whose task ended its worker process `max_tries` times (a segfault in a
    decoder, an out-of-memory kill) is quarantined; an I/O error that may pass (EIO, a timeout,
    a stale NFS handle) is retried `io_retries` times, waiting ``io_backoff_s * 2**n`` seconds."""

    max_tries: int = 3
    io_retries: int = 3
    io_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        _integer(self.max_tries, "faults.max_tries", 1)
        _integer(self.io_retries, "faults.io_retries", 0)
        _number(self.io_backoff_s, "faults.io_backoff_s", minimum=0.0)


@dataclass(frozen=True)
class Pipeline:
    """The steps and outputs of a cohort run (module docstring); every field optional."""

    ingest: IngestOptions = field(default_factory=IngestOptions)
    resample: Resample | None = None
    reorient: str | None = None
    crop: Crop | None = None
    steps: tuple[Step, ...] = ()
    outputs: Outputs = field(default_factory=Outputs)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.reorient is not None:
            from ..errors import ResampleError
            from ..resampling import _parse_codes

            try:
                object.__setattr__(self, "reorient", _parse_codes(self.reorient))
            except ResampleError as exc:
                raise _fail("reorient", str(exc).split(": ", 1)[-1]) from None
        object.__setattr__(self, "steps", tuple(self.steps))

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], where: str = "") -> Pipeline:
        """A pipeline from its plain form (what a YAML / JSON pipeline file holds)."""
        top = _keys(document, ("ingest", "resample", "reorient", "crop", "steps", "outputs", "faults"), where)

        def section(name: str, kind: Any, required: Sequence[str] = ()) -> Any:
            value = top.get(name)
            if value is None:
                return None
            if name == "crop" and isinstance(value, Mapping) and isinstance(value.get("box"), list):
                value = {**value, "box": tuple(tuple(p) if isinstance(p, list) else p for p in value["box"])}
            _keys(value, tuple(kind.__dataclass_fields__), name)
            for key in required:
                if key not in value:
                    raise _fail(f"{name}.{key}", "is required")
            return kind(**value)

        if not isinstance(top.get("steps") or (), (list, tuple)):
            raise _fail("steps", "must be a list")
        steps = []
        for i, item in enumerate(top.get("steps") or ()):
            if isinstance(item, str):
                steps.append(Step(item))
            else:
                _keys(item, ("call", "with"), f"steps[{i}]")
                if "call" not in item:
                    raise _fail(f"steps[{i}].call", "is required")
                steps.append(Step(item["call"], item.get("with") or {}))
        return cls(
            ingest=section("ingest", IngestOptions) or IngestOptions(),
            resample=section("resample", Resample, ("spacing",)),
            reorient=top.get("reorient"),
            crop=section("crop", Crop),
            steps=tuple(steps),
            outputs=section("outputs", Outputs) or Outputs(),
            faults=section("faults", Faults) or Faults(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The plain form, as :meth:`from_dict` takes it (JSON-able)."""
        document = asdict(self)
        document["steps"] = [{"call": s.call, "with": dict(s.arguments)} for s in self.steps]
        return json.loads(json.dumps(document))

    def digest(self) -> str:
        """A short hash of what the pipeline makes (not of its fault settings): two pipelines
        with one digest make the same outputs."""
        document = self.to_dict()
        document.pop("faults")
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def check_steps(self) -> None:
        """Import every step here, before any task runs: a typo fails the run at once."""
        for step in self.steps:
            step.resolve()


def load_pipeline(source: Pipeline | Mapping[str, Any] | str | os.PathLike[str] | None) -> Pipeline:
    """A :class:`Pipeline` from itself, its plain form, or a ``.yaml`` / ``.yml`` / ``.json``
    file (None: the default pipeline, ingest and thumbnails)."""
    if source is None:
        return Pipeline()
    if isinstance(source, Pipeline):
        return source
    if isinstance(source, Mapping):
        return Pipeline.from_dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"pipeline file {path}: cannot be read: {exc}") from None
    import yaml

    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            document = yaml.safe_load(text)
        else:
            document = json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:  # both name the line
        reason = " ".join(str(exc).split())  # YAML's messages span lines; errors are one line
        raise PipelineError(f"pipeline file {path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {reason}") from None
    if document is None:
        return Pipeline()
    try:
        return Pipeline.from_dict(document)
    except PipelineError as exc:
        raise PipelineError(f"{path}: {exc}") from None
