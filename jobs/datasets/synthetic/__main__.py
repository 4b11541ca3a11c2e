"""``python -m jobs.datasets.synthetic``: see :mod:`jobs.datasets.synthetic.cli`."""

import sys

from jobs.datasets.synthetic.cli import main

sys.exit(main())
