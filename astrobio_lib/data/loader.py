"""Splits and loading. Splits are by host system: no star appears in two splits."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_by_host(hostnames: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15),
                  seed: int = 0, positive: Optional[Sequence[float]] = None) -> np.ndarray:
    """Returns a split name ("train" / "val" / "test") per row, grouped by host system.

    Hosts are shuffled with ``seed`` and assigned so that each split receives about
    ``fractions`` of the *planets*. When ``positive`` (e.g. P(habitable)) is given, hosts with any
    positive planet are split separately from the rest, so the rare positives reach every split.

    Raises:
        ValueError: fractions that are negative or do not sum to 1, or a length mismatch.
    """
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != len(SPLITS) or (fractions < 0).any() or abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions {fractions.tolist()} must be 3 non-negative numbers "
                         f"summing to 1 (train, val, test)")
    hosts = pd.Series(list(hostnames), dtype="object")
    if hosts.isna().any():
        raise ValueError(f"{int(hosts.isna().sum())} rows have no host name: cannot group by host")
    if positive is not None:
        pos = pd.Series(np.nan_to_num(np.asarray(positive, dtype=float)) > 0)
        if len(pos) != len(hosts):
            raise ValueError(f"positive has {len(pos)} rows, hostnames {len(hosts)}")
        host_is_pos = pos.groupby(hosts.values).any()
    else:
        host_is_pos = pd.Series(False, index=hosts.unique())
    sizes = hosts.value_counts()
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for stratum in (True, False):
        stratum_hosts = np.array(sorted(host_is_pos.index[host_is_pos.values == stratum]))
        rng.shuffle(stratum_hosts)
        total = sizes[stratum_hosts].sum() if len(stratum_hosts) else 0
        bounds = np.cumsum(fractions) * total
        seen = 0
        for h in stratum_hosts:
            # the host goes to the split whose planet quota its middle falls into
            mid = seen + sizes[h] / 2
            assignment[h] = SPLITS[min(int(np.searchsorted(bounds, mid, side="right")), 2)]
            seen += sizes[h]
    return hosts.map(assignment).to_numpy()
