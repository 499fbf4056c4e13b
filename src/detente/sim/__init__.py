"""detente.sim: see DESIGN.md (lands with its issue)."""
