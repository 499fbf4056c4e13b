"""Where work really runs. `base.Executor` is the contract; `local` runs pods as
process groups on this machine (virtual nodes)."""
