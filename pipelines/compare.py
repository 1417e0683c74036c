"""Compare two trained runs on the same test images: McNemar's exact test and the accuracy difference with its
paired 95 % interval (the step the report shows between neighbours of the study, for any two runs).

    python pipelines/compare.py baseline augment                      # models/baseline against models/augment
    python pipelines/compare.py augment modern                        # the book's convnet against the modern one
    python pipelines/compare.py multirun/seeds/8 multirun/seeds/11    # any two run folders, e.g. a sweep's jobs
    python pipelines/compare.py feature_extract fine_tune --json
    python pipelines/compare.py --common old/models/fine_tune models/fine_tune   # on the test images both have

--common pairs runs whose test sets differ (a study against its rerun with data.exclude) on the images both were
tested on; without it they are refused.
"""

import argparse
import json
from pathlib import Path

from smallvision.entrypoints import friendly_errors
from smallvision.evidence import compare_lines, compare_report, run_at


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="a technique (its folder under --models) or a run folder")
    parser.add_argument("second", help="the same, compared against the first")
    parser.add_argument("--models", type=Path, default=Path("models"), help="where techniques' folders are")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--common",
        action="store_true",
        help="pair the two on the test images both were tested on (runs of two splits, e.g. without and with "
        "data.exclude); without it, runs tested on different images are refused",
    )
    args = parser.parse_args(argv)
    first, second = run_at(args.first, args.models), run_at(args.second, args.models)
    report = compare_report(first, second, common=args.common)
    print(json.dumps(report, indent=2) if args.json else "\n".join(compare_lines(report)))


if __name__ == "__main__":
    main()
