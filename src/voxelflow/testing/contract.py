"""The base of the kernel-backend contract suites (shipped, as zarr ships its store test bases).

Each kernel family's test module subclasses :class:`KernelBackendContract` once per backend
(``TestReference``, ``TestCython``, ``TestNumba``) and adds its own cases; every backend must
then load and behave as the NumPy reference does.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import kernels

__all__ = ["KernelBackendContract"]


class KernelBackendContract:
    """What every backend of a kernel family must do. Subclasses set ``backend`` and
    ``kernel_names`` (the family's kernels)."""

    backend: str
    kernel_names: tuple[str, ...] = ()

    def kernel(self, name: str) -> Callable[..., object]:
        return kernels.get(name, self.backend)

    def test_registered_and_available(self) -> None:
        available = kernels.available()
        for name in self.kernel_names:
            assert self.backend in kernels.KERNELS[name]
            # a registered backend that does not load is a build failure, not a skip
            assert self.backend in available[name], f"{name}/{self.backend} does not load"
