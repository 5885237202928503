"""Direct mode end to end on the real SLURM: the Grid Engine run with ``adapter: SlurmBatch``.

The same user-visible story as tests/integration/test_end_to_end_sge.py (work in, drones
up, the right result with every task run once on a drone, work gone, drones retired
through the scheduler and gone from ``squeue``); only the batch system differs.
"""

from __future__ import annotations

import pytest

from tests.helpers import slurm as squeue
from tests.helpers.daemon import unique_site
from tests.integration.test_end_to_end_sge import Backend, run_end_to_end

pytestmark = pytest.mark.integration

SLURM = Backend(
    adapter="SlurmBatch",
    machine_type={
        "Partition": "debug",
        "Walltime": 3600,
        # the warning signal before the walltime, and the grace after a graceful stop
        "WarningTime": 300,
        "StopGrace": 30,
    },
    jobs=squeue.alive,
    cleanup=squeue.cancel,
    out_log="{name}-*.out",
    err_log="{name}-*.err",
)


def test_dask_work_scales_slurm_drones_up_and_down(slurm, tmp_path):
    run_end_to_end(tmp_path, SLURM, unique_site("e2eslurm"))
