"""The scheduling brain: pure, deterministic, no I/O, no clock, no threads.

Time (`now`) and randomness (a seeded `random.Random`) are always arguments.
"""
