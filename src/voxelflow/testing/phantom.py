"""A 3-D anatomical phantom of the human torso, built from analytic shapes in millimetres.

The anatomy (body outline, subcutaneous fat, muscle, lungs, heart, liver, spleen, stomach,
kidneys, bowel gas, bladder, aorta and IVC, vertebrae, ribs and sternum) is defined in patient
coordinates (LPS: +x patient left, +y posterior, +z superior) for an adult torso about 340 mm
wide and 600 mm long, centred on the middle of the volume. It is scaled uniformly so the body fits
the field of view in x and y: shapes keep their proportions in mm whatever the voxel spacing, so
an anisotropic or oblique grid samples the same anatomy. Tissue labels become CT Hounsfield units
or MR signal intensities with Gaussian noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

__all__ = [
    "TISSUES",
    "phantom_labels",
    "phantom_volume",
    "tissue_values",
]

#: Tissue classes: label -> (name, CT value in HU, MR signal intensity, T1-weighted look).
TISSUES: dict[int, tuple[str, int, int]] = {
    0: ("air", -1000, 0),
    1: ("fat", -100, 1500),
    2: ("muscle", 50, 500),
    3: ("soft tissue", 40, 650),
    4: ("lung", -850, 30),
    5: ("liver", 60, 800),
    6: ("spleen", 45, 600),
    7: ("kidney", 35, 700),
    8: ("contrast vessel", 200, 1100),
    9: ("cancellous bone", 450, 1000),
    10: ("cortical bone", 1300, 80),
    11: ("heart", 45, 550),
    12: ("bowel gas", -950, 10),
    13: ("fluid", 8, 250),
    14: ("rib", 700, 300),
}
AIR, FAT, MUSCLE, SOFT, LUNG, LIVER, SPLEEN, KIDNEY, VESSEL = range(9)
CANCELLOUS, CORTICAL, HEART, GAS, FLUID, RIB = range(9, 15)

CT_NOISE_HU = 10.0
MR_NOISE = 15.0
CT_RANGE = (-1024, 3071)
MR_RANGE = (0, 4095)

# Reference body half-width (x) and half-depth (y) in mm, and the margin left around it.
_BODY = (170.0, 120.0)
_MARGIN = 1.12
_INF = 1e9
# The general (oblique) path samples a label grid of at most this many voxels.
_MAX_GRID_VOXELS = 48_000_000


@dataclass(frozen=True)
class _Shape:
    """An elliptic cylinder (``c == inf``) or ellipsoid, optionally cut into z bands."""

    label: int
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    z_range: tuple[float, float] = (-_INF, _INF)
    band: tuple[float, float] | None = None  # (period, filled fraction) along z, in mm

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        (cx, cy, cz), (a, b, c) = self.center, self.radii
        z0 = max(cz - c, self.z_range[0])
        z1 = min(cz + c, self.z_range[1])
        return cx - a, cx + a, cy - b, cy + b, z0, z1

    def mask(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Return whether each point (broadcast reference mm) lies inside; z already in range."""
        (cx, cy, cz), (a, b, c) = self.center, self.radii
        r = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2
        if c < _INF:
            r = r + ((z - cz) / c) ** 2
        # The z range is applied by the caller's bounding box; only bands need z here.
        inside = r <= 1.0
        if self.band is not None:
            period, fill = self.band
            inside = inside & (np.mod(z, period) < fill * period)
        return inside


