"""Compiled Cython kernels (built from csrc/ by setup.py). Import through voxelflow.kernels."""
