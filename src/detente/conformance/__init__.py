"""Slurm conformance: the same batch scripts on real Slurm and on detente, compared
field by field (`cases`, `run`, `systems`, `report`)."""
