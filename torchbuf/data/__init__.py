"""The ground of the data path: typed batches, packed trajectories, conversions and space checks.

Nothing here knows a buffer, an env convention or a file format; every other room builds on it.
"""
