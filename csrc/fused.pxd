# cython: language_level=3
"""Fused dtype sets shared by the kernels in csrc/ (cimport them; never redefine them)."""

from libc.stdint cimport int8_t, int16_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t

# Unsigned words of every width a DICOM pixel occupies: signed and float pixels are handled
# as their bit patterns, so a kernel is compiled once per width, not once per dtype.
ctypedef fused uword_t:
    uint8_t
    uint16_t
    uint32_t
    uint64_t

# Stored pixel values used as palette indices (signed when Pixel Representation is 1).
ctypedef fused index_t:
    uint8_t
    uint16_t
    int16_t
    int32_t

# Palette Color LUT Data entries (8 or 16 bits).
ctypedef fused lut_t:
    uint8_t
    uint16_t

# Voxel values a volume kernel computes on (the store's integer and float dtypes up to 32 bits
# per integer; bool passes as uint8).
ctypedef fused voxel_t:
    uint8_t
    int8_t
    uint16_t
    int16_t
    uint32_t
    int32_t
    float
    double

# The output dtypes of the volume kernels: the same set as voxel_t, as a second fused type so
# a kernel's input and output dtypes vary apart.
ctypedef fused store_t:
    uint8_t
    int8_t
    uint16_t
    int16_t
    uint32_t
    int32_t
    float
    double
