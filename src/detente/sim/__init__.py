"""Trace-driven simulation: the same `run_cycle` as the control plane, on a virtual clock."""
