"""The demand record: what the controller asks for, readable by another process."""

from __future__ import annotations

from pathlib import Path

from cobald.interfaces import Pool

from tardis_sge_dask.check import check
from tardis_sge_dask.demand.record import DemandRecord, read_record
from tardis_sge_dask.demo.config import demo_config
from tardis_sge_dask.demo.observe import Observer

ROOT = Path(__file__).resolve().parent.parent.parent


class FakePool(Pool):
    demand = 0.0  # type: ignore[assignment]
    supply = 2.0  # type: ignore[assignment]
    utilisation = allocation = 1.0  # type: ignore[assignment]


class Plan(float):
    """Stands for the per-site plan the controller's demand carries."""


def test_the_demand_passes_on_unchanged_and_is_recorded(tmp_path):
    pool = FakePool()
    record = DemandRecord(pool, str(tmp_path / "run" / "demand.json"))
    plan = Plan(3.0)
    record.demand = plan
    assert pool.demand is plan
    seen = read_record(tmp_path / "run" / "demand.json")
    assert (seen["demand"], seen["supply"]) == (3.0, 2.0)


def test_no_record_yet_is_none(tmp_path):
    assert read_record(tmp_path / "demand.json") is None
    (tmp_path / "demand.json").write_text("{half")
    assert read_record(tmp_path / "demand.json") is None


def test_the_demo_reads_the_demand_from_the_record_of_its_config(tmp_path):
    demand_file = tmp_path / "demand.json"
    config, _ = demo_config(
        ROOT / "configs" / "local.yaml", tmp_path, "tcp://127.0.0.1:40001", demand_file
    )
    # the daemon refuses what check refuses: the record must pass both
    assert [str(problem) for problem in check(config, check_files=False)] == []
    assert "tardis_sge_dask.demand.record.DemandRecord" in config.read_text()

    DemandRecord(FakePool(), str(demand_file)).demand = 4.0
    observer = Observer(demand_file, tmp_path / "drones.db", started=0.0)

    class Scheduler:
        workers: dict = {}

    observer.observe(Scheduler(), None)
    assert (observer.seen.demand, observer.seen.peak_demand) == (4.0, 4.0)
