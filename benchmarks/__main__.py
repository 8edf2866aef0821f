"""``python -m benchmarks``: the pipeline stage benchmark (``benchmarks.run``)."""

import sys

from benchmarks.run import main

sys.exit(main())
