"""`python -m replayer`: see replayer/cli.py and docs/replayer.md."""

import sys

from replayer.cli import main

sys.exit(main())
