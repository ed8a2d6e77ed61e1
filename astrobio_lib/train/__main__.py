"""``python -m astrobio_lib.train PARAMS.yaml [--set key=value ...]`` — what ``torchrun`` launches.

The params file is flat (as ``params/*.yaml`` or the ``train_params.yaml`` that notebook 03 writes);
``--set`` overrides single keys (YAML values). Exit codes: 0 done, 2 bad parameters / plan does
not fit / incompatible checkpoint, 3 stopped on non-finite steps.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from astrobio_lib import config
from astrobio_lib.memory import MemoryBudgetError
from astrobio_lib.train import distributed
from astrobio_lib.train.checkpoint import CheckpointError
from astrobio_lib.train.loop import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.train", description=__doc__.split("\n")[0])
    parser.add_argument("params", help="flat params YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        values = config.load_yaml(args.params)
        for item in args.set:
            key, _, raw = item.partition("=")
            values[key] = yaml.safe_load(raw)
        cfg = config.from_mapping(values, where=args.params)
        result = train(cfg)
    except (config.ConfigError, MemoryBudgetError, CheckpointError) as exc:
        print(f"astrobio train: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        distributed.cleanup()
    return 3 if result.stopped_because == "non_finite" else 0


if __name__ == "__main__":
    sys.exit(main())
