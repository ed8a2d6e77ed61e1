import numpy as np
import pytest

from astrobio_lib.data.loader import split_by_host


def _hosts(n_hosts=300, seed=0):
    rng = np.random.default_rng(seed)
    return [f"star{h}" for h in range(n_hosts) for _ in range(rng.integers(1, 6))]


def test_no_host_in_two_splits_and_fractions():
    hosts = _hosts()
    split = split_by_host(hosts, (0.7, 0.15, 0.15), seed=3)
    by_host = {}
    for h, s in zip(hosts, split, strict=True):
        assert by_host.setdefault(h, s) == s
    frac = {s: np.mean(split == s) for s in ("train", "val", "test")}
    assert frac["train"] == pytest.approx(0.7, abs=0.05)
    assert frac["test"] == pytest.approx(0.15, abs=0.05)


def test_positives_reach_every_split_and_determinism():
    hosts = _hosts()
    positive = np.zeros(len(hosts))
    positive[::40] = 1.0
    split = split_by_host(hosts, seed=1, positive=positive)
    for s in ("train", "val", "test"):
        assert positive[split == s].sum() > 0, s
    np.testing.assert_array_equal(split, split_by_host(hosts, seed=1, positive=positive))
    assert not np.array_equal(split, split_by_host(hosts, seed=2, positive=positive))


def test_bad_input():
    with pytest.raises(ValueError, match="summing to 1"):
        split_by_host(["a"], (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="no host name"):
        split_by_host(["a", None])
