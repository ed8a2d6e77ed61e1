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
# Which planets does this run learn from, and can their data and labels be trusted? This report
# checks every data source, loads the NASA Exoplanet Archive PSCompPars table (a local snapshot,
# or the archive when online, or — only when neither exists — a SYNTHETIC population), labels
# every planet with published physics (Kopparapu et al. 2014 habitable zone, Rogers 2015 rocky
# size, PHL criteria, ESI as a feature, Monte-Carlo soft labels over the error bars), splits by
# host system, builds the multimodal dataset (climate datacubes from the CLERO emulator,
# metabolic graphs from cobra, transmission spectra, text) and validates it. The catalog source
# is printed first; anything synthetic says so.

# %%
from typing import Optional  # the parameters cell's annotations need it

# %% tags=["parameters"]
run_dir: str = "outputs/notebook_defaults"  # run folder: every product of the run is written here (relative: inside the repo)
seed: int = 0  # global random seed (data split, init, sampling)
catalog_source: str = "auto"  # auto (catalog_path, then archive, then the shipped snapshot) | file | archive | snapshot | synthetic
catalog_path: Optional[str] = None  # local PSCompPars CSV; None: env ASTROBIO_CATALOG
label_mc_samples: int = 256  # Monte-Carlo draws per planet for the soft label P(habitable)
val_fraction: float = 0.15  # fraction of planets (grouped by host) for validation
test_fraction: float = 0.15  # fraction of planets (grouped by host) for the test split
n_planets: int = 256  # planets to build with every modality (0: all); positives and climate-domain planets are always kept
climate_domain: str = "core"  # CLERO input domain a planet must lie in for a datacube: core | extended
metabolic_model: str = "textbook"  # cobra model for the metabolic graphs: textbook | iJO1366 | salmonella
text_max_len: int = 256  # tokens per planet description (bytes, or the llm_checkpoint tokenizer's tokens)
llm_checkpoint: Optional[str] = None  # pretrained Llama-family checkpoint directory (Hugging Face layout): its LLM and tokenizer replace the preset's; None: from scratch
shard_size: int = 128  # planets per dataset shard file
gas_planets: int = 20  # rocky planets (one per host star) for the SIMULATED gas-detection spectra; 0: none
gas_atmospheres: int = 5  # atmospheres drawn per planet for the gas-detection spectra

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from astrobio_lib import config, plots
from astrobio_lib.data import catalog as cat
from astrobio_lib.data import sources, text
from astrobio_lib.data.build import build_dataset
from astrobio_lib.data.loader import PlanetDataset
from astrobio_lib.data.validate import validate_dataset
from astrobio_lib.report import completion_marker, record_verdict, start_notebook

pd.set_option("display.max_colwidth", 120)
cfg = config.from_namespace(globals())
start_notebook(cfg.run.run_dir, "01_data_validation")  # library logs → run.log; warnings shown as text
data_dir = Path(cfg.run.run_dir) / "data"
planets, provenance = cat.load_catalog(cfg.data.catalog_source, cfg.data.catalog_path, cache_dir=data_dir)
print(provenance.banner())

# %% [markdown]
# ## Sources
# Each source of the seeds is registered with the same interface; `ok` means it can deliver data
# here. Offline is normal: the run uses local data and says so.

# %%
pd.DataFrame(sources.status_table())[["source", "modality", "access", "status", "detail"]]

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
# ## Build: labels for every planet, then the multimodal dataset

# %%
tokenizer = text.tokenizer_for(cfg.model.llm_checkpoint)  # bytes, or the pretrained LLM's own tokenizer
manifest = build_dataset(planets, provenance, cfg.data, cfg.run.seed, data_dir, tokenizer=tokenizer)
labels = pd.read_csv(data_dir / "labels.csv")
print(f"{'reused' if manifest['reused'] else 'built'} in {manifest['build_seconds']} s: "
      f"{manifest['coverage']['planets']} planets with every modality where available; "
      f"labels.csv for all {len(labels)} catalog planets")
pd.DataFrame(manifest["modalities"]).T[["source", "synthetic", "note"]]

# %%
label_cols = ["hz_conservative", "hz_optimistic", "rocky", "habitable_phl", "habitable"]
prevalence = pd.DataFrame({c: {"true": int((labels[c] == True).sum()), "false": int((labels[c] == False).sum()),  # noqa: E712
                               "undetermined": int(labels[c].isna().sum())} for c in label_cols}).T
