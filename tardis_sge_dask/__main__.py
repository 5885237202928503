"""``python -m tardis_sge_dask`` = the ``tardis-sge-dask`` command."""

import sys

from .cli import main

sys.exit(main())
