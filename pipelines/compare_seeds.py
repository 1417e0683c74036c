"""Draw a sweep's comparison from its job folders (the same files a sweep writes when each of its jobs ends): for a
seed sweep the mean and spread of the test accuracy across seeds per technique, for a backbone sweep the accuracy
with its interval, time per epoch and parameters per backbone and technique; a seed sweep also gets each
seed's paired test of each technique against the one before it and the mean step over seeds.

    python pipelines/compare_seeds.py multirun/2026-12-02/07-04-20
    -> multirun/2026-12-02/07-04-20/seed_comparison.json, .md, .png and .html (the sweep's report page)
       (a backbone sweep: backbone_comparison.json, .md, .png)
"""

import argparse
from pathlib import Path

from hydra import compose, initialize_config_dir

from smallvision.entrypoints import friendly_errors, load_settings
from smallvision.schema import validate
from smallvision.schema_visualize import Visualize
from smallvision.sweeps import sweep_visualize_config, write_sweep_comparison

CONF = Path(__file__).resolve().parents[1] / "conf"


@friendly_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a Hydra multirun folder (holds multirun.yaml and 0/, 1/, ...)")
    args = parser.parse_args(argv)
    swept = sweep_visualize_config(args.sweep_dir)
    if swept is None:  # no multirun.yaml: the project's own settings
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            visualize = load_settings(compose("config")).visualize
    else:
        visualize = validate(Visualize, swept, "visualize")
    for path in write_sweep_comparison(args.sweep_dir, visualize):
        print(path)


if __name__ == "__main__":
    main()