prevalence["prevalence_%"] = (100 * prevalence["true"] / (prevalence["true"] + prevalence["false"])).round(2)
print(f"dataset subset: {manifest['prevalence']['subset_habitable_%']}% habitable "
      f"({'enriched: all positives kept' if manifest['prevalence']['subset_enriched'] else 'whole catalog'}); "
      f"catalog: {manifest['prevalence']['catalog_habitable_%']}%")
prevalence

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
# ## Validation report
# `fatal` findings make the loader refuse the data; `warn` and `info` give context.

# %%
report = validate_dataset(data_dir)
report.to_frame()

# %% [markdown]
# ## One planet's modalities

# %%
dataset = PlanetDataset(data_dir)
with_cube = [i for i in range(len(dataset)) if dataset[i]["climate"] is not None]
example = dataset[with_cube[0]] if with_cube else dataset[0]
name = dataset.name(example)
fig, axes = plt.subplots(1, 2, figsize=(14, 4))
if example["climate"] is not None:
    from clero.climate_analysis.grid import latitude_centers, longitude_centers
    plots.datacube_level_map(axes[0], example["climate"].numpy(), latitude_centers(32), longitude_centers(64),
                             title=f"{name}: lowest-level temperature (CLERO, assumed atmosphere)")
else:
    axes[0].set_axis_off()
    axes[0].set_title("no planet of this dataset lies in CLERO's domain")
wavelengths = manifest["modalities"]["spectrum"]["wavelength_um"]
plots.spectrum_features(axes[1], wavelengths, example["spectrum"].numpy(), title=f"{name}: SYNTHETIC spectrum")
plt.tight_layout()
plt.show()
graph_x, graph_edges = dataset.graphs[int(example["graph_id"])]
print(f"{name}: metabolic graph '{manifest['modalities']['metabolism']['variants'][int(example['graph_id'])]}' "
      f"({manifest['modalities']['metabolism']['source']}): {graph_x.shape[0]} metabolites, {graph_edges.shape[1]} edges")
print(f"text ({tokenizer.name}):", tokenizer.decode(example["text_ids"][example["text_mask"].bool()]))

# %% [markdown]
# ## A question the catalog cannot answer: gas detection from SIMULATED JWST spectra
# The habitability label above is a formula of catalog columns. The question worth a GPU month is
# another one: *given a noisy transmission spectrum from N JWST transits, which gases are there?*
# Real planets (rocky, one per host star) get atmospheres drawn from stated priors — the hidden truth —
# and TauREx 3 computes their transmission spectra (NIRSpec PRISM range, R = 50); the noise is the
# star's photon noise through JWST plus a 20 ppm floor. Everything in this section is **simulated**
# (see `astrobio_lib/data/transmission.py` for the physics, the priors and what is left out).

# %%
from astrobio_lib import gas_detection
from astrobio_lib.data import gas_spectra
from astrobio_lib.data import transmission as tx
from astrobio_lib.report import progress

gas = None
if cfg.data.gas_planets:
    rocky = gas_spectra.rocky_planets(planets, cfg.data.gas_planets)
    with progress(None, total=cfg.data.gas_planets * cfg.data.gas_atmospheres, desc="TauREx spectra") as bar:
        gas, cached = gas_spectra.build_or_load(data_dir / "gas_spectra", rocky, cfg.data.gas_atmospheres, cfg.run.seed,
                                                progress=lambda done, total: bar.update(done - bar.n))
    g = gas.manifest["generation"]
    print(f"{'reused' if cached else 'generated'}: {len(gas.depth)} SIMULATED spectra ({cfg.data.gas_planets} real rocky "
          f"planets x {cfg.data.gas_atmospheres} drawn atmospheres, {len(gas.wavelength_um)} bins "
          f"{gas.edges_um[0]:.2f}-{gas.edges_um[-1]:.2f} µm) with TauREx {gas.manifest['opacities']['taurex']}; "
          f"{g['spectra_per_s']} spectra/s on {g['processes']} processes ({g['seconds']} s)")
    prior_table = pd.DataFrame({"gas": tx.GASES, "present_%": (100 * gas.present.mean(0)).round(1),
                  "log10 VMR range when present": [f"{lo} … {hi}" for lo, hi in (tx.VMR_PRIORS[x] for x in tx.GASES)],
                  "opacity sha256": [gas.manifest["opacities"]["opacity_sha256"][x][:12] + "…" for x in tx.GASES]})
