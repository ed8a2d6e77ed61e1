"""Renders the README's results section from a run's summary, so every number there comes from a run
it names (commit, params, machine, load).

    .venv/bin/python scripts/render_results.py --from-run outputs/smoke   # copy the run's results.json to docs/results/
    .venv/bin/python scripts/render_results.py                            # render README.md from docs/results/smoke.json
    .venv/bin/python scripts/render_results.py --check                    # exit 1 when README.md differs from it

The smoke run's section sits between ``<!-- results:begin -->`` and ``<!-- results:end -->``; the
gas-detection benchmarks committed as ``docs/results/gas_benchmark_*.csv`` (with their ``.json``) between
``<!-- benchmark:begin -->`` and ``<!-- benchmark:end -->``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from astrobio_lib.results import SUMMARY_FILE, markdown  # noqa: E402
from astrobio_lib.tasks.gas_detection.evaluation import benchmark_markdown  # noqa: E402

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
BENCH_BEGIN, BENCH_END = "<!-- benchmark:begin -->", "<!-- benchmark:end -->"


def _replace(text: str, begin: str, end: str, body: str) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"README has no {begin} ... {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}{end}{tail}"


def render(readme: str, summary: dict, benchmarks: list[Path] = ()) -> str:
    """``readme`` with its results section replaced by the rendering of ``summary`` (and its benchmark
    section by the committed benchmark results, when there are any).

    Raises:
        ValueError: the README lacks the markers.
    """
    readme = _replace(readme, BEGIN, END, markdown(summary))
    if benchmarks:
        readme = _replace(readme, BENCH_BEGIN, BENCH_END, "\n".join(benchmark_markdown(p) for p in benchmarks))
    return readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--summary", default=str(REPO / "docs" / "results" / "smoke.json"))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--from-run", default=None, help="a run folder whose results.json becomes --summary")
    parser.add_argument("--check", action="store_true", help="only check that the README matches the summary")
    args = parser.parse_args(argv)
    summary_path = Path(args.summary)
    if args.from_run:
        src = Path(args.from_run) / SUMMARY_FILE
        if not src.is_file():
            print(f"render_results: {src} is missing: run the pipeline to the end first", file=sys.stderr)
            return 2
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, summary_path)
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"render_results: cannot read {summary_path}: {exc}", file=sys.stderr)
        return 2
    readme_path = Path(args.readme)
    current = readme_path.read_text()
    try:
        wanted = render(current, summary, sorted((REPO / "docs" / "results").glob("gas_benchmark_*.csv")))
    except ValueError as exc:
        print(f"render_results: {readme_path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != current:
            print(f"render_results: {readme_path} does not match {summary_path}: run scripts/render_results.py",
                  file=sys.stderr)
            return 1
        print(f"{readme_path} matches {summary_path}")
        return 0
    if wanted != current:
        readme_path.write_text(wanted)
    print(f"rendered {summary_path} into {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
