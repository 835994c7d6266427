"""Metrics and figures: bits per dimension, offline sample quality (Frechet distance in a
small classifier's feature space), image grids, scatters and loss curves."""
