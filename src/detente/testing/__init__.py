"""Fluent builders for tests and benchmarks: ``a_node("n1").gpus(8).in_rack("r1").build()``."""

from detente.testing.builders import (
    BLOCK,
    RACK,
    World,
    a_cluster_queue,
    a_job,
    a_node,
    racks,
)

__all__ = ["BLOCK", "RACK", "World", "a_cluster_queue", "a_job", "a_node", "racks"]
