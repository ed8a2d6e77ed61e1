"""``python -m astrobio_lib.train PARAMS.yaml [--set key=value ...]`` — what ``torchrun`` launches.

The params file is flat (as ``params/*.yaml`` or the ``train_params.yaml`` that notebook 03 writes);
``--set`` overrides single keys (YAML values; ``3e-4`` is a float). The run folder must hold the
dataset that notebook 01 built.

Exit codes: 0 done; 2 bad parameters, plan does not fit, no dataset, incompatible or no valid
checkpoint (a changed structural or data key is named), run folder locked or unusable (read-only, a file
where a folder belongs); 3 stopped on non-finite steps; 4 stopped on divergence
(``divergence_stop``); 5 disk full (the previous checkpoint is valid); 75 interrupted by SIGTERM /
SIGINT after writing a checkpoint — run the same command again to continue.
"""

from __future__ import annotations

import argparse
import sys

from astrobio_lib import config
from astrobio_lib.fsutil import DiskFullError, RunFolderError, RunLockedError
from astrobio_lib.memory import MemoryBudgetError
from astrobio_lib.train import distributed
from astrobio_lib.train.checkpoint import CheckpointError
from astrobio_lib.train.loop import DatasetNotBuilt, train
from astrobio_lib.train.preemption import INTERRUPTED_EXIT

EXIT_CODES = {"non_finite": 3, "diverged": 4, "interrupted": INTERRUPTED_EXIT}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astrobio_lib.train", description=__doc__.split("\n")[0])
    parser.add_argument("params", help="flat params YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        values = config.load_yaml(args.params)
        for item in args.set:
            key, _, raw = item.partition("=")
            values[key] = config.parse_yaml_value(raw)
        cfg = config.from_mapping(values, where=args.params)
        result = train(cfg)
    except (config.ConfigError, MemoryBudgetError, CheckpointError, DatasetNotBuilt, RunLockedError,
            RunFolderError) as exc:
        print(f"astrobio train: {exc}", file=sys.stderr, flush=True)
        return 2
    except DiskFullError as exc:
        print(f"astrobio train: {exc}", file=sys.stderr, flush=True)
        return 5
    finally:
        distributed.cleanup()
    return EXIT_CODES.get(result.stopped_because, 0)


if __name__ == "__main__":
    sys.exit(main())
