"""Plugins, one module each. `detente.core.profiles` maps names to them."""
