"""The habitability task's sections of notebooks 01 and 04: tables and figures shown in the report."""

from __future__ import annotations

import pandas as pd

from astrobio_lib.report import section, show
from astrobio_lib.tasks.spec import DataReport, Evaluation


def show_data(report: DataReport) -> None:
    """Notebook 01: the data sources, the labels (Kopparapu 2014 habitable zone, rocky size, PHL,
    Monte-Carlo soft labels), the Teff-insolation plane, the rocky planets in each zone, the validation
    report and one planet's modalities."""
    import matplotlib.pyplot as plt

    from astrobio_lib.data import sources
    from astrobio_lib.tasks.habitability import plots

    d = report.details
    manifest, labels, planets, dataset = d["manifest"], d["labels"], d["planets"], d["dataset"]
    section("Sources", "Each source of the seeds is registered with the same interface; `ok` means it can deliver "
                       "data here. Offline is normal: the run uses local data and says so.")
    show(pd.DataFrame(sources.status_table())[["source", "modality", "access", "status", "detail"]])

    section("Build: labels for every planet, then the multimodal dataset",
            "Only the catalog is real; atmospheres are drawn from documented priors, so climate cubes and spectra "
            "are *modelled*, and the manifest says so.")
    print(f"{'reused' if manifest['reused'] else 'built'} in {manifest['build_seconds']} s: "
          f"{manifest['coverage']['planets']} planets with every modality where available; "
          f"labels.csv for all {len(labels)} catalog planets")
    show(pd.DataFrame(manifest["modalities"]).T[["source", "synthetic", "note"]])
    label_cols = ["hz_conservative", "hz_optimistic", "rocky", "habitable_phl", "habitable"]
    prevalence = pd.DataFrame({c: {"true": int((labels[c] == True).sum()),  # noqa: E712
                                   "false": int((labels[c] == False).sum()),  # noqa: E712
                                   "undetermined": int(labels[c].isna().sum())} for c in label_cols}).T
    prevalence["prevalence_%"] = (100 * prevalence["true"] / (prevalence["true"] + prevalence["false"])).round(2)
    print(f"dataset subset: {manifest['prevalence']['subset_habitable_%']}% habitable "
          f"({'enriched: all positives kept' if manifest['prevalence']['subset_enriched'] else 'whole catalog'}); "
          f"catalog: {manifest['prevalence']['catalog_habitable_%']}%")
    show(prevalence)

    section("The Teff–insolation plane")
    fig, ax = plt.subplots(figsize=(11, 5.5))
    fig.subplots_adjust(right=0.72)
    plots.hz_plane(ax, planets, labels)
    plt.show()

    section("Rocky-sized planets in the habitable zone",
            "Conservative zone (runaway to maximum greenhouse), then the optimistic zone (recent Venus to early "
            "Mars), ranked by the Earth Similarity Index (a similarity ranking, not habitability).")
    view = labels.join(planets[["pl_rade", "pl_bmasse", "pl_insol", "st_teff"]])
    cols = ["pl_name", "hostname", "pl_rade", "pl_bmasse", "pl_insol", "st_teff", "esi", "p_habitable", "split"]
    for zone, name in (("hz_conservative", "conservative"), ("hz_optimistic", "optimistic")):
        rocky = view[(view["rocky"] == True) & (view[zone] == True)]  # noqa: E712
        print(f"{len(rocky)} rocky-sized planets in the {name} HZ")
        show(rocky.sort_values("esi", ascending=False)[cols].round(3))

    section("Validation report", "`fatal` findings make the loader refuse the data; `warn` and `info` give context.")
    show(d["report"].to_frame())
    print(f"labels.csv rows: {len(labels)} of {len(planets)} catalog planets; hosts in two splits: {d['leaked_hosts']}; "
          f"habitable (rocky + optimistic HZ): {int((labels['habitable'] == True).sum())} "  # noqa: E712
          f"({prevalence.loc['habitable', 'prevalence_%']}% of decidable planets); dataset: {len(dataset)} planets, "
          f"climate {manifest['coverage']['climate']}, spectra {manifest['coverage']['spectrum']}; fatal findings: "
          f"{len(d['report'].fatal)}, warnings: {sum(f.severity == 'warn' for f in d['report'].findings)}")

    section("One planet's modalities")
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
    plots.spectrum_features(axes[1], wavelengths, example["spectrum"].numpy(),
                            title=f"{name}: SYNTHETIC spectrum (analytic model; this task's input)")
    plt.tight_layout()
    plt.show()
    graph_x, graph_edges = dataset.graphs[int(example["graph_id"])]
    print(f"{name}: metabolic graph '{manifest['modalities']['metabolism']['variants'][int(example['graph_id'])]}' "
          f"({manifest['modalities']['metabolism']['source']}): {graph_x.shape[0]} metabolites, "
          f"{graph_edges.shape[1]} edges")
    print(f"text ({d['tokenizer'].name}):", d["tokenizer"].decode(example["text_ids"][example["text_mask"].bool()]))