else:
    prior_table = None
    print("gas_planets: 0 — no gas-detection spectra in this run")
prior_table

# %%
if gas is not None:
    row = gas.planets.iloc[0]
    star, body = tx.bodies_from_row(row.to_dict())
    mid = {x: sum(tx.VMR_PRIORS[x]) / 2 for x in tx.GASES}
    wl, base = tx.spectrum(star, body, tx.Atmosphere(288.0, 1e5, {}))
    with_gas = {f"{x} (1e{mid[x]:.1f})": tx.spectrum(star, body, tx.Atmosphere(288.0, 1e5, {x: mid[x]}))[1] for x in tx.GASES}
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.5))
    plots.gas_features(axes[0], wl, base, with_gas,
                       title=f"{row['pl_name']}: SIMULATED, 288 K, 1 bar N2, each gas alone at mid-prior")
    i = 0  # the first spectrum of this planet, noisy at three numbers of transits
    noisy = {n: (gas_spectra.noisy(gas, np.array([i]), n, 1, seed=n)[0][0], gas.sigma(n)[i]) for n in (1, 10, 100)}
    present = ", ".join(x for x, p in zip(tx.GASES, gas.present[i]) if p) or "none"
    plots.noise_levels(axes[1], gas.wavelength_um, gas.depth[i], noisy,
                       title=f"{row['pl_name']}: drawn atmosphere ({present}), JWST photon noise + 20 ppm floor")
    plt.tight_layout()
    plt.show()

# %%
if gas is not None:
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    axes[0].bar(tx.GASES, 100 * gas.present.mean(0))
    axes[0].set_ylabel("% of atmospheres")
    axes[0].set_title("gas present (prior 50%)")
    for x, name in enumerate(tx.GASES):
        axes[1].hist(gas.log10_vmr[:, x][~np.isnan(gas.log10_vmr[:, x])], bins=15, alpha=0.5, label=name)
    axes[1].set_xlabel("log10 VMR when present")
    axes[1].legend(fontsize=7)
    axes[2].hist(gas.temperature_k, bins=20)
    axes[2].set_xlabel("temperature (K)")
    axes[3].hist(gas.log10_surface_pressure_pa - 5, bins=20)
    axes[3].set_xlabel("log10 surface pressure (bar)")
    fig.suptitle("prior draws (SIMULATED truths)")
    plt.tight_layout()
    plt.show()
    circularity = gas_detection.circularity_check(gas, cfg.run.seed)
    print("circularity check — catalog-only gradient boosting, out-of-fold by host star, AUROC per gas "
          "(~0.5 expected: no input is a function of the target): "
          + ", ".join(f"{k} {v:.2f}" for k, v in circularity.items()))
    split = gas_spectra.host_split(gas.hostname, cfg.run.seed)
    print(f"split by host star: {', '.join(f'{s} {int((split == s).sum())} spectra' for s in ('train', 'val', 'test'))}; "
          f"no star and no noiseless spectrum in two splits")

# %% [markdown]
# ## Verdict

# %%
leaked = labels.groupby("hostname")["split"].nunique().gt(1).sum()
print(provenance.banner())
print(f"labels.csv rows: {len(labels)} of {len(planets)} catalog planets; hosts in two splits: {leaked}; "
      f"habitable (rocky + optimistic HZ): {int((labels['habitable'] == True).sum())} "  # noqa: E712
      f"({prevalence.loc['habitable', 'prevalence_%']}% of decidable planets); dataset: "
      f"{len(dataset)} planets, climate {manifest['coverage']['climate']}, spectra {manifest['coverage']['spectrum']}; "
      f"fatal findings: {len(report.fatal)}, warnings: {sum(f.severity == 'warn' for f in report.findings)}")
failed = len(labels) != len(planets) or leaked or report.fatal
headline = (f"{provenance.source} catalog{' (SYNTHETIC: not real planets)' if provenance.synthetic else ''}, "
            f"{len(dataset)} planets built, {int((labels['habitable'] == True).sum())} habitable in the catalog, "  # noqa: E712
            f"{len(report.fatal)} fatal findings" + (f": {report.fatal[0].message}" if report.fatal else ""))
record_verdict(cfg.run.run_dir, "01_data_validation",
               "FAIL" if failed else "WARN" if provenance.synthetic else "PASS", headline)
if failed:
    raise RuntimeError("data verdict: FAIL — see the validation report above")

# %% tags=["completion-marker"]
completion_marker("01_data_validation")
