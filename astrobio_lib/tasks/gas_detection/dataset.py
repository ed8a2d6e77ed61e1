"""The gas-detection task's training items, made from the SIMULATED JWST spectra of
:mod:`astrobio_lib.data.gas_spectra`.

One item is one *noisy* spectrum of a noiseless spectrum of the split's host stars.

- **Training items draw fresh noise at use time** (``fresh=True``): item *i* of epoch *e* gets its
  number of transits N (log-uniform over :data:`TRANSIT_RANGE`, 1-100), its photon and floor noise
  and the latent values of what the spectrum does not show (below) from a counter-based generator
  (Philox) keyed by the run seed with counter (item, epoch): every epoch sees new noise — a model
  cannot memorise draws — and an item is the same array whenever it is recomputed, so a resume is
  bitwise exact. ``draws`` is the number of items per noiseless spectrum in an epoch.
- **Validation and test keep fixed draws**: ``draws`` per noiseless spectrum at each N of
  :data:`TRANSITS`, from a seed per (split, N); the test split's are exactly the draws the baselines
  of :func:`~astrobio_lib.tasks.gas_detection.baselines.detection_curves` are scored on.

Inputs (what an observer has), and why none is a function of a target:

- ``spectrum``: the noisy depth minus its median, in units of each bin's noise at N (the baselines'
  normalisation) — the only input that depends on the atmosphere, through the radiative transfer;
- ``spectrum_context``: log10(N) - 1 (the number of transits is known to the observer; it sets how
  large a feature is in units of the noise);
- ``catalog``: the planet's 16 catalog features (:data:`astrobio_lib.data.build.CATALOG_FEATURES`,
  ESI left out), standardised with the training planets' statistics — the atmosphere is drawn
  independently of the planet, so the catalog carries no information on a gas (the circularity check).

Targets: ``gas_present`` [5] (drawn: abundance above the gas's detectability threshold, the priors of
:mod:`astrobio_lib.data.transmission`); ``gas_targets`` [8] — the *latent* values
(:attr:`~astrobio_lib.data.gas_spectra.GasSpectra.latent`): log10 VMR of each gas (for an absent gas,
an abundance drawn from its prior, which changes no spectrum: fresh per training item, fixed per
spectrum in validation and test), temperature, log10 surface pressure, log10 cloud-top pressure (drawn
between its bounds without a deck) — each mapped to an unbounded value by its prior
(:func:`to_unbounded`: z = Φ⁻¹((v − lo) / (hi − lo)), the cloud top's upper bound being the surface
pressure), so the prior is a standard normal per target, posteriors stay inside the prior's bounds
when mapped back (:func:`to_physical`), and a nearly flat posterior is a smooth density for the flow.
The retrieval posterior is over these: where a gas may be absent, the posterior of its abundance is
the mixture of "present at this abundance" and the prior, which is what the expected-coverage check
tests.
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
TRANSIT_RANGE = (1.0, 100.0)  # training items: N log-uniform over this range
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)  # train / val / test host stars (one planet per host)
RETRIEVAL_TARGETS = (*(f"log10_vmr_{g}" for g in tx.GASES), "temperature_k", "log10_surface_pressure_pa",
                     "log10_cloud_top_pa")
SPLIT_OFFSET = {"train": 0, "test": 1, "val": 2}  # noise seed = seed + 17 N + offset (test: the baselines' draws)
FRESH_STREAM = 0xF8E54  # the Philox key's second word for fresh training noise


def split(ds: gs.GasSpectra, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' per noiseless spectrum, by host star (:data:`SPLIT_FRACTIONS`): no
    star, and no noiseless spectrum under any noise draw, is in two splits."""
    return split_by_host(ds.hostname, SPLIT_FRACTIONS, seed=seed)


def normalised(ds: gs.GasSpectra, x: np.ndarray, rows: np.ndarray, n_transits: float) -> np.ndarray:
    """Spectra minus their median depth, in units of each bin's noise at ``n_transits``."""
    return (x - np.median(x, axis=1, keepdims=True)) / ds.sigma(n_transits, rows)


def retrieval_truth(ds: gs.GasSpectra) -> np.ndarray:
    """[n, 8] the physical retrieval targets of every noiseless spectrum (:data:`RETRIEVAL_TARGETS`),
    NaN where there is none (an absent gas, no cloud deck)."""
    return np.column_stack([ds.log10_vmr, ds.temperature_k, ds.log10_surface_pressure_pa, ds.log10_cloud_top_pa])


