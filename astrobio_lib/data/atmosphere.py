"""Assumed atmospheres: the catalog has no surface pressure or composition, so one atmosphere is
drawn per planet from documented priors (seeded) and the *same* draw feeds the climate emulator
and the transmission spectrum, so that a planet's modalities agree with each other.

Priors (volume mixing ratios; background N2):
- surface pressure P0: log-uniform 0.5-5 bar (CLERO's core domain);
- CO2: log-uniform 1e-4 - 1e-1;
- CH4: abiotic log-uniform 1e-7 - 1e-5; with a biosphere, log-uniform 1e-4 - 1e-2 (cf. the
  Archean; capped at CLERO's 0.05);
- O2: abiotic 0; with an oxygenic biosphere 0.21 (modern Earth);
- O3: 1e-7 * sqrt(O2 / 0.21) when O2 > 0 (photochemical proxy), else 0;
- H2O: set from the equilibrium temperature: 3e-3 between 250 and 400 K, else 1e-5.
- Biosphere: present with probability 0.5 * P(habitable) (life needs habitable conditions; the
  0.5 is an explicit agnostic prior); oxygenic given a biosphere with probability 0.5.
The target "biosignature" is 1 when O2 >= 0.01 and CH4 >= 1e-4 coexist (a disequilibrium pair,
Lovelock 1965; Krissansen-Totton et al. 2018), else 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GASES = ("CO2", "CH4", "O2", "O3", "H2O")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return 10 ** rng.uniform(np.log10(lo), np.log10(hi), n)


def draw_atmospheres(p_habitable: np.ndarray, t_eq_k: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Returns one atmosphere per planet: ``P0`` (bar), the gas mixing ratios, ``biosphere``,
    ``oxygenic`` and the ``biosignature`` target (see the module docstring for every prior)."""
    rng = np.random.default_rng(seed)
    n = len(p_habitable)
    p = np.nan_to_num(np.asarray(p_habitable, dtype=float), nan=0.0)
    biosphere = rng.random(n) < 0.5 * p
    oxygenic = biosphere & (rng.random(n) < 0.5)
    ch4 = np.where(biosphere, _log_uniform(rng, 1e-4, 1e-2, n), _log_uniform(rng, 1e-7, 1e-5, n))
    o2 = np.where(oxygenic, 0.21, 0.0)
    t_eq = np.asarray(t_eq_k, dtype=float)
    h2o = np.where((t_eq >= 250) & (t_eq <= 400), 3e-3, 1e-5)
    atm = pd.DataFrame({
        "P0": _log_uniform(rng, 0.5, 5.0, n),
        "CO2": _log_uniform(rng, 1e-4, 1e-1, n),
        "CH4": np.minimum(ch4, 0.05),
        "O2": o2,
        "O3": np.where(o2 > 0, 1e-7 * np.sqrt(o2 / 0.21), 0.0),
        "H2O": h2o,
        "biosphere": biosphere,
        "oxygenic": oxygenic,
    })
    atm["biosignature"] = (atm["O2"] >= 0.01) & (atm["CH4"] >= 1e-4)
    return atm


def equilibrium_temperature_k(insolation_earth, bond_albedo: float = 0.3) -> np.ndarray:
    """Returns the equilibrium temperature (K) with full heat redistribution,
    T_eq = 255 K * (S (1 - A) / 0.7)^(1/4): Earth (S = 1 S_earth, Bond albedo A = 0.3) gets 255 K."""
    s = np.asarray(insolation_earth, dtype=float)
    return 255.0 * (s * (1 - bond_albedo) / 0.7) ** 0.25
