"""Profiles from configuration: a named profile, or a YAML file that assembles one from
the plugin registry (`detente.core.profiles.SORTS`, `SCORES`, `PLACEMENTS`, `ADMITS`,
`POST_FILTERS`).

```yaml
apiVersion: detente.dev/v1
kind: Profile
metadata: {name: binpack-fifo}
spec:
  queueSort: FifoSort            # PrioritySort, FifoSort, DrfSort, Multifactor
  placement: TopologyBestFit     # or PodByPod
  scores: {GpuBinpack: 1}        # plugin → weight
  gang: true
  quota: true                    # charge ClusterQueue quota (false: queues ignored)
  borrowing: true                # borrow unused quota of the cohort
  admit: PlaceNow                # SlurmBackfill, EasyBackfill, QuotaThenBind
  postFilter: NoPreemption       # or QueuePreemption
  headsPerQueue: null            # workloads a ClusterQueue may try per cycle
```
Every `--profile` option (plan, simulate, up) takes a name or such a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detente.core.profiles import (
    ADMITS,
    PLACEMENTS,
    POST_FILTERS,
    SCORES,
    SORTS,
    Profile,
    build,
    custom,
)


class ProfileError(ValueError):
    pass


class ProfileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queueSort: str = "PrioritySort"
    placement: str = "TopologyBestFit"
    scores: dict[str, Annotated[float, Field(ge=0, le=1e6)]] = {}
    gang: bool = True
    quota: bool = True
    borrowing: bool = True
    admit: str = "PlaceNow"
    postFilter: str = "NoPreemption"
    headsPerQueue: Annotated[int, Field(ge=1)] | None = None


class ProfileMeta(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(min_length=1, max_length=100)]


class ProfileDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    apiVersion: Literal["detente.dev/v1"]
    kind: Literal["Profile"]
    metadata: ProfileMeta
    spec: ProfileSpec = ProfileSpec()


def load(name_or_file: str, seed: int = 0) -> Profile:
    """The named profile, or the one a YAML file assembles; ProfileError naming the
    file, field and bad value otherwise."""
    if not name_or_file.endswith((".yaml", ".yml")):
        try:
            return build(name_or_file, seed)
        except KeyError as e:
            raise ProfileError(str(e.args[0])) from None
    path = Path(name_or_file)
    try:
        doc = ProfileDoc.model_validate(yaml.safe_load(path.read_text()))
    except OSError as e:
        raise ProfileError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from None
    except ValidationError as e:
        where = "; ".join(
            f"{'.'.join(map(str, x['loc']))}: {x['msg']} (got {x.get('input')!r})"
            for x in e.errors()
        )
        raise ProfileError(f"{path}: {where}") from None
    s = doc.spec
    for field, value, known in (("spec.queueSort", s.queueSort, SORTS),
                                ("spec.placement", s.placement, PLACEMENTS),
                                ("spec.admit", s.admit, ADMITS),
                                ("spec.postFilter", s.postFilter, POST_FILTERS),
                                *(("spec.scores", k, SCORES) for k in s.scores)):  # fmt: skip
        if value not in known:
            raise ProfileError(
                f"{path}: {field}: unknown plugin {value!r} (known: {', '.join(known)})"
            )
    return custom(
        doc.metadata.name, sort=s.queueSort, placement=s.placement, scores=s.scores,
        gang=s.gang, quota=s.quota, borrowing=s.borrowing, admit=s.admit,
        post_filter=s.postFilter, heads_per_queue=s.headsPerQueue, seed=seed,
    )  # fmt: skip
