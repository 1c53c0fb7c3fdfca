"""`python -m podtrail.cli`: the same as `kubectl-podtrail`."""

import sys

from podtrail.cli.main import main

sys.exit(main())
