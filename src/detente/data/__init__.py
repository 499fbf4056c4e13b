"""Bundled data: the Philly trace (CC-BY-4.0), openb node list, Lingjun topology."""