def show_evaluation(evaluation: Evaluation) -> None:
    """Notebook 04: metrics with host-bootstrap intervals against the baselines, calibration, the
    confusion matrix, ablations and the other heads."""
    import matplotlib.pyplot as plt

    from astrobio_lib.tasks.habitability import plots

    result = evaluation.details
    section("Habitability on unseen host systems",
            "The hard label *is* the HZ + rocky rule on the catalog point estimates, so that rule is perfect on it "
            "by construction and gradient boosting on the catalog relearns it; what physics alone cannot give is "
            "the uncertainty — the Brier score against the Monte-Carlo soft label is the headline. Plain accuracy "
            "is shown only beside the majority-class accuracy, because answering \"not habitable\" every time "
            "already scores it.")
    m = result["model"]
    print(f"checkpoint {result['checkpoint']} ({result['model_preset']}); test split: {result['n_test_planets']} "
          f"decidable planets from {result['n_test_hosts']} host systems, {m['positives']} habitable "
          f"(prevalence {m['prevalence']:.3f})")
    print(f"accuracy {m['accuracy']:.3f} vs majority-class accuracy {m['majority_accuracy']:.3f}: with "
          f"{100 * m['prevalence']:.1f}% positives, 'never habitable' already scores the latter, so accuracy is not "
          f"the headline.")
    rows = []
    for name, intervals in result["intervals"].items():
        row = {"predictor": name}
        for metric, (point, low, high) in intervals.items():
            row[metric] = f"{point:.3f} [{low:.3f}, {high:.3f}]"
        rows.append(row)
    show(pd.DataFrame(rows).set_index("predictor")[["auprc", "auroc", "brier_soft", "brier", "ece",
                                                    "balanced_accuracy", "mcc", "f1"]])

    section("Precision-recall, calibration, confusion and ablations")
    pred = pd.DataFrame(result["predictions"])
    scored = {"model": pred["prob"], **{c.replace("baseline_", ""): pred[c] for c in pred.columns
                                        if c.startswith("baseline_")}}
    fig, axes = plt.subplots(1, 4, figsize=(22, 4.5))
    plots.precision_recall(axes[0], pred["y"].astype(int), scored, m["prevalence"])
    plots.reliability_diagram(axes[1], pd.DataFrame(result["reliability"]))
    plots.confusion(axes[2], pred["y"], pred["prob"])
    plots.ablation_bars(axes[3], m["auprc"], result["ablations"])
    plt.tight_layout()
    plt.show()
    show(pd.DataFrame(result["ablations"]).T[["auprc", "auroc", "brier_soft"]].round(3).assign(**result["tasks"]))
    print("evaluation verdict (Brier vs the soft label, and AUPRC, each with 95% host-bootstrap intervals; "
          "'beats' needs non-overlapping intervals):")
    print("\n".join("  " + line for line in result["verdicts"]))