@dataclass(frozen=True)
class _RibCage:
    """Elliptic arcs just inside the muscle wall, in z bands, open anteriorly."""

    label: int
    radii: tuple[float, float]
    thickness: float
    z_range: tuple[float, float]
    period: float
    fill: float
    anterior_gap_deg: float
    slope: float = 0.25  # mm of z per degree from the front

    def bounds(self) -> tuple[float, float, float, float, float, float]:
        a, b = self.radii
        t = self.thickness
        return -a - t, a + t, -b - t, b + t, self.z_range[0], self.z_range[1]

    def paint(self, block: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        """Paint the ribs into `block` (z, y, x) over 1-D coordinates; z already in range."""
        a, b = self.radii
        xx, yy = x[np.newaxis, :], y[:, np.newaxis]
        # Normalised elliptic radius; the band half-width is thickness over the mean radius.
        rho = np.sqrt((xx / a) ** 2 + (yy / b) ** 2)
        half = 0.5 * self.thickness / (0.5 * (a + b))
        # Angle from the anterior direction (-y); costal cartilage leaves the front open.
        angle = np.degrees(np.abs(np.arctan2(xx, -yy)))
        jj, ii = np.nonzero((np.abs(rho - 1.0) <= half) & (angle >= self.anterior_gap_deg))
        # Ribs slope down towards the front, so an axial plane cuts each one as a short arc.
        # Only the thin ring is evaluated through z: the cage is large but sparse.
        phase = z[:, np.newaxis] + self.slope * angle[jj, ii][np.newaxis, :]
        inside = np.mod(phase, self.period) < self.fill * self.period
        block[:, jj, ii] = np.where(inside, np.uint8(self.label), block[:, jj, ii])


def _anatomy() -> list[_Shape | _RibCage]:
    """The torso, in painting order (later shapes overwrite earlier ones), reference mm."""
    ax, by = _BODY
    vertebra = (34.0, 0.8)
    return [
        _Shape(FAT, (0, 0, 0), (ax, by, _INF)),
        _Shape(MUSCLE, (0, 0, 0), (ax - 12, by - 12, _INF)),
        _Shape(SOFT, (0, 0, 0), (ax - 25, by - 24, _INF)),
        _Shape(MUSCLE, (-38, 88, 0), (28, 20, _INF)),
        _Shape(MUSCLE, (38, 88, 0), (28, 20, _INF)),
        # Thorax: lungs, trachea, then the heart with contrast-filled chambers.
        _Shape(LUNG, (-80, 10, 150), (62, 85, 190)),
        _Shape(LUNG, (85, 15, 150), (58, 82, 185)),
        _Shape(GAS, (0, -10, 0), (9, 9, _INF), z_range=(230, _INF)),
        _Shape(HEART, (25, -35, 90), (60, 52, 65)),
        _Shape(VESSEL, (28, -38, 92), (36, 30, 40)),
        # Abdomen: the liver dome rises under the right lung.
        _Shape(LIVER, (-55, -5, -40), (90, 80, 95)),
        _Shape(SPLEEN, (80, 45, -30), (35, 45, 55)),
        _Shape(SOFT, (45, -25, -20), (45, 35, 50)),
        _Shape(GAS, (45, -48, 5), (25, 10, 15)),
        _Shape(FAT, (-70, 55, -135), (38, 42, 75)),
        _Shape(FAT, (70, 55, -120), (38, 42, 75)),
        _Shape(KIDNEY, (-70, 55, -135), (28, 32, 60)),
        _Shape(KIDNEY, (70, 55, -120), (28, 32, 60)),
        _Shape(GAS, (-40, -50, -200), (15, 10, 20)),
        _Shape(GAS, (30, -40, -230), (18, 12, 15)),
        _Shape(GAS, (0, -60, -170), (12, 8, 12)),
        _Shape(FLUID, (0, -40, -300), (45, 35, 40)),
        # Great vessels.
        _Shape(VESSEL, (15, 45, 0), (13, 13, _INF), z_range=(-260, 200)),
        _Shape(VESSEL, (-22, 40, 0), (12, 12, _INF), z_range=(-260, 60)),
        # Spine: discs everywhere, vertebral bodies (cortical shell, cancellous core) in bands,
        # posterior arch and spinous process, then the spinal canal through all levels.
        _Shape(SOFT, (0, 62, 0), (24, 22, _INF)),
        _Shape(CORTICAL, (0, 62, 0), (24, 22, _INF), band=vertebra),
        _Shape(CANCELLOUS, (0, 62, 0), (20, 18, _INF), band=vertebra),
        _Shape(CORTICAL, (0, 96, 0), (20, 16, _INF), band=vertebra),
        _Shape(CORTICAL, (0, 118, 0), (5, 12, _INF), band=vertebra),
        _Shape(FLUID, (0, 94, 0), (11, 9, _INF)),
        # Ribs and sternum.
        _RibCage(RIB, (ax - 22, by - 18), 9.0, (-60, 260), 26.0, 0.4, 30.0),
        _Shape(CANCELLOUS, (0, -(by - 14), 0), (15, 6, _INF), z_range=(60, 240)),
    ]


_ANATOMY = _anatomy()


def anatomy_scale(extent_x: float, extent_y: float) -> float:
    """Return the factor that shrinks the reference torso to fit an `extent_x` x `extent_y` mm
    field of view (never enlarged: 1.0 when the body fits at adult size)."""
    fits = [e / (2 * r * _MARGIN) for e, r in zip((extent_x, extent_y), _BODY) if e > 0]
    return float(min([1.0, *fits]))


def _labels_on_axes(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
    """Paint labels on the grid of ascending reference coordinates; returns (z, y, x) uint8."""
    labels = np.zeros((zs.size, ys.size, xs.size), dtype=np.uint8)
    for shape in _ANATOMY:
        x0, x1, y0, y1, z0, z1 = shape.bounds()
        i0, i1 = np.searchsorted(xs, x0, "left"), np.searchsorted(xs, x1, "right")
        j0, j1 = np.searchsorted(ys, y0, "left"), np.searchsorted(ys, y1, "right")
        k0, k1 = np.searchsorted(zs, z0, "left"), np.searchsorted(zs, z1, "right")
        if i0 >= i1 or j0 >= j1 or k0 >= k1:
            continue
        block = labels[k0:k1, j0:j1, i0:i1]
        if isinstance(shape, _RibCage):
            shape.paint(block, xs[i0:i1], ys[j0:j1], zs[k0:k1])
            continue
        mask = shape.mask(
            xs[np.newaxis, np.newaxis, i0:i1],
            ys[np.newaxis, j0:j1, np.newaxis],
            zs[k0:k1, np.newaxis, np.newaxis],
        )
        # copyto broadcasts the mask (a z-independent cylinder stays 2-D): no index arrays.
        np.copyto(block, np.uint8(shape.label), where=mask)
    return labels


def _axis_of(direction: np.ndarray) -> int | None:
    """Return the patient axis (0 x, 1 y, 2 z) `direction` points along, or None if oblique."""
    axis = int(np.argmax(np.abs(direction)))
    return axis if abs(abs(direction[axis]) - 1.0) < 1e-9 else None


def phantom_labels(
    positions: np.ndarray,
    row_cosine: Sequence[float],
    column_cosine: Sequence[float],
    pixel_spacing: tuple[float, float],
    size: tuple[int, int],
) -> np.ndarray:
    """Return the tissue labels sampled on a stack of image planes.

    Parameters
    ----------
    positions : numpy.ndarray
        (slices, 3) Image Position (Patient) of each plane, LPS mm.
    row_cosine, column_cosine : sequence of float
        Unit direction (LPS) along a row (increasing column index) and down a column
        (increasing row index): the two halves of Image Orientation (Patient).
    pixel_spacing : (float, float)
        Spacing between rows and between columns, mm (DICOM Pixel Spacing order).
    size : (int, int)
        Rows and columns.

    Returns
    -------
    numpy.ndarray
        uint8 labels (slices, rows, columns), keys of ``TISSUES``. The anatomy is centred on the
        middle of the sampled region and scaled to fit its extent in patient x and y.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    row = np.asarray(row_cosine, dtype=np.float64)
    col = np.asarray(column_cosine, dtype=np.float64)
    dy, dx = (float(s) for s in pixel_spacing)
    rows, cols = size
    # Voxel-centre extent of the whole stack: the eight corners bound it (planes are flat).
    corners = np.concatenate([
        positions + a * (cols - 1) * dx * row + b * (rows - 1) * dy * col
        for a in (0, 1) for b in (0, 1)
    ])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    centre = 0.5 * (lo + hi)
    scale = anatomy_scale(hi[0] - lo[0], hi[1] - lo[1])

    row_axis, col_axis = _axis_of(row), _axis_of(col)
    varying = np.ptp(positions, axis=0) > 1e-9
    normal_axes = {0, 1, 2} - {row_axis, col_axis}
    if (
        row_axis is not None and col_axis is not None and row_axis != col_axis
        and not any(varying[a] for a in (row_axis, col_axis))
    ):
        # Axis-aligned stack: each array axis runs along one patient axis, so the label grid
        # is painted directly on 1-D coordinates and transposed into place.
        (normal_axis,) = normal_axes
        coords = {
            normal_axis: positions[:, normal_axis],
            col_axis: positions[0, col_axis] + np.arange(rows) * dy * col[col_axis],
            row_axis: positions[0, row_axis] + np.arange(cols) * dx * row[row_axis],
        }
        grids = []
        for axis in (2, 1, 0):  # painted in (z, y, x) order
            ref = (coords[axis] - centre[axis]) / scale
            order = np.argsort(ref, kind="stable")
            grids.append((ref[order], order))
        labels = _labels_on_axes(grids[2][0], grids[1][0], grids[0][0])
        for dim, (_, order) in enumerate(grids):
            if not np.array_equal(order, np.arange(order.size)):
                labels = np.take(labels, np.argsort(order), axis=dim)
        # Painted axes are (z, y, x) = patient axes (2, 1, 0); reorder to (slice, row, column).
        perm = [2 - normal_axis, 2 - col_axis, 2 - row_axis]
        return np.ascontiguousarray(labels.transpose(perm))

    # Oblique or sheared stack: nearest-neighbour lookup in an axis-aligned label grid.
    steps = [dx, dy]
    if len(positions) > 1:
        steps.append(float(np.min(np.linalg.norm(np.diff(positions, axis=0), axis=1))) or dx)
    extent = np.maximum(hi - lo, 1e-6)
    step = max(min(steps), float(np.cbrt(np.prod(extent + min(steps)) / _MAX_GRID_VOXELS)))
    counts = np.floor(extent / step).astype(int) + 2
    axes = [lo[a] + np.arange(counts[a]) * step for a in range(3)]
    grid = _labels_on_axes(*[(axes[a] - centre[a]) / scale for a in range(3)])
    out = np.empty((len(positions), rows, cols), dtype=np.uint8)
    jj = np.arange(rows, dtype=np.float64)[:, np.newaxis] * dy
    ii = np.arange(cols, dtype=np.float64)[np.newaxis, :] * dx
    for k, origin in enumerate(positions):
        index = []
        for a in range(3):
            point = origin[a] + ii * row[a] + jj * col[a]
            index.append(np.clip(np.rint((point - lo[a]) / step), 0, counts[a] - 1).astype(np.intp))
        out[k] = grid[index[2], index[1], index[0]]
    return out


def tissue_values(
    labels: np.ndarray, *, modality: str = "CT", seed: int = 0, noise: bool = True
) -> np.ndarray:
    """Return CT Hounsfield units (int16) or MR signal intensities (uint16) for `labels`.

    Parameters
    ----------
    labels : numpy.ndarray
        uint8 tissue labels (keys of ``TISSUES``), any shape.
    modality : {"CT", "MR"}
    seed : int
        Seeds the noise: the same labels and seed give the same values.
    noise : bool
        Add Gaussian noise (sigma ``CT_NOISE_HU`` HU; ``MR_NOISE`` for MR, magnitude-rectified
        as in MR images). Values are clipped to ``CT_RANGE`` / ``MR_RANGE``.
    """
    if modality not in ("CT", "MR"):
        raise ParameterError(f"modality={modality!r}; expected 'CT' or 'MR'")
    column = 1 if modality == "CT" else 2
    table = np.zeros(256, dtype=np.float32)
    for label, entry in TISSUES.items():
        table[label] = entry[column]
    low, high = CT_RANGE if modality == "CT" else MR_RANGE
    dtype = np.int16 if modality == "CT" else np.uint16
    if not noise:
        return table.astype(dtype)[labels]
    out = np.empty(labels.shape, dtype=dtype)
    flat_in, flat_out = labels.reshape(-1), out.reshape(-1)
    rng = np.random.default_rng(seed)
    sigma = CT_NOISE_HU if modality == "CT" else MR_NOISE
    chunk = 1 << 22
    for start in range(0, flat_in.size, chunk):
        values = table[flat_in[start:start + chunk]]
        values += rng.standard_normal(values.size, dtype=np.float32) * np.float32(sigma)
        if modality == "MR":
            np.abs(values, out=values)
        np.rint(values, out=values)
        np.clip(values, low, high, out=values)
        flat_out[start:start + chunk] = values
    return out


def phantom_volume(
    shape: tuple[int, int, int] = (48, 128, 128),
    *,
    spacing: tuple[float, float, float] = (2.5, 0.7, 0.7),
    modality: str = "CT",
    seed: int = 0,
    noise: bool = True,
) -> np.ndarray:
    """Return an axial torso phantom volume.

    Parameters
    ----------
    shape : (int, int, int)
        (z, y, x) = (slices, rows, columns). Axis 0 runs inferior -> superior, axis 1
        anterior -> posterior, axis 2 patient right -> left (axial images, ascending z).
    spacing : (float, float, float)
        Voxel spacing in mm, (z, y, x) order. The anatomy is defined in mm and scaled
        uniformly to fit the y-x field of view, so it keeps its proportions at any spacing.
    modality : {"CT", "MR"}
        CT gives int16 Hounsfield units: air -1000, lung about -850, fat -100, soft tissue 40,
        organs 35-60, contrast vessels 200, bone 450-1300. MR gives uint16 T1-like intensities.
    seed : int
        Seeds the noise.
    noise : bool
        Add Gaussian noise (about 10 HU for CT).

    Returns
    -------
    numpy.ndarray
        (z, y, x), int16 (CT) or uint16 (MR).

    Raises
    ------
    ParameterError
        On a bad shape, spacing or modality.
    """
    shape = parse_shape(shape)
    dz, dy, dx = parse_spacing(spacing)
    positions = np.zeros((shape[0], 3))
    positions[:, 2] = np.arange(shape[0]) * dz
    labels = phantom_labels(positions, (1, 0, 0), (0, 1, 0), (dy, dx), shape[1:])
    return tissue_values(labels, modality=modality, seed=seed, noise=noise)


def parse_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a (z, y, x) volume shape; raise ParameterError naming `shape`."""
    try:
        parsed = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ParameterError(f"shape={shape!r}; expected three positive integers") from None
    if len(parsed) != 3 or min(parsed) < 1 or parsed != tuple(shape):
        raise ParameterError(f"shape={shape!r}; expected three positive integers (z, y, x)")
    return parsed  # type: ignore[return-value]


def parse_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Validate a (z, y, x) spacing in mm; raise ParameterError naming `spacing`."""
    try:
        parsed = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ParameterError(f"spacing={spacing!r}; expected three positive mm values") from None
    if len(parsed) != 3 or not all(np.isfinite(parsed)) or min(parsed) <= 0:
        raise ParameterError(f"spacing={spacing!r}; expected three positive mm values (z, y, x)")
    return parsed  # type: ignore[return-value]
