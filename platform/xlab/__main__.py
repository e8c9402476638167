"""`python -m xlab` == `xlab`."""

import sys

from xlab.cli import main

sys.exit(main())
