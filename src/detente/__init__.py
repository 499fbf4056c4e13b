"""detente: one scheduler for one GPU pool."""

__version__ = "0.1.0"
