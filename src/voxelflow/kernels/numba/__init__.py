"""Numba implementations. Compilation flags come from :mod:`voxelflow.kernels.numba.config`."""
