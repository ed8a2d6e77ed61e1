"""Gas detection on your own spectra: the product's model against its baselines, paired, with the
oracle ceiling and the posterior's coverage.

    python benchmarks/gas_detection.py --spectra DIR --out results.csv [--no-oracle] [--floor white|correlated]

``DIR`` is a set of SIMULATED spectra as ``astrobio_lib.data.gas_spectra.save`` writes it
(``manifest.json``, ``planets.parquet``, ``spectra.npz``) or a run's ``data/gas_spectra`` link to the
store; its planets are taken as given. The script trains the gas-detection model (the product's
trainer, preset ``tiny``: fresh noise per step, N log-uniform over 1-100) on the training host stars
(the product's 60/20/20 host split of the set, validation stars for early stopping), scores it and the
three baselines on the same fixed test draws of the test host stars, and writes one CSV row per gas,
N and baseline: ``gas, n_transits, against, model_auroc, baseline_auroc, delta_auroc, delta_lo,
delta_hi`` (the paired two-stage bootstrap interval of ΔAUROC), ``verdict``, the oracle ceiling
``oracle_auroc`` (empty with ``--no-oracle``), and the posterior's expected-coverage error
``coverage_error`` (the same in every row). It prints the table, the fraction of the gap to the
ceiling the model closes, and the wall time of each part. Everything it reports is SIMULATED.

Make a set to run it on (40 planets x 75 atmospheres: about 6 minutes of TauREx on 2 cores):

    python -m astrobio_lib.data.gas_spectra generate --gas-planets 40 --atmospheres 75 --seed 7 --export /tmp/set75

Threads: the trainer and the baselines run with one BLAS / OpenMP thread per process (the baselines'
gradient boosting took 380 s instead of 8 s with default threads on a loaded 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spectra", required=True, help="folder of a saved spectra set (gas_spectra.save format)")
    parser.add_argument("--out", required=True, help="CSV to write")
    parser.add_argument("--no-oracle", action="store_true", help="skip the oracle ceiling (no extra TauREx spectra)")
    parser.add_argument("--floor", choices=("white", "correlated"), default=None,
                        help="noise floor model for training and test draws (default: the product's default)")
    parser.add_argument("--seed", type=int, default=0, help="run seed: host split, test draws, training")
    parser.add_argument("--steps", type=int, default=3000,
                        help="optimizer steps (the cosine schedule decays over them; the best validation is kept)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall-clock limit")
    parser.add_argument("--batch", type=int, default=256, help="micro-batch size")
    parser.add_argument("--draws", type=int, default=4, help="test noise draws per spectrum and N")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--workers", type=int, default=-1, help="TauREx worker processes for the oracle (-1: every core)")
    parser.add_argument("--run-dir", default=None, help="keep the run (checkpoints, metrics) here instead of a temp dir")
    args = parser.parse_args(argv)

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from astrobio_lib import config as config_mod
    from astrobio_lib import results
    from astrobio_lib.data import gas_spectra as gs
    from astrobio_lib.tasks.gas_detection.evaluation import evaluate_gas_run

    spectra = Path(args.spectra).resolve()
    try:
        ds = gs.load(spectra)
    except (FileNotFoundError, gs.SpectraCorrupt) as exc:
        print(f"gas_detection benchmark: {exc}", file=sys.stderr)
        return 2
    floor = args.floor or config_mod.Config().data.noise_floor
    load_before = [round(v, 2) for v in os.getloadavg()]
    m = ds.manifest
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="astrobio-gasbench-") as tmp:
        run_dir = Path(args.run_dir).resolve() if args.run_dir else Path(tmp) / "run"
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        link = run_dir / "data" / "gas_spectra"
        if not link.exists():
            link.symlink_to(spectra, target_is_directory=True)
        cfg = config_mod.from_mapping({
            "run_dir": str(run_dir), "seed": args.seed, "task": "gas_detection", "model_preset": "tiny",
            "gas_planets": int(m["n_planets"]), "gas_atmospheres": int(m["atmospheres_per_planet"]),
            "saturation": (m.get("saturation") or {}).get("mode", "keep"), "noise_floor": floor,
            "catalog_source": (m.get("catalog") or {}).get("source", "snapshot") if (m.get("catalog") or {}).get(
                "source") in ("snapshot", "archive") else "snapshot",
            "gas_train_draws": 8, "max_steps": args.steps, "max_hours": args.minutes / 60,
            "micro_batch_size": args.batch, "learning_rate": 1e-3, "warmup_steps": 100, "schedule": "cosine",
            "val_every_steps": 200, "early_stopping_patience": 15, "checkpoint_every_steps": 1000,
            "log_every_steps": 500, "wandb_mode": "disabled", "resume": "never", "precision": "fp32",
            "bootstrap_samples": args.bootstrap, "gas_noise_draws": args.draws, "simulation_workers": args.workers})
        from astrobio_lib.train.loop import train

        print(f"training on {len(ds.depth)} SIMULATED spectra ({m['n_planets']} planets x {m['atmospheres_per_planet']} "
              f"atmospheres) from {spectra}; noise floor {floor}; at most {args.steps} steps or {args.minutes} min",
              flush=True)
        t0 = time.monotonic()
        result = train(cfg)
        t_train = time.monotonic() - t0
        print(f"trained {result.step} steps in {t_train:.0f} s ({result.stopped_because}); best validation at step "
              f"{result.best_step}", flush=True)
        t0 = time.monotonic()
        ev = evaluate_gas_run(run_dir, draws=args.draws, bootstrap=args.bootstrap, seed=args.seed, floor=floor,
                              with_oracle=not args.no_oracle, workers=args.workers)
        t_eval = time.monotonic() - t0
    paired = ev["paired_table"]
    curves = ev["curves"]
    if not args.no_oracle:
        ceiling = curves[curves["baseline"] == "oracle"].set_index(["gas", "n_transits"])["auroc"]
        paired["oracle_auroc"] = [ceiling.get((g, n), np.nan) for g, n in zip(paired["gas"], paired["n_transits"], strict=True)]
    else:
        paired["oracle_auroc"] = np.nan
    paired["coverage_error"] = ev["coverage_error"]
    columns = ["gas", "n_transits", "against", "model_auroc", "baseline_auroc", "delta_auroc", "delta_lo", "delta_hi",
               "verdict", "oracle_auroc", "coverage_error"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paired[columns].to_csv(out, index=False, float_format="%.4f")
    pd.set_option("display.width", 200)
    print(paired[columns].round(3).to_string(index=False))
    if len(ev["gap_table"]):
        print("\nshare of the gap between the best spectral baseline and the oracle the model closes:")
        print(ev["gap_table"].pivot_table(index="gas", columns="n_transits", values="gap_closed").round(2).to_string())
    print(f"\nstrongest baseline: {ev['strongest_baseline']}; posterior expected-coverage error "
          f"{ev['coverage_error']:.3f}; test: {ev['n_test_hosts']} host stars, {ev['n_test_spectra']} spectra x "
          f"{args.draws} draws")
    wall = time.monotonic() - t_all
    meta = {"train_s": round(t_train, 1), "evaluate_s": round(t_eval, 1), "wall_s": round(wall, 1),
            "steps": result.step, "best_step": result.best_step, "csv": out.name, "spectra": m["n_spectra"],
            "planets": m["n_planets"], "atmospheres_per_planet": m["atmospheres_per_planet"],
            "set_seed": m.get("seed"), "saturation": (m.get("saturation") or {}).get("mode", "not recorded"),
            "noise_floor": floor, "oracle": not args.no_oracle, "seed": args.seed,
            "strongest_baseline": ev["strongest_baseline"], "coverage_error": round(ev["coverage_error"], 4),
            "test_hosts": ev["n_test_hosts"], "test_spectra": ev["n_test_spectra"], "draws": args.draws,
            "command": "python benchmarks/gas_detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{os.cpu_count()} CPU cores", "load_average_before": load_before,
            "created": time.strftime("%Y-%m-%d %H:%M"), "commit": results.commit()}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps({k: meta[k] for k in ("train_s", "evaluate_s", "wall_s", "steps", "best_step")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
