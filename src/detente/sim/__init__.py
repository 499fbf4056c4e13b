"""Trace-driven simulation: the same driver (`detente.core.driver.schedule`) as the
control plane and `plan`, on a virtual clock."""