def latent_truth(ds: gs.GasSpectra) -> np.ndarray:
    """[n, 8] the latent targets (module docstring): the truth where it exists, else the set's fixed
    draw from the prior."""
    lat = ds.latent
    return np.column_stack([lat[:, :-1], ds.temperature_k, ds.log10_surface_pressure_pa, lat[:, -1]])


PRIOR_BOUNDS = (*(tx.VMR_PRIORS[g] for g in tx.GASES), tx.TEMPERATURE_K, tx.LOG10_SURFACE_PRESSURE_PA,
                (tx.LOG10_CLOUD_TOP_MIN_PA, None))  # the cloud top's upper bound is the surface pressure
PRESSURE, CLOUD = len(tx.GASES) + 1, len(tx.GASES) + 2  # their columns among the targets
EDGE = 1e-6  # a value on a prior bound maps to Φ⁻¹(1e-6) ≈ -4.75, not -inf


def _bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([b[0] for b in PRIOR_BOUNDS], dtype=float)
    hi = np.array([b[1] if b[1] is not None else np.nan for b in PRIOR_BOUNDS], dtype=float)
    lo, hi = np.broadcast_to(lo, values.shape).copy(), np.broadcast_to(hi, values.shape).copy()
    hi[..., CLOUD] = values[..., PRESSURE]
    return lo, hi


def to_unbounded(values: np.ndarray) -> np.ndarray:
    """[..., 8] latent targets in physical units -> their prior's probit z (standard normal under the
    prior)."""
    from scipy.special import ndtri

    lo, hi = _bounds(values)
    u = np.clip((values - lo) / np.maximum(hi - lo, 1e-12), EDGE, 1 - EDGE)
    return ndtri(u)


