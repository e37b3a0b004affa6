"""`python -m orchestrator.cli …`, as the installed `proxyless` script."""

import sys

from orchestrator.cli import main

sys.exit(main())
