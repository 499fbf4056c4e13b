"""The control plane: services over the core (and, later, the REST API, store and reconcilers)."""
