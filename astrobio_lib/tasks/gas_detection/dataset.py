"""The gas-detection task's training items, made from the SIMULATED JWST spectra of
:mod:`astrobio_lib.data.gas_spectra`.

One item is one *noisy* spectrum: a noiseless spectrum of the split's host stars, observed with N
transits (every N of :data:`~astrobio_lib.tasks.gas_detection.baselines.TRANSITS`), ``draws``
independent noise draws each. The noise is drawn once, from a seed per (split, N), so an item is the
same array in every epoch and after a resume — and the test split's draws are exactly those the
baselines of :func:`~astrobio_lib.tasks.gas_detection.baselines.detection_curves` are scored on.

Inputs (what an observer has), and why none is a function of a target:

- ``spectrum``: the noisy depth minus its median, in units of each bin's noise at N (the baselines'
  normalisation) — the only input that depends on the atmosphere, through the radiative transfer;
- ``catalog``: the planet's 16 catalog features (:data:`astrobio_lib.data.build.CATALOG_FEATURES`,
  ESI left out), standardised with the training planets' statistics — the atmosphere is drawn
  independently of the planet, so the catalog carries no information on a gas (the circularity check).

Targets: ``gas_present`` [5] (drawn: abundance above the gas's detectability threshold, the priors of
:mod:`astrobio_lib.data.transmission`); ``gas_targets`` [8] — log10 VMR of each gas (NaN when absent),
temperature, log10 surface pressure, log10 cloud-top pressure (NaN without a deck) — standardised by
the training split's mean and standard deviation (:attr:`GasDetectionDataset.target_mean`).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import transmission as tx
from astrobio_lib.data.loader import split_by_host

TRANSITS = (1, 3, 10, 30, 100)  # the numbers of transits every predictor is scored at
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test host stars (one planet per host)
RETRIEVAL_TARGETS = (*(f"log10_vmr_{g}" for g in tx.GASES), "temperature_k", "log10_surface_pressure_pa",
                     "log10_cloud_top_pa")
SPLIT_OFFSET = {"train": 0, "test": 1, "val": 2}  # noise seed = seed + 17 N + offset (test: the baselines' draws)


def split(ds: gs.GasSpectra, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per noiseless spectrum, by host star (:data:`SPLIT_FRACTIONS`): no
    star, and no noiseless spectrum under any noise draw, is in two splits."""
    return split_by_host(ds.hostname, SPLIT_FRACTIONS, seed=seed)


def normalised(ds: gs.GasSpectra, x: np.ndarray, rows: np.ndarray, n_transits: float) -> np.ndarray:
    """Spectra minus their median depth, in units of each bin's noise at ``n_transits``."""
    return (x - np.median(x, axis=1, keepdims=True)) / ds.sigma(n_transits, rows)


def retrieval_truth(ds: gs.GasSpectra) -> np.ndarray:
    """[n, 8] the retrieval targets of every noiseless spectrum (:data:`RETRIEVAL_TARGETS`), NaN where
    there is none (an absent gas, no cloud deck)."""
    return np.column_stack([ds.log10_vmr, ds.temperature_k, ds.log10_surface_pressure_pa, ds.log10_cloud_top_pa])


def standardisation(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column ignoring NaN; a column without values gets mean 0, std 1."""
    with warnings.catch_warnings():  # an all-NaN column warns; it is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
    return np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)


def catalog_inputs(ds: gs.GasSpectra, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(standardised features [planets, 16] with 0 where missing, presence mask): the catalog
    features of :func:`astrobio_lib.data.build.catalog_features`, ESI left out (it would need the
    habitability labels), standardised with the planets of the training split."""
    from astrobio_lib.data.build import catalog_features

    raw = catalog_features(ds.planets, np.full(len(ds.planets), np.nan))
    train_planets = np.unique(ds.planet[which == "train"])
    mean, std = standardisation(raw[train_planets] if len(train_planets) else raw)
    mask = np.isfinite(raw)
    return np.where(mask, (raw - mean) / std, 0.0), mask


class GasDetectionDataset(torch.utils.data.Dataset):
    """The noisy spectra of one split (module docstring), as items of the task's batch.

    Raises:
        ValueError: an unknown split, or a split without spectra (too few planets for a host split).
    """

    simulated = True  # the catalog is real; the spectra are SIMULATED and say so

    def __init__(self, ds: gs.GasSpectra, which_split: np.ndarray, which: str, draws: int, seed: int,
                 transits: Sequence[int] = TRANSITS):
        if which not in SPLIT_OFFSET:
            raise ValueError(f"split {which!r}: one of {tuple(SPLIT_OFFSET)}")
        self.gas, self.which, self.transits = ds, which, tuple(int(n) for n in transits)
        rows = np.flatnonzero(which_split == which)
        if not len(rows):
            raise ValueError(f"the {which} split of the gas-detection spectra is empty: raise gas_planets "
                             f"(host stars are split {'/'.join(str(round(100 * f)) for f in SPLIT_FRACTIONS)})")
        truth = retrieval_truth(ds)
        self.target_mean, self.target_std = standardisation(truth[which_split == "train"])  # every split: train's
        spectra, source, n_of = [], [], []
        for n in self.transits:
            x, rep = gs.noisy(ds, rows, n, draws, seed + 17 * n + SPLIT_OFFSET[which])
            spectra.append(normalised(ds, x, rep, n))
            source.append(rep)
            n_of.append(np.full(len(rep), n))
        self.rows = np.concatenate(source)  # the noiseless spectrum of each item
        self.n_transits = np.concatenate(n_of)
        self.spectrum = torch.from_numpy(np.concatenate(spectra).astype(np.float32))
        features, mask = catalog_inputs(ds, which_split)
        self.catalog = torch.from_numpy(features.astype(np.float32))
        self.catalog_mask = torch.from_numpy(mask)
        self.present = torch.from_numpy(ds.present.astype(np.float32))
        self.targets = torch.from_numpy(((truth - self.target_mean) / self.target_std).astype(np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = int(self.rows[i])
        p = int(self.gas.planet[r])
        return {"record": torch.tensor(i), "catalog": self.catalog[p], "catalog_mask": self.catalog_mask[p],
                "spectrum": self.spectrum[i], "has_spectrum": torch.tensor(True),
                "gas_present": self.present[r], "gas_targets": self.targets[r],
                "n_transits": torch.tensor(float(self.n_transits[i]))}

    def physical(self, standardised: np.ndarray) -> np.ndarray:
        """Standardised retrieval values (means) -> physical units."""
        return standardised * self.target_std + self.target_mean


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks items of :class:`GasDetectionDataset` into a batch (a module-level function: picklable
    for loader worker processes)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
