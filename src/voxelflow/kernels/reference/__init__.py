"""NumPy reference implementations: the oracles every native backend is tested against."""