def to_physical(z: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_unbounded` (the cloud top's bound from the same sample's pressure)."""
    from scipy.special import ndtr

    u = ndtr(np.asarray(z, dtype=float))
    out = np.empty_like(u)
    lo = np.array([b[0] for b in PRIOR_BOUNDS], dtype=float)
    hi = np.array([b[1] if b[1] is not None else np.nan for b in PRIOR_BOUNDS], dtype=float)
    cols = [k for k in range(u.shape[-1]) if k != CLOUD]
    out[..., cols] = lo[cols] + (hi[cols] - lo[cols]) * u[..., cols]
    out[..., CLOUD] = lo[CLOUD] + (out[..., PRESSURE] - lo[CLOUD]) * u[..., CLOUD]
    return out


def context(n_transits) -> np.ndarray:
    """The model's ``spectrum_context``: log10(N) - 1 (-1 at one transit, +1 at 100)."""
    return np.log10(np.asarray(n_transits, dtype=float)) - 1.0


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
    """The noisy spectra of one split (module docstring), as items of the task's batch: fixed draws
    at :data:`TRANSITS` (``fresh=False``: validation, test) or fresh noise per (epoch, item)
    (``fresh=True``: training; index it with ``(epoch, item)``, the trainer does).

    Raises:
        ValueError: an unknown split, or a split without spectra (too few planets for a host split).
    """

    simulated = True  # the catalog is real; the spectra are SIMULATED and say so

    def __init__(self, ds: gs.GasSpectra, which_split: np.ndarray, which: str, draws: int, seed: int,
                 transits: Sequence[int] = TRANSITS, floor: str = "white", fresh: bool = False):
        if which not in SPLIT_OFFSET:
            raise ValueError(f"split {which!r}: one of {tuple(SPLIT_OFFSET)}")
        self.gas, self.which, self.transits, self.floor, self.fresh = ds, which, tuple(int(n) for n in transits), floor, fresh
        self.seed, self.draws = int(seed), int(draws)
        rows = np.flatnonzero(which_split == which)
        if not len(rows):
            raise ValueError(f"the {which} split of the gas-detection spectra is empty: raise gas_planets "
                             f"(host stars are split {'/'.join(str(round(100 * f)) for f in SPLIT_FRACTIONS)})")
        latent = latent_truth(ds)
        features, mask = catalog_inputs(ds, which_split)
        self.catalog = torch.from_numpy(features.astype(np.float32))
        self.catalog_mask = torch.from_numpy(mask)
        self.present = torch.from_numpy(ds.present.astype(np.float32))
        self._latent = latent
        self.targets = torch.from_numpy(to_unbounded(latent).astype(np.float32))
        if fresh:
            self.rows = np.repeat(rows, self.draws)  # the noiseless spectrum of each item
            self.n_transits = np.full(len(self.rows), np.nan)  # drawn per use
            self._depth = np.asarray(ds.depth[rows], dtype=np.float64)
            self._position = {int(r): k for k, r in enumerate(rows)}
            self._noise = gs.floor_noise(ds, floor)  # held: __getitem__ is on the training path
            return
        spectra, source, n_of = [], [], []
        for n in self.transits:
            x, rep = gs.noisy(ds, rows, n, draws, seed + 17 * n + SPLIT_OFFSET[which], floor)
            spectra.append(normalised(ds, x, rep, n))
            source.append(rep)
            n_of.append(np.full(len(rep), n))
        self.rows = np.concatenate(source)
        self.n_transits = np.concatenate(n_of)
        self.spectrum = torch.from_numpy(np.concatenate(spectra).astype(np.float32))

    @property
    def keyed_by_epoch(self) -> bool:
        """Training items differ per epoch: the trainer indexes them with ``(epoch, item)``."""
        return self.fresh

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        i = int(i)
        r = int(self.rows[i])
        p = int(self.gas.planet[r])
        if self.fresh:
            spectrum, n, targets = self._draw(int(epoch), i, r)
        else:
            spectrum, n, targets = self.spectrum[i], float(self.n_transits[i]), self.targets[r]
        return {"record": torch.tensor(i), "catalog": self.catalog[p], "catalog_mask": self.catalog_mask[p],
                "spectrum": spectrum, "has_spectrum": torch.tensor(True),
                "spectrum_context": torch.tensor([float(context(n))], dtype=torch.float32),
                "gas_present": self.present[r], "gas_targets": targets,
                "n_transits": torch.tensor(float(n))}

    def generator(self, epoch: int, i: int) -> np.random.Generator:
        """The counter-based generator of item ``i`` in ``epoch``: Philox keyed by (run seed,
        :data:`FRESH_STREAM`), counter (0, item, epoch, 0) — independent streams, no state carried."""
        return np.random.Generator(np.random.Philox(key=(self.seed % 2**64) * 2**64 + FRESH_STREAM,
                                                    counter=[0, i, epoch, 0]))

    def _draw(self, epoch: int, i: int, r: int) -> tuple[torch.Tensor, float, torch.Tensor]:
        g = self.generator(epoch, i)
        lo, hi = np.log10(TRANSIT_RANGE)
        n = float(10 ** g.uniform(lo, hi))
        z = g.standard_normal((2, self._depth.shape[1]))
        per_transit = self.gas.planet_sigma_transit[self.gas.planet[r]]
        x = self._depth[self._position[r]] + z[0] * per_transit / np.sqrt(n) + self._noise.draw(z[1])
        spectrum = normalised(self.gas, x[None], np.array([r]), n)[0]
        latent = self._latent[r].copy()
        absent = ~self.gas.present[r]  # what the spectrum cannot show: drawn afresh from the prior
        prior_lo, prior_hi = np.array([tx.VMR_PRIORS[gas] for gas in tx.GASES]).T
        fresh_vmr = g.uniform(prior_lo, prior_hi)
        latent[:len(tx.GASES)][absent] = fresh_vmr[absent]
        cloud = g.uniform(tx.LOG10_CLOUD_TOP_MIN_PA, self.gas.log10_surface_pressure_pa[r])
        if not np.isfinite(self.gas.log10_cloud_top_pa[r]):
            latent[-1] = cloud
        targets = to_unbounded(latent)
        return (torch.from_numpy(spectrum.astype(np.float32)), n, torch.from_numpy(targets.astype(np.float32)))

    def physical(self, z: np.ndarray) -> np.ndarray:
        """Retrieval values in the flow's unbounded space -> physical units (:func:`to_physical`)."""
        return to_physical(z)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks items of :class:`GasDetectionDataset` into a batch (a module-level function: picklable
    for loader worker processes)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
