"""sbatch's command line, split without parsing values (standard library only: the
CLI's fast path uses it before anything heavy is imported). `detente.api.sbatch`
parses what this splits."""

from __future__ import annotations

SHORT = {"-J": "job-name", "-N": "nodes", "-c": "cpus-per-task", "-t": "time",
         "-p": "partition", "-q": "qos", "-o": "output", "-e": "error", "-D": "chdir",
         "-a": "array", "-d": "dependency", "-G": "gpus", "-A": "account", "-n": "ntasks",
         "-w": "nodelist", "-x": "exclude", "-C": "constraint"}  # fmt: skip
#: Short options that take no value.
SHORT_FLAGS = {"-H": "hold"}
#: Options that take no value.
FLAGS = frozenset({"exclusive", "requeue", "no-requeue", "parsable", "test-only", "hold"})
#: Every long option detente reads (`detente.api.sbatch.OPTIONS` has one setter each).
OPTION_NAMES = frozenset({
    "job-name", "nodes", "ntasks-per-node", "gres", "gpus-per-node", "cpus-per-task", "mem",
    "time", "partition", "qos", "exclusive", "requeue", "no-requeue", "array", "dependency",
    "output", "error", "chdir", "export", "kill-on-invalid-dep", "begin", "wrap", "account",
    "mail-type", "mail-user", "signal", "ntasks", "gpus", "gpus-per-task", "cpus-per-gpu",
    "mem-per-cpu", "mem-per-gpu", "open-mode", "nodelist", "exclude", "constraint", "hold",
})  # fmt: skip


class SbatchError(ValueError):
    pass


def split_argv(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """sbatch's command line → (options, script, script arguments): options come before
    the script, which is the first argument that is neither an option nor its value
    ("" with ``--wrap``)."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--"):
            name = tok[2:].partition("=")[0]
            takes = "=" not in tok and name not in FLAGS and name in OPTION_NAMES
            i += 2 if takes else 1
        elif tok in SHORT_FLAGS:
            i += 1
        elif tok[:2] in SHORT:
            i += 1 if len(tok) > 2 else 2
        else:
            return argv[:i], tok, argv[i + 1 :]
    if any(a == "--wrap" or a.startswith("--wrap=") for a in argv):
        return argv, "", []  # the command is the script
    raise SbatchError("no batch script given (or --wrap=COMMAND)")
