"""The native extensions: every csrc/<name>.pyx becomes voxelflow._native.<name>.

Metadata lives in pyproject.toml; this file only knows how to compile. Extensions compile in
parallel (one per core), and each compiled extension is kept in build/ext-cache/ under a hash
of its C source, flags, compiler and Python / numpy ABI: a re-install whose sources did not
change copies them instead of compiling again (pip builds editable installs in a fresh
temporary folder each time, so build_ext's own up-to-date check never fires).

Cython runs only when a .pyx or .pxd is newer than its C file, or the Cython version or the
OpenMP setting changed (build/cython-stamp.json): cythonize's own check compares against
Cython's bundled .pxd files, which each isolated build environment installs anew, so it
re-translated every file on every install. The extensions use typed memoryviews, not numpy's
C API, so the build needs no numpy.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CSRC = "csrc"
CACHE = HERE / "build" / "ext-cache"
STAMP = HERE / "build" / "cython-stamp.json"


def _compiler_accepts(flag: str) -> bool:
    """Whether the C compiler builds and links a trivial OpenMP program with `flag`."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc.split()[0]) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("#include <omp.h>\nint main(void){return omp_get_max_threads() < 1;}\n")
        result = subprocess.run(
            [*cc.split(), flag, str(src), "-o", str(Path(tmp) / "probe")],
            capture_output=True,
        )
        return result.returncode == 0


def _openmp_flags() -> list[str]:
    if os.environ.get("VOXELFLOW_NO_OPENMP"):
        return []
    if sys.platform == "win32":
        return ["/openmp"]
    return ["-fopenmp"] if _compiler_accepts("-fopenmp") else []


OPENMP = _openmp_flags()
COMPILE = ["/O2"] if sys.platform == "win32" else ["-O3"]

PYX = sorted((HERE / CSRC).glob("*.pyx"))
# what the generated C depends on besides the sources
TRANSLATION = {"cython": Cython.__version__, "openmp": bool(OPENMP)}


def _translated() -> bool:
    """Whether every .pyx has a C file newer than all the project's Cython sources, made by
    this Cython with this OpenMP setting."""
    try:
        if json.loads(STAMP.read_text()) != TRANSLATION:
            return False
        newest = max(p.stat().st_mtime for p in (HERE / CSRC).glob("*.p[yx][xd]"))
        return all(pyx.with_suffix(".c").stat().st_mtime >= newest for pyx in PYX)
    except (OSError, ValueError):
        return False


def _extensions(suffix: str) -> list[Extension]:
    return [
        Extension(
            f"voxelflow._native.{pyx.stem}",
            [str(pyx.with_suffix(suffix).relative_to(HERE))],
            include_dirs=[CSRC],
            extra_compile_args=COMPILE + OPENMP,
            extra_link_args=OPENMP,
        )
        for pyx in PYX
    ]


def _cache_key(ext: Extension) -> str:
    digest = hashlib.sha256()
    for source in ext.sources:
        text = Path(source).read_bytes()
        # Cython's metadata comment names the build's include folders, which pip's isolated
        # build environment puts under a new temporary path each time: not part of the code
        start, end = text.find(b"/* BEGIN: Cython Metadata"), text.find(b"END: Cython Metadata */")
        if start != -1 and end != -1:
            text = text[:start] + text[end:]
        digest.update(text)
    for part in (
        ext.extra_compile_args,
        ext.extra_link_args,
        ext.define_macros,
        os.environ.get("CC", ""),
        os.environ.get("CFLAGS", ""),
        sys.version,
        sysconfig.get_config_var("EXT_SUFFIX"),
        sysconfig.get_platform(),
    ):
        digest.update(repr(part).encode())
    return digest.hexdigest()[:24]


class CachedBuildExt(build_ext):
    """build_ext, in parallel, reusing an extension compiled from the same C source and flags."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extension(self, ext: Extension) -> None:
        target = Path(self.get_ext_fullpath(ext.name))
        cached = CACHE / f"{ext.name}-{_cache_key(ext)}{target.suffix}"
        if cached.is_file() and not self.force:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, target)
            sys.stdout.write(f"voxelflow: {ext.name} unchanged, reused from {cached.relative_to(HERE)}\n")
            return
        sys.stdout.write(f"voxelflow: compiling {ext.name}\n")  # one write: threads interleave print
        super().build_extension(ext)
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + f".{os.getpid()}.partial")
        shutil.copyfile(target, partial)
        os.replace(partial, cached)  # a reader never sees half a file


def _ext_modules() -> list[Extension]:
    if _translated():
        return _extensions(".c")
    sys.stdout.write(f"voxelflow: translating {len(PYX)} Cython sources to C\n")
    modules = cythonize(
        _extensions(".pyx"),
        nthreads=os.cpu_count() or 1,
        language_level=3,
        force=True,
        compile_time_env={"HAVE_OPENMP": bool(OPENMP)},
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
    STAMP.parent.mkdir(parents=True, exist_ok=True)
    STAMP.write_text(json.dumps(TRANSLATION))
    return modules


setup(cmdclass={"build_ext": CachedBuildExt}, ext_modules=_ext_modules())
