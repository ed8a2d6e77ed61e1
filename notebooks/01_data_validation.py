# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data validation
# Which planets does this run learn from, and can their labels be trusted? This report loads the
# NASA Exoplanet Archive PSCompPars table (from a local snapshot, or the archive when online),
# derives stellar luminosity and missing insolations, labels every planet with published physics
# (Kopparapu et al. 2014 habitable zone, Rogers 2015 rocky size, PHL criteria, ESI as a feature,
# and Monte-Carlo soft labels over the error bars), splits by host system, and writes
# `data/labels.csv` into the run folder. The source used is shown first: synthetic data is always
# labelled synthetic.

# %%
from typing import Optional  # the parameters cell's annotations need it

# %% tags=["parameters"]
run_dir: str = "../outputs/notebook_defaults"  # run folder: every product of the run is written here
seed: int = 0  # global random seed (data split, init, sampling)
catalog_source: str = "auto"  # file | archive | synthetic | auto (file, then archive, then synthetic)
catalog_path: Optional[str] = None  # local PSCompPars CSV; None: env ASTROBIO_CATALOG
label_mc_samples: int = 256  # Monte-Carlo draws per planet for the soft label P(habitable)
val_fraction: float = 0.15  # fraction of planets (grouped by host) for validation
test_fraction: float = 0.15  # fraction of planets (grouped by host) for the test split

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from astrobio_lib import config, plots
from astrobio_lib.data import catalog as cat
from astrobio_lib.data.build import write_labels
from astrobio_lib.report import completion_marker

cfg = config.from_namespace(globals())
data_dir = Path(cfg.run.run_dir) / "data"
planets, provenance = cat.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path,
                                       cache_dir=data_dir)
print(provenance.banner())

# %% [markdown]
# ## Catalog
# Values carrying a limit flag are bounds, not measurements: they are moved aside and do not
# feed the labels. Insolation is derived from L = R²(T/5772 K)⁴ and the semi-major axis where
# the archive gives none.

# %%
print(f"{len(planets)} planets around {planets['hostname'].nunique()} host systems; "
      f"insolation derived for {int(planets['pl_insol_derived'].sum())} planets")
cat.summary(planets).round(3)

# %% [markdown]
# ## Labels and host-grouped splits

# %%
labels = write_labels(planets, provenance, cfg.data, cfg.run.seed, data_dir)
prevalence = pd.DataFrame({
    name: {"true": int((labels[name] == True).sum()), "false": int((labels[name] == False).sum()),  # noqa: E712
           "undetermined": int(labels[name].isna().sum())}
    for name in ["hz_conservative", "hz_optimistic", "rocky", "habitable_phl", "habitable"]}).T
prevalence["prevalence_%"] = (100 * prevalence["true"] / (prevalence["true"] + prevalence["false"])).round(2)
print(f"wrote {data_dir / 'labels.csv'} ({len(labels)} rows)")
prevalence

# %%
split_table = labels.groupby("split").agg(planets=("pl_name", "size"), hosts=("hostname", "nunique"),
                                          habitable=("habitable", lambda s: int((s == True).sum())),  # noqa: E712
                                          sum_p_habitable=("p_habitable", "sum"))
split_table.round(2)

# %% [markdown]
# ## The Teff–insolation plane

# %%
fig, ax = plt.subplots(figsize=(11, 5.5))
fig.subplots_adjust(right=0.72)
plots.hz_plane(ax, planets, labels)
plt.show()

# %% [markdown]
# ## Rocky-sized planets in the habitable zone
# Conservative zone (runaway to maximum greenhouse), then the optimistic zone (recent Venus to
# early Mars), ranked by the Earth Similarity Index (a similarity ranking, not habitability).

# %%
view = labels.join(planets[["pl_rade", "pl_bmasse", "pl_insol", "st_teff"]])
cols = ["pl_name", "hostname", "pl_rade", "pl_bmasse", "pl_insol", "st_teff", "esi", "p_habitable", "split"]
rocky_conservative = view[(view["rocky"] == True) & (view["hz_conservative"] == True)]  # noqa: E712
print(f"{len(rocky_conservative)} rocky-sized planets in the conservative HZ")
rocky_conservative.sort_values("esi", ascending=False)[cols].round(3)

# %%
rocky_optimistic = view[(view["rocky"] == True) & (view["hz_optimistic"] == True)]  # noqa: E712
print(f"{len(rocky_optimistic)} rocky-sized planets in the optimistic HZ")
rocky_optimistic.sort_values("esi", ascending=False)[cols].round(3)

# %% [markdown]
# ## Verdict

# %%
leaked = labels.groupby("hostname")["split"].nunique().gt(1).sum()
print(provenance.banner())
print(f"labels.csv rows: {len(labels)} of {len(planets)} catalog planets; hosts in two splits: {leaked}; "
      f"habitable (rocky + optimistic HZ): {int((labels['habitable'] == True).sum())} "  # noqa: E712
      f"({prevalence.loc['habitable', 'prevalence_%']}% of decidable planets)")
if len(labels) != len(planets) or leaked:
    raise RuntimeError("data verdict: FAIL — labels incomplete or a host system spans two splits")
print("data verdict: PASS")

# %% tags=["completion-marker"]
completion_marker("01_data_validation")
