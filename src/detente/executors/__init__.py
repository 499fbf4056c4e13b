"""detente.executors: see DESIGN.md (lands with its issue)."""
