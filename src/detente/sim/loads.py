"""Inference load curves for the simulator: (time, load) points, tiled over a span.

Sources (schemas in ../shared/traces/README.md):

* ``diurnal[:PEAK]``: a day-long sine between PEAK/8 and PEAK, every 10 minutes; the
  unit is "replicas' worth" (a replica serves 1).
* ``azure-llm`` (the conversation trace), ``azure-llm-code``, ``azure-llm-conv``:
  Azure's LLM inference traces (Splitwise, CC-BY-4.0, bundled), or any file in their
  format (``TIMESTAMP, ContextTokens, GeneratedTokens``): tokens/s per minute.
* ``alibaba-genai[:MODEL]``: Alibaba's GenAI (Stable Diffusion) serving trace, one
  base model (``checkpoint_model_version_id``) or all: requests in flight per minute
  (each request's execution time spread from its arrival), i.e. concurrency.

A trace shorter than the span repeats (it is *tiled*): its period is its own length.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from detente.sim.traces import TraceError, bundled

Load = list[tuple[float, float]]

AZURE = {
    "azure-llm": "azure_llm_conv.csv.gz",
    "azure-llm-conv": "azure_llm_conv.csv.gz",
    "azure-llm-code": "azure_llm_code.csv.gz",
}
GENAI = "alibaba_v2026_genai_serving/lora_request_trace.csv"


def diurnal(span: float, peak: float, step: float = 600.0) -> Load:
    """A day-long sine between ``peak / 8`` and ``peak``, sampled every ``step`` seconds."""
    low = peak / 8
    n = max(1, math.ceil(span / step))
    return [
        (i * step, low + (peak - low) * (1 - math.cos(2 * math.pi * i * step / 86400)) / 2)
        for i in range(n + 1)
    ]


def _tile(bins: dict[int, float], span: float, step: float) -> Load:
    period = max(bins) + 1
    n = max(1, math.ceil(span / step))
    return [(i * step, bins.get(i % period, 0.0)) for i in range(n + 1)]


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    gz = path.suffix == ".gz"
    with gzip.open(path, "rt", newline="") if gz else path.open(newline="") as f:
        yield from enumerate(csv.DictReader(f), start=2)


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text[:26]).replace(tzinfo=UTC).timestamp()


def from_requests(path: Path, span: float, step: float = 60.0) -> Load:
    """Tokens/s per ``step`` from an Azure-format request trace, tiled to ``span``."""
    bins: dict[int, float] = {}
    t0: float | None = None
    for line, row in _rows(path):
        try:
            ts = _stamp(row["TIMESTAMP"])
            tokens = float(row["ContextTokens"]) + float(row["GeneratedTokens"])
        except (KeyError, ValueError, TypeError):
            raise TraceError(f"{path}:{line}: bad request row {row}") from None
        t0 = ts if t0 is None else t0
        k = int((ts - t0) // step)
        bins[k] = bins.get(k, 0.0) + tokens / step
    if not bins:
        raise TraceError(f"{path}: no requests")
    return _tile(bins, span, step)


def from_genai(path: Path, model: str | None, span: float, step: float = 60.0) -> Load:
    """Requests in flight per ``step`` (mean over the step) from the Alibaba GenAI serving
    trace, for one base model or all, tiled to ``span``."""
    busy: dict[int, float] = {}
    t0: float | None = None
    for line, row in _rows(path):
        if model is not None and row.get("checkpoint_model_version_id") != model:
            continue
        try:
            ts, run = _stamp(row["gmt_create"]), float(row["exec_time_seconds"])
        except (KeyError, ValueError, TypeError):
            raise TraceError(f"{path}:{line}: bad request row {row}") from None
        t0 = ts if t0 is None else min(t0, ts)
        busy[round(ts)] = busy.get(round(ts), 0.0) + max(run, 0.0)
    if not busy or t0 is None:
        raise TraceError(f"{path}: no requests" + (f" for model {model!r}" if model else ""))
    bins: dict[int, float] = {}
    for ts, run in busy.items():  # spread each request's run over the steps it spans
        start = ts - t0
        while run > 0:
            k = int(start // step)
            part = min(run, (k + 1) * step - start)
            bins[k] = bins.get(k, 0.0) + part / step
            start, run = start + part, run - part
    return _tile(bins, span, step)


def shared_traces() -> Path:
    """The folder of public traces: ``$DETENTE_TRACES``, else the first ``shared/traces``
    above the working directory."""
    env = os.environ.get("DETENTE_TRACES")
    if env:
        return Path(env)
    for d in [Path.cwd(), *Path.cwd().parents]:
        if (d / "shared" / "traces").is_dir():
            return d / "shared" / "traces"
    return Path("shared/traces")


def load_curve(source: str, span: float) -> Load:
    """The curve named by ``source`` (see the module), tiled to ``span``."""
    if source.startswith("diurnal"):
        try:
            peak = float(source.split(":", 1)[1]) if ":" in source else 8.0
        except ValueError:
            raise TraceError(f"{source!r}: PEAK must be a number") from None
        if not peak >= 1:
            raise TraceError(f"{source!r}: PEAK must be at least 1 replica")
        return diurnal(span, peak)
    if source in AZURE:
        return from_requests(bundled(AZURE[source]), span)
    if source.split(":", 1)[0] == "alibaba-genai":
        path = shared_traces() / GENAI
        if not path.exists():
            raise TraceError(f"{source!r}: {path} is absent (set DETENTE_TRACES)")
        return from_genai(path, source.split(":", 1)[1] if ":" in source else None, span)
    path = Path(source)
    if not path.exists():
        known = "diurnal[:PEAK], " + ", ".join(AZURE) + ", alibaba-genai[:MODEL]"
        raise TraceError(f"{source!r}: not one of {known}, and no such file")
    return from_requests(path, span)
