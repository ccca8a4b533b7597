"""The native extensions: every csrc/<name>.pyx becomes voxelflow._native.<name>.

Metadata lives in pyproject.toml; this file only knows how to compile.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
CSRC = "csrc"


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

extensions = [
    Extension(
        f"voxelflow._native.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[np.get_include(), CSRC],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=COMPILE + OPENMP,
        extra_link_args=OPENMP,
    )
    for pyx in sorted((HERE / CSRC).glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compile_time_env={"HAVE_OPENMP": bool(OPENMP)},
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
