"""``python -m tardis_sge_dask.pilot --path`` prints the pilot's installed path."""

from __future__ import annotations

import argparse
import sys

from . import EXIT_CODES, pilot_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tardis_sge_dask.pilot", description="The tardis-sge-dask drone pilot."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--path", action="store_true", help="print the pilot script's path")
    group.add_argument("--exit-codes", action="store_true", help="list the pilot's exit codes")
    args = parser.parse_args(argv)
    if args.path:
        print(pilot_path())
    else:
        for code, meaning in EXIT_CODES.items():
            print(f"{code:3d}  {meaning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
