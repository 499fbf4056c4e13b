"""``run.py srun|scontrol ARGS``: the entry of the job tools, run with ``python -I``
(no PYTHON* variables, no user site) so a job's environment cannot swap their code."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the folder holding detente/

if __name__ == "__main__":
    tool, args = sys.argv[1], sys.argv[2:]
    if tool == "srun":
        from detente.jobtools.srun_run import main
    else:
        from detente.jobtools.scontrol import main
    sys.exit(main(args))
