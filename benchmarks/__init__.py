"""Benchmarks of torchbuf against imitation, SB3, torchrl and a raw-copy floor (not part of the package)."""
