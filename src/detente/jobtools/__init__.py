"""Slurm's job-side commands for jobs detente runs: ``srun`` and ``scontrol``.

Every job finds ``bin/srun`` and ``bin/scontrol`` first on its PATH. They are
standard-library Python (plus `detente.api.hostlist`), so they run under the job's
user with nothing of the control plane: the allocation comes from the job's
environment (`alloc`), and steps are recorded through a channel the job's pod
passes down (`detente.executors.steps`).
"""
