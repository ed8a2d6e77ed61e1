"""The gas-detection task for the trainer: items of the multimodal batch (:mod:`astrobio_lib.models.fusion`)
made from the SIMULATED JWST spectra of :mod:`astrobio_lib.data.gas_spectra`.

One item is one *noisy* spectrum: a noiseless spectrum of the split's host stars, observed with N
transits (every N of :data:`astrobio_lib.gas_detection.TRANSITS`), ``draws`` independent noise draws
each. The noise is drawn once, from a seed per (split, N), so an item is the same array in every epoch
and after a resume — and the test split's draws are exactly those the baselines of
:func:`astrobio_lib.gas_detection.detection_curves` are scored on.

Inputs (what an observer has), and why none is a function of a target:

- ``spectrum``: the noisy depth minus its median, in units of each bin's noise at N (the baselines'
  normalisation) — the only input that depends on the atmosphere, through the radiative transfer;
- ``catalog``: the planet's 16 catalog features (:data:`astrobio_lib.data.build.CATALOG_FEATURES`,
  ESI left out), standardised with the training planets' statistics — the atmosphere is drawn
  independently of the planet, so the catalog carries no information on a gas (the circularity check);
- no climate datacube, no metabolic graph and no text. CLERO's inputs and the metabolic-graph variant
  are built from the *habitability* task's assumed atmosphere (CH4, CO2, O2): used here they would be
  a function of another draw at best and a leak at worst, so this task leaves them out. The text is
  generated from the catalog row, so it would repeat the catalog token at the cost of the LLM.

Targets: ``gas_present`` [5] (drawn: abundance above the gas's detectability threshold, the priors of
:mod:`astrobio_lib.data.transmission`); ``gas_targets`` [8] — log10 VMR of each gas (NaN when absent),
temperature, log10 surface pressure, log10 cloud-top pressure (NaN without a deck) — standardised by
the training split's mean and standard deviation (:attr:`GasDetectionDataset.target_mean`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from astrobio_lib.data import gas_spectra as gs
from astrobio_lib.data import transmission as tx
from astrobio_lib.gas_detection import TRANSITS, normalised

RETRIEVAL_TARGETS = (*(f"log10_vmr_{g}" for g in tx.GASES), "temperature_k", "log10_surface_pressure_pa",
                     "log10_cloud_top_pa")
SPLIT_OFFSET = {"train": 0, "test": 1, "val": 2}  # noise seed = seed + 17 N + offset (test: the baselines' draws)


def retrieval_truth(ds: gs.GasSpectra) -> np.ndarray:
    """[n, 8] the retrieval targets of every noiseless spectrum (:data:`RETRIEVAL_TARGETS`), NaN where
    there is none (an absent gas, no cloud deck)."""
    return np.column_stack([ds.log10_vmr, ds.temperature_k, ds.log10_surface_pressure_pa, ds.log10_cloud_top_pa])


def _standardisation(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column ignoring NaN; a column without values gets mean 0, std 1."""
    with warnings.catch_warnings():  # an all-NaN column warns; it is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
    return np.nan_to_num(mean), np.where(np.nan_to_num(std) > 0, np.nan_to_num(std), 1.0)


def catalog_inputs(ds: gs.GasSpectra, split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(standardised features [planets, 16] with 0 where missing, presence mask): the catalog
    features of :func:`astrobio_lib.data.build.catalog_features`, ESI left out (it would need the
    habitability labels), standardised with the planets of the training split."""
    from astrobio_lib.data.build import catalog_features

    raw = catalog_features(ds.planets, np.full(len(ds.planets), np.nan))
    train_planets = np.unique(ds.planet[split == "train"])
    mean, std = _standardisation(raw[train_planets] if len(train_planets) else raw)
    mask = np.isfinite(raw)
    return np.where(mask, (raw - mean) / std, 0.0), mask


class GasDetectionDataset(torch.utils.data.Dataset):
    """The noisy spectra of one split (module docstring), as items of the multimodal batch.

    Raises:
        ValueError: an unknown split, or a split without spectra (too few planets for a host split).
    """

    synthetic = False  # the catalog is real; the spectra are SIMULATED (``simulated``) and say so
    simulated = True
    graphs: list = []  # no metabolic graphs in this task (Collate: graph_id -1)

    def __init__(self, ds: gs.GasSpectra, split: np.ndarray, which: str, draws: int, seed: int,
                 transits: Sequence[int] = TRANSITS, text_max_len: int = 16):
        if which not in SPLIT_OFFSET:
            raise ValueError(f"split {which!r}: one of {tuple(SPLIT_OFFSET)}")
        self.gas, self.which, self.transits = ds, which, tuple(int(n) for n in transits)
        rows = np.flatnonzero(split == which)
        if not len(rows):
            raise ValueError(f"the {which} split of the gas-detection spectra is empty: raise gas_planets "
                             f"(host stars are split 60/20/20)")
        truth = retrieval_truth(ds)
        self.target_mean, self.target_std = _standardisation(truth[split == "train"])  # every split: train's
        spectra, source, n_of = [], [], []
        for n in self.transits:
            x, rep = gs.noisy(ds, rows, n, draws, seed + 17 * n + SPLIT_OFFSET[which])
            spectra.append(normalised(ds, x, rep, n))
            source.append(rep)
            n_of.append(np.full(len(rep), n))
        self.rows = np.concatenate(source)  # the noiseless spectrum of each item
        self.n_transits = np.concatenate(n_of)
        self.spectrum = torch.from_numpy(np.concatenate(spectra).astype(np.float32))
        features, mask = catalog_inputs(ds, split)
        self.catalog = torch.from_numpy(features.astype(np.float32))
        self.catalog_mask = torch.from_numpy(mask)
        self.present = torch.from_numpy(ds.present.astype(np.float32))
        self.targets = torch.from_numpy(((truth - self.target_mean) / self.target_std).astype(np.float32))
        self.text_max_len = text_max_len

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = int(self.rows[i])
        p = int(self.gas.planet[r])
        nan = torch.tensor(float("nan"))
        return {"record": torch.tensor(i), "catalog": self.catalog[p], "catalog_mask": self.catalog_mask[p],
                "climate": None, "graph_id": torch.tensor(-1), "spectrum": self.spectrum[i],
                "has_spectrum": torch.tensor(True), "text_ids": torch.zeros(self.text_max_len, dtype=torch.long),
                "text_mask": torch.zeros(self.text_max_len, dtype=torch.bool), "p_habitable": nan,
                "climate_state": torch.tensor(-1), "biosignature": nan, "t_eq": nan,
                "gas_present": self.present[r], "gas_targets": self.targets[r],
                "n_transits": torch.tensor(float(self.n_transits[i]))}

    def physical(self, standardised: np.ndarray) -> np.ndarray:
        """Standardised retrieval values (means) -> physical units."""
        return standardised * self.target_std + self.target_mean


def open_train_val(data_dir: str | Path, seed: int, train_draws: int, val_draws: int,
                   text_max_len: int) -> tuple[GasDetectionDataset, GasDetectionDataset]:
    """The training and validation splits of the gas-detection spectra notebook 01 generated in
    ``data_dir/gas_spectra`` (host split with ``seed``, as every notebook uses it).

    Raises:
        FileNotFoundError: no spectra there (gas_planets: 0, or 01 not run).
    """
    ds = gs.load(Path(data_dir) / "gas_spectra")
    split = gs.host_split(ds.hostname, seed)
    return (GasDetectionDataset(ds, split, "train", train_draws, seed, text_max_len=text_max_len),
            GasDetectionDataset(ds, split, "val", val_draws, seed, text_max_len=text_max_len))
