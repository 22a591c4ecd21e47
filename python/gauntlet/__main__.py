"""The ``gauntlet`` command line, as installed by the Python package."""

import sys

from . import run_cli


def main() -> None:
    try:
        sys.exit(run_cli(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
