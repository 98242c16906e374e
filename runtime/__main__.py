"""Entry point for ``python -m runtime``."""

import sys

from runtime.app import main

if __name__ == "__main__":
    sys.exit(main())
