"""The ``voxelflow`` commands that make views: ``window``, ``resample`` and ``render``.

Each command is a thin call of one public function (:func:`voxelflow.render_frame`,
:func:`voxelflow.resample`, :func:`voxelflow.mpr`, :func:`voxelflow.project`,
:func:`voxelflow.rotating_projection`, :func:`voxelflow.curved_mpr`) with the same parameter
names and defaults: an option left out is not passed, so the function's own default applies.

Option values arrive as text and are checked here, before any store is opened or output
written, so that a bad value fails at once with a :class:`~voxelflow.errors.ParameterError`
naming the option (``cli.main`` prints it as one line, exit code 2). argparse's ``type=`` and
``choices=`` are not used for that reason: their errors print the usage and bypass ``main``.
Outputs are refused when they exist (unless ``--overwrite``) and written atomically.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ParameterError, VoxelflowError

__all__ = ["COMMANDS", "add_parsers", "run"]

#: The commands this module adds to ``voxelflow``.
COMMANDS = ("window", "resample", "render")
VIEWS = ("plane", "slab", "projection", "spin", "curved")

# Help texts name the library's choices without importing it (``voxelflow --help`` must not
# load numpy); tests/test_cli_views.py checks them against the library's own tables.
PRESET_NAMES = (
    "brain", "subdural", "stroke", "temporal_bone", "soft_tissue", "mediastinum", "lung",
    "abdomen", "liver", "bone", "spine",
)
RENDER_INTERPOLATIONS = ("linear", "nearest", "cubic")
RESAMPLE_INTERPOLATIONS = ("linear", "nearest", "cubic", "lanczos", "majority", "mode")
# each standard orientation and the LPS axis (x, y, z) its --position moves along
_ORIENTATIONS = {"axial": 2, "coronal": 1, "sagittal": 0}
_WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")

_IMAGE = (".png", ".jpg", ".jpeg")
_ANIMATION = (".gif", ".apng", ".png")
_NPY = (".npy",)
_NIFTI = (".nii", ".nii.gz")

_NEGATIVE = (
    "A value that starts with '-' is written --option=VALUE (e.g. --center=-10,0,5), as "
    "argparse would take it for an option."
)
_KEY_HELP = (
    "the volume's key in the store (`voxelflow info STORE` lists them); may be left out when "
    "the store holds exactly one volume"
)


# -- parsers ---------------------------------------------------------------------------------


def add_parsers(subparsers: Any) -> None:
    """Add ``window``, ``resample`` and ``render`` to the ``voxelflow`` command's subparsers."""
    raw = argparse.RawDescriptionHelpFormatter

    window = subparsers.add_parser(
        "window",
        help="one frame of a DICOM file through its display pipeline (or a window) -> PNG / JPEG",
        description=_describe("Write one frame of a DICOM file as display values (voxelflow.render_frame): "
        "the file's own Modality LUT, VOI (window or VOI LUT) and presentation by default, or the "
        "window given. The output's extension picks the format: .png (8- or 16-bit grey), "
        ".jpg / .jpeg (8-bit). Colour frames are not written (RGB has no grayscale window). "
        "Slices of stored volumes: `voxelflow render plane`.\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    window.add_argument("file", metavar="FILE", help="a DICOM file")
    _add_output(window, "OUT.png|OUT.jpg")
    window.add_argument("--frame", metavar="N", help="0-based frame of a multi-frame file (default 0)")
    _add_window(window)
    window.add_argument("--voi-index", metavar="N",
                        help="which of the file's own VOI choices to use, 0-based: its VOI LUTs, "
                        "then its windows (default 0; an automatic min/max window when it has none)")
    _add_bits(window)

    resample = subparsers.add_parser(
        "resample",
        help="resample a stored volume onto a new spacing or shape -> store, NIfTI or .npy",
        description=_describe("Resample a stored volume (voxelflow.resample): voxel (0, 0, 0) keeps its "
        "centre and the axes their directions; along each axis as many voxels as fit between the "
        "first and last input centres. The output (-o) decides where it goes:\n"
        "  OUT.nii / OUT.nii.gz  NIfTI-1 (RAS affine; stored values with the rescale as "
        "scl_slope / scl_inter, so readers get modality values, e.g. HU)\n"
        "  OUT.npy               the voxels as resample returns them: stored values in the "
        "input's dtype (the rescale to modality values is printed, not applied)\n"
        "  a folder              a volume store (created if missing; an existing folder must be a "
        "store or empty), under --out-key"),
        formatter_class=raw,
    )
    _add_volume(resample)
    _add_output(resample, "OUT.nii.gz|OUT.npy|STORE",
                "a .nii / .nii.gz or .npy file (its folder must exist; written under a temporary "
                "name and renamed), or a store folder (written atomically by the store)")
    resample.add_argument("--spacing", metavar="MM",
                          help="new voxel spacing in mm: one number (isotropic) or Z,Y,X in array "
                          "order (slice, row, column); give --spacing or --shape")
    resample.add_argument("--shape", metavar="N",
                          help="new shape in voxels: one number or Z,Y,X (the first and last voxel "
                          "centres are kept)")
    resample.add_argument("--interp", metavar="NAME",
                          help=f"interpolation: {' | '.join(RESAMPLE_INTERPOLATIONS)} (default "
                          "linear; for label volumes nearest, or majority (alias mode), which "
                          "never blur)")
    resample.add_argument("--anti-alias", action=argparse.BooleanOptionalAction, default=True,
                          help="Gaussian smoothing of downsampled axes before sampling (default: "
                          "on; --no-anti-alias turns it off)")
    resample.add_argument("--out-key", metavar="KEY",
                          help="the key to write under when OUT is a store (default: KEY)")

    render = subparsers.add_parser(
        "render",
        help="a view of a stored volume: plane, slab, projection, spin or curved MPR",
        description=_describe("Render a view of a stored volume. Images (.png, .jpg) hold display values: "
        "the volume's own window (the first of its DICOM windows) or --window / --preset. "
        ".npy and NIfTI hold float32 modality values (e.g. HU), NaN where the view leaves the "
        "volume. `voxelflow render VIEW --help` lists each view's options."),
        formatter_class=raw,
    )
    views = render.add_subparsers(dest="view", required=True, metavar="VIEW")

    plane = views.add_parser(
        "plane",
        help="a plane through the volume (MPR): axial, coronal, sagittal or oblique",
        description=_describe("The image of the volume on a plane (voxelflow.mpr). The plane is an "
        "orientation (axial by default) through the voxel centre nearest the volume's middle, "
        "moved with --position or --center, or an oblique plane (--normal, --up). Output by "
        "extension: .png / .jpg (display values), .npy or .nii / .nii.gz (float32 modality "
        "values; the NIfTI is a one-slice volume placed where the plane lies).\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    _add_view_common(plane, "OUT.png|OUT.jpg|OUT.npy|OUT.nii.gz")
    _add_plane(plane)
    _add_interp(plane)
    _add_window(plane)
    _add_bits(plane)

    slab = views.add_parser(
        "slab",
        help="a thick slab about a plane: MIP, MinIP, mean or sum",
        description=_describe("A thick slab centred on a plane, its samples along the plane's normal "
        "reduced per pixel (voxelflow.mpr with a voxelflow.Slab). The plane options are those of "
        "`render plane`; outputs as there.\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    _add_view_common(slab, "OUT.png|OUT.jpg|OUT.npy|OUT.nii.gz")
    _add_plane(slab)
    slab.add_argument("--slab", metavar="MM", required=True, help="the slab's full thickness in mm (required)")
    _add_mode(slab, "--mode", "the reduction")
    slab.add_argument("--slab-spacing", metavar="MM",
                      help="largest distance between samples along the normal, mm (default: the "
                      "volume's smallest voxel spacing)")
    _add_interp(slab)
    _add_window(slab)
    _add_bits(slab)

    projection = views.add_parser(
        "projection",
        help="the whole volume projected along a direction (MIP, MinIP, mean, ray sum)",
        description=_describe("The projection of the whole volume seen along a direction "
        "(voxelflow.project): --direction, or --azimuth / --elevation; default the anterior "
        "view (rays travel posterior, superior up). Output by extension: .png / .jpg (display "
        "values), .npy (float32 modality values).\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    _add_view_common(projection, "OUT.png|OUT.jpg|OUT.npy")
    projection.add_argument("--direction", metavar="X,Y,Z",
                            help="LPS vector the rays travel along, from the viewer into the "
                            "patient (normalised), e.g. 0,1,0 for the anterior view")
    projection.add_argument("--azimuth", metavar="DEG",
                            help="degrees about the patient's superior axis from the anterior "
                            "view; 90 is the view from the patient's left (default 0)")
    projection.add_argument("--elevation", metavar="DEG",
                            help="degrees towards superior; 90 looks down from above the head "
                            "(default 0)")
    _add_mode(projection, "--mode", "the ray reduction")
    _add_image_grid(projection, "the volume's outline seen along the direction")
    projection.add_argument("--step", metavar="MM",
                            help="largest distance between samples along a ray, mm (default: one "
                            "sample per voxel crossed)")
    _add_interp(projection)
    _add_window(projection)
    _add_bits(projection)

    spin = views.add_parser(
        "spin",
        help="a rotating projection (turntable) -> animated GIF / APNG",
        description=_describe("Projections turning about an axis through the volume's centre "
        "(voxelflow.rotating_projection), the anterior view first. Output by extension: .gif, "
        ".apng or .png (animated PNG) of 8-bit display values, looping; .npy (views, rows, "
        "columns) of float32 modality values.\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    _add_view_common(spin, "OUT.gif|OUT.apng|OUT.npy")
    spin.add_argument("--views", metavar="N",
                      help="number of views over the full turn (default 36, one every 10 degrees)")
    spin.add_argument("--axis", metavar="AXIS",
                      help="rotation axis: S, I, A, P, L, R (patient directions) or an LPS vector "
                      "X,Y,Z (default S)")
    spin.add_argument("--fps", metavar="F",
                      help="frames per second of the animation, 0.1 .. 100 (default 10)")
    _add_mode(spin, "--mode", "the ray reduction")
    _add_image_grid(spin, "the volume's bounding cylinder about the axis")
    _add_interp(spin)
    _add_window(spin)

    curved = views.add_parser(
        "curved",
        help="curved planar reformation along a centerline (straightened or stretched)",
        description=_describe("The curved planar reformation of the volume along a centerline "
        "(voxelflow.curved_mpr): rows run along the centerline (row 0 at its first point), "
        "columns across it. Output by extension: .png / .jpg (display values), .npy (float32 "
        "modality values).\n\n" + _NEGATIVE),
        formatter_class=raw,
    )
    _add_view_common(curved, "OUT.png|OUT.jpg|OUT.npy")
    curved.add_argument("--centerline", metavar="FILE", required=True,
                        help="the centerline's points, LPS mm, in order (required): a text file of "
                        "one 'x y z' (or x,y,z) per line ('#' starts a comment), a JSON list of "
                        "[x, y, z], or an .npy array of shape (N, 3)")
    curved.add_argument("--width", metavar="MM", required=True,
                        help="width of the image across the centerline, mm (required)")
    curved.add_argument("--mode", metavar="NAME",
                        help="the CPR method: straightened | stretched (default straightened)")
    curved.add_argument("--spacing", metavar="MM",
                        help="pixel spacing along and across, mm (default: the volume's smallest "
                        "voxel spacing)")
    curved.add_argument("--up", metavar="X,Y,Z",
                        help="LPS direction the columns run along, made perpendicular to the "
                        "centerline (default: the patient's left, or superior for a left-right "
                        "centerline)")
    curved.add_argument("--slab", metavar="MM",
                        help="a thick slab about the curved surface, its thickness in mm (default: "
                        "none, the surface itself)")
    _add_mode(curved, "--slab-mode", "the slab's reduction")
    _add_interp(curved)
    _add_window(curved)
    _add_bits(curved)


def _describe(text: str) -> str:
    """`text` wrapped for a terminal, keeping its paragraphs and its indented list lines
    (argparse's raw formatter prints descriptions as they are; the default one would join
    the list lines)."""
    import re
    import textwrap

    lines = []
    for line in text.split("\n"):
        # an indented "term  explanation" line continues under its explanation
        term = re.match(r"\s+\S.*?\s{2,}", line)
        hanging = " " * (term.end() if term else 0)
        lines.append(textwrap.fill(line, 88, subsequent_indent=hanging) or "")
    return "\n".join(lines)


def _add_volume(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="a volume store (voxelflow ingest --store)")
    parser.add_argument("key", metavar="KEY", nargs="?", help=_KEY_HELP)


def _add_output(parser: argparse.ArgumentParser, metavar: str, what: str | None = None) -> None:
    parser.add_argument("-o", "--output", metavar=metavar, required=True,
                        help=what or "the file to write (its extension picks the format; its "
                        "folder must exist), written under a temporary name and renamed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing output (default: refuse it)")


def _add_view_common(parser: argparse.ArgumentParser, metavar: str) -> None:
    _add_volume(parser)
    _add_output(parser, metavar)


def _add_plane(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orientation", metavar="NAME",
                        help=f"{' | '.join(_ORIENTATIONS)} (default axial unless --normal is given): "
                        "axial seen from the feet, coronal from the front, sagittal from the "
                        "patient's left")
    parser.add_argument("--position", metavar="MM",
                        help="with an orientation: the plane's LPS coordinate in mm along the "
                        "view's axis (z for axial, y for coronal, x for sagittal; default: the "
                        "voxel centre nearest the volume's middle)")
    parser.add_argument("--center", metavar="X,Y,Z",
                        help="LPS mm of the image centre (default: the volume's middle, on a voxel "
                        "centre along the normal)")
    parser.add_argument("--normal", metavar="X,Y,Z",
                        help="an oblique plane's normal, an LPS vector (shown upright as the "
                        "standard view it is nearest to, unless --up is given)")
    parser.add_argument("--up", metavar="X,Y,Z",
                        help="with --normal: the LPS direction shown at the top of the image")
    _add_image_grid(parser, "the volume's extent in the plane")


def _add_image_grid(parser: argparse.ArgumentParser, covers: str) -> None:
    parser.add_argument("--size", metavar="N",
                        help=f"output pixels: N (square) or ROWS,COLS (default: {covers})")
    parser.add_argument("--spacing", metavar="MM",
                        help="pixel spacing in mm: one number or ROWS,COLS (between rows, between "
                        "columns; default: the volume's smallest voxel spacing)")


def _add_mode(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(flag, metavar="NAME",
                        help=f"{what}: mip (or max) | minip (or min) | mean | sum (default mip)")


def _add_interp(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--interp", metavar="NAME",
                        help=f"interpolation of the volume: {' | '.join(RENDER_INTERPOLATIONS)} "
                        "(default linear; cubic is the B-spline with its prefilter)")


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--window", metavar="C,W[,FN]",
                        help="the window: center and width in modality units (HU for CT), with "
                        f"the VOI LUT function {' | '.join(_WINDOW_FUNCTIONS)} (default linear); "
                        "default: the image's own window, else min/max")
    parser.add_argument("--preset", metavar="NAME",
                        help=f"a named CT window instead (HU): {', '.join(PRESET_NAMES)}")


def _add_bits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bits", metavar="8|16",
                        help="display depth of a PNG: 8 or 16 bits (default 8; JPEG is 8-bit)")
    parser.add_argument("--quality", metavar="Q",
                        help="JPEG quality, 1 .. 95 (default 90)")


# -- running ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the command `args` names (one of :data:`COMMANDS`); returns the exit code."""
    if args.command == "window":
        return _window(args)
    if args.command == "resample":
        return _resample(args)
    view: Callable[[argparse.Namespace], int] = {
        "plane": _plane_view,
        "slab": _plane_view,
        "projection": _projection,
        "spin": _spin,
        "curved": _curved,
    }[args.view]
    return view(args)


@contextmanager
def _option(name: str) -> Iterator[None]:
    """Errors the library raises on one option's value, named as the command line spells it."""
    try:
        yield
    except VoxelflowError as exc:
        raise ParameterError(f"{name}: {exc}") from exc


def _numbers(text: str, name: str, counts: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts or not all(math.isfinite(v) for v in values):
        raise ParameterError(f"{name} must be {what}, got {text!r}")
    return values


def _positive(text: str | None, name: str, unit: str = "mm") -> float | None:
    if text is None:
        return None
    (value,) = _numbers(text, name, (1,), f"a positive number of {unit}")
    if value <= 0:
        raise ParameterError(f"{name} must be a positive number of {unit}, got {text!r}")
    return value


def _number(text: str | None, name: str, unit: str) -> float | None:
    if text is None:
        return None
    return _numbers(text, name, (1,), f"a finite number of {unit}")[0]


def _vector(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    return _numbers(text, name, (3,), "3 comma-separated numbers X,Y,Z (LPS)")


def _pair(text: str | None, name: str, unit: str) -> tuple[float, float] | None:
    """N or ROWS,COLS, positive."""
    if text is None:
        return None
    values = _numbers(text, name, (1, 2), f"a positive number of {unit} or ROWS,COLS")
    if min(values) <= 0:
        raise ParameterError(f"{name} must be positive ({unit}), got {text!r}")
    return values[0], values[-1]


def _size(text: str | None, name: str = "--size") -> tuple[int, int] | None:
    pair = _pair(text, name, "pixels")
    if pair is None:
        return None
    if any(v != int(v) for v in pair):
        raise ParameterError(f"{name} must be whole numbers of pixels, got {text!r}")
    return int(pair[0]), int(pair[1])


def _integer(text: str | None, name: str, low: int, what: str) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ParameterError(f"{name} must be {what}, got {text!r}") from None
    if value < low:
        raise ParameterError(f"{name} must be {what}, got {value}")
    return value


def _choice(text: str | None, name: str, choices: Any) -> str | None:
    if text is not None and text not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _output(args: argparse.Namespace, suffixes: tuple[str, ...]) -> tuple[Path, str]:
    """The output path and its suffix, checked before any work: a known suffix, an existing
    folder, and no file there unless --overwrite."""
    path = Path(args.output)
    suffix = _suffix(path)
    if suffix not in suffixes:
        raise ParameterError(f"-o {path}: must end with one of {', '.join(dict.fromkeys(suffixes))}")
    _check_target(path, args.overwrite)
    return path, suffix


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise ParameterError(f"-o {path}: is a folder")
    if not path.parent.is_dir():
        raise ParameterError(f"-o {path}: its folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise ParameterError(f"-o {path}: exists; give --overwrite to replace it")


def _image_options(args: argparse.Namespace, suffix: str) -> tuple[int | None, int | None]:
    """(--bits, --quality) checked against the output format."""
    bits = _integer(getattr(args, "bits", None), "--bits", 8, "8 or 16")
    if bits is not None and bits not in (8, 16):
        raise ParameterError(f"--bits must be 8 or 16, got {bits}")
    quality = _integer(getattr(args, "quality", None), "--quality", 1, "an integer in 1..95")
    if quality is not None and quality > 95:
        raise ParameterError(f"--quality must be an integer in 1..95, got {quality}")
    jpeg = suffix in (".jpg", ".jpeg")
    if bits == 16 and jpeg:
        raise ParameterError("--bits 16: JPEG holds 8-bit images; write a .png")
    if quality is not None and not jpeg:
        raise ParameterError(f"--quality applies to JPEG output, not {suffix}")
    return bits, quality


def _voi(args: argparse.Namespace) -> Any:
    """The window --window or --preset names (a voxelflow Window), or None."""
    if args.window is not None and args.preset is not None:
        raise ParameterError("--window and --preset: give one")
    from .display import Window, preset

    if args.preset is not None:
        with _option("--preset"):
            return preset(args.preset)
    if args.window is None:
        return None
    parts = args.window.split(",")
    function = parts[2].strip().lower() if len(parts) == 3 else "linear"
    if len(parts) not in (2, 3) or function not in _WINDOW_FUNCTIONS:
        raise ParameterError(
            f"--window must be CENTER,WIDTH[,{'|'.join(_WINDOW_FUNCTIONS)}], got {args.window!r}"
        )
    center, width = _numbers(",".join(parts[:2]), "--window", (2,), "CENTER,WIDTH (modality units)")
    with _option("--window"):
        return Window(center=center, width=width, function=function)


def _wrote(path: Path, what: str) -> None:
    print(f"wrote {path} ({what})")


def _shape_text(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def _save_npy(path: Path, array: Any) -> None:
    """np.save, atomically: a temporary name in the same folder, then a rename."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- window ----------------------------------------------------------------------------------


def _window(args: argparse.Namespace) -> int:
    path, suffix = _output(args, _IMAGE)
    bits, quality = _image_options(args, suffix)
    frame = _integer(args.frame, "--frame", 0, "a frame number >= 0")
    voi_index = _integer(args.voi_index, "--voi-index", 0, "an index >= 0")
    voi = _voi(args)
    if not os.path.isfile(args.file):
        raise ParameterError(f"FILE {args.file}: no such file")
    from .display import render_frame
    from .render import save_image

    image = render_frame(args.file, window=voi, **_given(frame=frame, voi_index=voi_index, bits=bits))
    if image.ndim != 2:
        raise ParameterError(
            f"FILE {args.file}: a colour image ({image.shape[-1]} samples per pixel) has no "
            "grayscale window; voxelflow window writes grayscale images"
        )
    save_image(image, path, **_given(quality=quality))
    _wrote(path, f"{_shape_text(image.shape)}, {image.dtype}")
    return 0


# -- volumes ---------------------------------------------------------------------------------


def _open_volume(store_path: str, key: str | None) -> tuple[Any, str]:
    """The stored volume `key` names, or the store's only volume when `key` is None."""
    from .errors import StoreError
    from .store import VolumeStore

    if not os.path.isdir(store_path) or not os.path.isfile(os.path.join(store_path, "zarr.json")):
        raise StoreError(f"STORE {store_path}: not a voxelflow store (no such folder, or no zarr.json)")
    store = VolumeStore(store_path, read_only=True)
    if key is None:
        keys = store.keys()
        if len(keys) != 1:
            listed = f": {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}" if keys else ""
            raise ParameterError(
                f"KEY: give the volume's key; store {store_path} holds {len(keys)} volumes{listed}"
            )
        key = keys[0]
    return store.open(key), key


def _resample(args: argparse.Namespace) -> int:
    target = Path(args.output)
    suffix = _suffix(target)
    to_store = suffix not in _NPY + _NIFTI
    if to_store:
        if suffix not in ("", ".zarr") and not target.is_dir():
            raise ParameterError(
                f"-o {target}: must end with .nii, .nii.gz or .npy, or name a store folder "
                "(existing, or a new name without an extension or with .zarr)"
            )
        if target.exists() and not target.is_dir():
            raise ParameterError(f"-o {target}: exists and is not a folder")
        if target.is_dir() and not (target / "zarr.json").is_file() and any(target.iterdir()):
            raise ParameterError(f"-o {target}: is a folder that is neither a voxelflow store nor empty")
    else:
        if args.out_key is not None:
            raise ParameterError(f"--out-key goes with a store output, not {suffix}")
        _check_target(target, args.overwrite)
    if (args.spacing is None) == (args.shape is None):
        raise ParameterError("give --spacing or --shape (one of them)")
    options: dict[str, Any] = {"anti_alias": args.anti_alias}
    if args.spacing is not None:
        spacing = _numbers(args.spacing, "--spacing", (1, 3), "a positive number of mm or Z,Y,X")
        if min(spacing) <= 0:
            raise ParameterError(f"--spacing must be positive (mm), got {args.spacing!r}")
        # one number is isotropic: resample takes it as a scalar, not a 1-element list
        options["spacing"] = spacing[0] if len(spacing) == 1 else spacing
    else:
        shape = _numbers(args.shape, "--shape", (1, 3), "a positive number of voxels or Z,Y,X")
        if min(shape) < 1 or any(v != int(v) for v in shape):
            raise ParameterError(f"--shape must be positive whole numbers of voxels, got {args.shape!r}")
        options["shape"] = int(shape[0]) if len(shape) == 1 else [int(v) for v in shape]
    options.update(_given(interp=_choice(args.interp, "--interp", RESAMPLE_INTERPOLATIONS)))

    volume, key = _open_volume(args.store, args.key)
    from .geometry import affine_spacing
    from .progress import dask_progress
    from .resampling import resample
    from .volume import Volume

    if to_store:
        from .store import VolumeStore, parse_key

        out_key = args.out_key if args.out_key is not None else key
        with _option("--out-key"):
            out_key = parse_key(out_key)
        if target.is_dir() and not args.overwrite and out_key in VolumeStore(target, read_only=True):
            raise ParameterError(f"-o {target}: holds a volume {out_key!r}; give --overwrite to replace it")
    result = resample(volume, **options)
    spacing = "x".join(f"{s:.4g}" for s in affine_spacing(result.affine))
    what = f"{_shape_text(result.shape)}, {result.dtype}, {spacing} mm"
    if to_store:
        created = not target.exists()
        try:
            VolumeStore(target).write(out_key, result, overwrite=args.overwrite,
                                      progress=_progress(args, f"resampling into {out_key}", "slices"))
        except BaseException:
            if created:  # a store this command made holds nothing worth keeping
                shutil.rmtree(target, ignore_errors=True)
            raise
        print(f"wrote {out_key} in store {target} ({what})")
        return 0
    # a file: the lazy result computed once, under the progress display
    with dask_progress(_progress(args, "resampling", "slices"), _slices(result)):
        values = result.to_numpy()
    if suffix == ".npy":
        _save_npy(target, values)
        rescale = result.meta.get("rescale")
        if rescale and result.meta.get("values", "stored") == "stored":
            what += f"; stored values: modality = stored * {rescale['slope']:g} + {rescale['intercept']:g}"
    else:
        Volume(values, result.affine, result.meta).to_nifti(target)
    _wrote(target, what)
    return 0


def _progress(args: argparse.Namespace, label: str, unit: str) -> Any:
    """The progress callable of one step (None with --quiet)."""
    from .progress import terminal_reporter

    reporter = terminal_reporter(quiet=getattr(args, "quiet", False))
    return None if reporter is None else reporter(label, unit)


def _slices(volume: Any) -> int:
    return math.prod(volume.shape[:-2])


# -- render ----------------------------------------------------------------------------------
#
# Each view parses every option first (no store opened, nothing heavy imported), then opens the
# volume and makes the library's objects from it: a typo fails in a tenth of a second.


def _display_options(args: argparse.Namespace, suffix: str) -> tuple[Any, int | None, int | None]:
    """(--window / --preset as a Window, --bits, --quality), refused for .npy and NIfTI, whose
    float32 modality values no window applies to."""
    if suffix in _NPY + _NIFTI:
        for name in ("window", "preset", "bits", "quality", "fps"):
            if getattr(args, name, None) is not None:
                raise ParameterError(f"--{name} applies to images; {suffix} holds float32 modality values")
        return None, None, None
    bits, quality = _image_options(args, suffix)
    return _voi(args), bits, quality


def _display(volume: Any, suffix: str, voi: Any, bits: int | None) -> Any:
    """The display pipeline of an image output: the volume's own (as ``display=True`` takes
    it), its window replaced by `voi`, at `bits`; None for .npy and NIfTI."""
    if suffix in _NPY + _NIFTI:
        return None
    from .display import DisplayPipeline, pipeline_for

    pipeline = pipeline_for(volume) or DisplayPipeline()
    if voi is not None:
        pipeline = pipeline.with_voi(voi)
    return pipeline.with_bits(8 if bits is None else bits)


def _given(**options: Any) -> dict[str, Any]:
    """The options given: one left out is not passed, so the function's default applies."""
    return {name: value for name, value in options.items() if value is not None}


def _interp(args: argparse.Namespace) -> str | None:
    return _choice(args.interp, "--interp", RENDER_INTERPOLATIONS)


def _write_image(image: Any, path: Path, suffix: str, quality: int | None, where: Any = None) -> None:
    if suffix in _NPY:
        _save_npy(path, image)
    elif suffix in _NIFTI:
        from .volume import Volume

        # the plane is the grid of a one-slice volume (voxelflow.Plane.affine)
        Volume(image[None], where.affine).to_nifti(path)
    else:
        from .render import save_image

        save_image(image, path, **_given(quality=quality))
    _wrote(path, f"{_shape_text(image.shape)}, {image.dtype}")


def _plane_options(args: argparse.Namespace) -> dict[str, Any]:
    """The plane options parsed and checked for conflicts (nothing built yet)."""
    plane = {
        "size": _size(args.size),
        "spacing": _pair(args.spacing, "--spacing", "mm"),
        "position": _number(args.position, "--position", "mm"),
        "center": _vector(args.center, "--center"),
        "normal": _vector(args.normal, "--normal"),
        "up": _vector(args.up, "--up"),
        "orientation": _choice(args.orientation, "--orientation", _ORIENTATIONS),
    }
    if plane["normal"] is not None:
        if plane["orientation"] is not None:
            raise ParameterError("--orientation and --normal: give one")
        if plane["position"] is not None:
            raise ParameterError("--position goes with --orientation; give --center for an oblique plane")
    elif plane["up"] is not None:
        raise ParameterError("--up goes with --normal")
    return plane


def _plane(volume: Any, options: dict[str, Any]) -> Any:
    """The plane `options` name, built from the volume as voxelflow.Plane's constructors do
    (defaults: through the volume's middle, covering it, at its smallest spacing), then moved
    to --center and --position."""
    from .geometry import Plane

    grid = {"spacing": options["spacing"], "size": options["size"]}
    if options["normal"] is not None:
        plane = Plane.oblique(volume, options["normal"], up=options["up"], **grid)
    else:
        plane = getattr(Plane, options["orientation"] or "axial")(volume, **grid)
    if options["center"] is not None:
        plane = plane.replace(center=options["center"])
    if options["position"] is not None:
        center = list(plane.center)
        center[_ORIENTATIONS[options["orientation"] or "axial"]] = options["position"]
        plane = plane.replace(center=center)
    return plane


def _plane_view(args: argparse.Namespace) -> int:
    path, suffix = _output(args, _IMAGE + _NPY + _NIFTI)
    voi, bits, quality = _display_options(args, suffix)
    geometry = _plane_options(args)
    options = _given(interp=_interp(args))
    slab = None
    if args.view == "slab":
        thickness = _positive(args.slab, "--slab")
        spacing = _positive(args.slab_spacing, "--slab-spacing")
        from .render import Slab

        with _option("--mode"):
            slab = Slab(thickness, args.mode or "max", spacing=spacing)  # type: ignore[arg-type]
    volume, _ = _open_volume(args.store, args.key)
    plane = _plane(volume, geometry)
    from .render import mpr

    image = mpr(volume, plane, slab=slab, display=_display(volume, suffix, voi, bits), **options)
    _write_image(image, path, suffix, quality, plane)
    return 0


def _projection(args: argparse.Namespace) -> int:
    path, suffix = _output(args, _IMAGE + _NPY)
    voi, bits, quality = _display_options(args, suffix)
    options = _given(
        direction=_vector(args.direction, "--direction"),
        azimuth=_number(args.azimuth, "--azimuth", "degrees"),
        elevation=_number(args.elevation, "--elevation", "degrees"),
        mode=args.mode,
        size=_size(args.size),
        spacing=_pair(args.spacing, "--spacing", "mm"),
        step=_positive(args.step, "--step"),
        interp=_interp(args),
    )
    if "direction" in options and ("azimuth" in options or "elevation" in options):
        raise ParameterError("--direction and --azimuth / --elevation: give one")
    volume, _ = _open_volume(args.store, args.key)
    from .render import project

    image = project(volume, display=_display(volume, suffix, voi, bits), **options)
    _write_image(image, path, suffix, quality)
    return 0


def _spin(args: argparse.Namespace) -> int:
    path, suffix = _output(args, _ANIMATION + _NPY)
    voi, _, _ = _display_options(args, suffix)
    n_views = _integer(args.views, "--views", 1, "a number of views >= 1")
    axis = _vector(args.axis, "--axis") if args.axis is not None and "," in args.axis else args.axis
    options = _given(
        axis=axis,
        mode=args.mode,
        size=_size(args.size),
        spacing=_pair(args.spacing, "--spacing", "mm"),
        interp=_interp(args),
    )
    if suffix not in _NPY:
        # rotating_projection writes the animation itself (atomically)
        options.update(_given(path=path, fps=_positive(args.fps, "--fps", "frames per second")))
    volume, _ = _open_volume(args.store, args.key)
    from .render import rotating_projection

    display = _display(volume, suffix, voi, 8)
    views = rotating_projection(volume, 36 if n_views is None else n_views, display=display,
                                progress=_progress(args, "rendering views", "views"), **options)
    if suffix in _NPY:
        _save_npy(path, views)
    _wrote(path, f"{len(views)} views of {_shape_text(views.shape[1:])}, {views.dtype}")
    return 0


def _centerline(text: str) -> Any:
    """The points of a --centerline file (text, JSON or .npy), as an (N, 3) float array."""
    import json

    import numpy as np

    where = f"--centerline {text}"
    if not os.path.isfile(text):
        raise ParameterError(f"{where}: no such file")
    try:
        if text.lower().endswith(".npy"):
            points = np.load(text, allow_pickle=False)
        elif text.lower().endswith(".json"):
            with open(text, encoding="utf-8") as f:
                points = json.load(f)
        else:
            with open(text, encoding="utf-8") as f:
                lines = [line.split("#")[0].replace(",", " ").split() for line in f]
            points = [[float(v) for v in line] for line in lines if line]
        array = np.asarray(points, dtype=np.float64)
    except (ValueError, TypeError, OSError, UnicodeDecodeError) as exc:
        raise ParameterError(f"{where}: not a list of x y z points (mm): {exc}") from None
    if array.ndim != 2 or array.shape[1:] != (3,) or len(array) < 2:
        raise ParameterError(f"{where}: needs 2 or more x y z points (mm), got shape {array.shape}")
    return array


def _curved(args: argparse.Namespace) -> int:
    path, suffix = _output(args, _IMAGE + _NPY)
    voi, bits, quality = _display_options(args, suffix)
    options = _given(
        width_mm=_positive(args.width, "--width"),
        mode=_choice(args.mode, "--mode", ("straightened", "stretched")),
        spacing=_positive(args.spacing, "--spacing"),
        up=_vector(args.up, "--up"),
        interp=_interp(args),
    )
    thickness = _positive(args.slab, "--slab")
    if args.slab_mode is not None and thickness is None:
        raise ParameterError("--slab-mode goes with --slab (its thickness in mm)")
    if thickness is not None:
        from .render import Slab

        with _option("--slab-mode"):
            options["slab"] = Slab(thickness, args.slab_mode or "max")
    centerline = _centerline(args.centerline)
    volume, _ = _open_volume(args.store, args.key)
    from .render import curved_mpr

    image = curved_mpr(volume, centerline, display=_display(volume, suffix, voi, bits), **options)
    _write_image(image, path, suffix, quality)
    return 0
