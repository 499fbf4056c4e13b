"""detente.gateway: see DESIGN.md (lands with its issue)."""
