"""`python -m rgunicorn ARGS`: the same as the `rgunicorn` command."""
import sys

from rgunicorn.launcher import main

if __name__ == "__main__":
    sys.exit(main())
