"""Orphans: drone jobs the batch system has and the registry does not (status, sweep).

``qstat``/``qdel`` and ``squeue``/``scancel`` are stand-ins on PATH answering in the shape
the real ones do (tests/fixtures) and recording each call; tests/integration/test_orphans.py
sweeps the real Grid Engine and SLURM.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from tardis_sge_dask.cli import main
from tardis_sge_dask.orphans import drone_name, orphans_among
from tardis_sge_dask.sites.batchsite import JobInfo
from tardis_sge_dask.sites.slurm import SLURM_STATES
from tests.conftest import FIXTURES
from tests.helpers.registry import register

REGISTERED = ("physnet-1111111111", "physnet-2222222222")


def qstat_xml(jobs: list[tuple[str, str, str]]) -> str:
    """A ``qstat -xml`` answer listing (id, name, state) as pending jobs."""
    entries = "".join(
        f"<job_list state='pending'><JB_job_number>{job_id}</JB_job_number>"
        f"<JB_name>{name}</JB_name><JB_owner>root</JB_owner><state>{state}</state></job_list>"
        for job_id, name, state in jobs
    )
    return (
        "<?xml version='1.0'?><job_info><queue_info></queue_info>"
        f"<job_info>{entries}</job_info></job_info>"
    )


def standin(
    bindir: Path,
    name: str,
    calls: Path,
    stdout: str = "",
    stderr: str = "",
    code: int = 0,
    per_id: str = "",
) -> None:
    """``name`` on PATH: appends its argv to ``calls``, prints the canned answer, then
    ``per_id`` once for each argument (``{id}`` is the argument)."""
    bindir.mkdir(exist_ok=True)
    program = bindir / name
    program.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps([{name!r}, *sys.argv[1:]]) + '\\n')\n"
        f"sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r})\n"
        f"ids = [arg for arg in sys.argv[1:] if not arg.startswith('-')]\n"
        f"sys.stdout.write(''.join({per_id!r}.format(id=arg) for arg in ids))\n"
        f"sys.exit({code})\n"
    )
    program.chmod(program.stat().st_mode | stat.S_IEXEC)


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_config(tmp_path: Path, adapter: str = "SGE", machine_type: dict | None = None) -> Path:
    tardis = {
        "Plugins": {"SqliteRegistry": {"db_file": str(tmp_path / "drones.db")}},
        "BatchSystem": {
            "adapter": "FakeBatchSystem",
            "allocation": 1.0,
            "utilisation": 1.0,
            "machine_status": "Available",
        },
        "Sites": [{"name": "PHYSnet", "adapter": adapter, "quota": 8}],
        "PHYSnet": {
            "MachineTypes": ["idefix"],
            "MachineMetaData": {"idefix": {"Cores": 1, "Memory": 2, "Disk": 1}},
            "MachineTypeConfiguration": {
                "idefix": {"StartupCommand": "/bin/true", **(machine_type or {})}
            },
        },
    }
    asyncio.run(register(tardis, "PHYSnet", tuple((uuid, "idefix") for uuid in REGISTERED)))
    path = tmp_path / "cobald.yaml"
    path.write_text(yaml.safe_dump({"tardis": tardis}))
    return path


@pytest.fixture
def sge_site(tmp_path, monkeypatch):
    """Grid Engine lists two registered drones, two orphans, and three jobs that are not
    orphans: the user's own job, a drone of another site sharing the prefix, a bad name."""
    config = write_config(tmp_path)
    listing = qstat_xml(
        [
            ("101", REGISTERED[0], "r"),
            ("102", REGISTERED[1], "qw"),
            ("103", "physnet-3333333333", "r"),
            ("104", "physnet-4444444444", "qw"),
            ("105", "analysis.sh", "r"),
            ("106", "physnet-old-5555555555", "r"),
            ("107", "physnet-66666", "r"),
            ("108", "physnet-7777777777", "dr"),
        ]
    )
    record = tmp_path / "calls.jsonl"
    standin(tmp_path / "bin", "qstat", record, stdout=listing)
    registered = "root has registered the job {id} for deletion\n"
    standin(tmp_path / "bin", "qdel", record, per_id=registered)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    return config, record


def test_a_drone_job_is_named_after_its_site_and_ten_hex_digits():
    pattern = drone_name("PHYSnet")
    assert pattern.fullmatch("physnet-0123abcdef")
    for other in (
        "physnet-0123abcde",
        "physnet-0123ABCDEF",
        "physnetx-0123abcdef",
        "physnet-old-0123abcdef",
        "xphysnet-0123abcdef",
        "physnet-0123abcdef0",
    ):
        assert not pattern.fullmatch(other), other


def test_ended_and_registered_jobs_are_no_orphans():
    jobs = {
        "1": JobInfo("1", "RUNNING", "hummel-aaaaaaaaaa"),
        "2": JobInfo("2", "COMPLETED", "hummel-bbbbbbbbbb"),
        "3": JobInfo("3", "PENDING", "hummel-cccccccccc"),
        "4": JobInfo("4", "CANCELLED", "hummel-dddddddddd"),
    }
    found = orphans_among(jobs, "Hummel", {"hummel-cccccccccc"}, lambda s: SLURM_STATES.get(s))
    assert [(o.job_id, o.name) for o in found] == [("1", "hummel-aaaaaaaaaa")]


def test_sweep_lists_only_this_sites_unregistered_drones_and_removes_nothing(sge_site, capsys):
    config, record = sge_site
    assert main(["sweep", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "3 orphan job(s): in the batch system, not in the registry"
    listed = [line.split()[0] for line in out.splitlines()[2:5]]
    assert listed == ["103", "104", "108"]
    for foreign in ("105", "106", "107", "101", "102"):
        assert f"\n{foreign} " not in out
    assert "dry run, nothing removed" in out and "--yes" in out
    assert [call[0] for call in calls(record)] == ["qstat"]


def test_sweep_yes_removes_exactly_the_orphans(sge_site, capsys):
    config, record = sge_site
    assert main(["sweep", "--yes", str(config)]) == 0
    out = capsys.readouterr().out
    assert "PHYSnet: job 103 (physnet-3333333333): removed" in out
    # one qdel for all of them, as the daemon removes drones
    assert [call for call in calls(record) if call[0] == "qdel"] == [["qdel", "103", "104", "108"]]


def test_status_lists_the_orphans_with_the_registered_drones(sge_site, capsys):
    config, _ = sge_site
    assert main(["status", str(config)]) == 0
    captured = capsys.readouterr()
    rows = {line.split()[0]: line.split() for line in captured.out.splitlines()[1:-1]}
    assert set(rows) == {
        *REGISTERED,
        "physnet-3333333333",
        "physnet-4444444444",
        "physnet-7777777777",
    }
    assert rows["physnet-4444444444"][1:4] == ["Orphan", "104", "PHYSnet"]
    assert captured.out.splitlines()[-1] == "5 drone(s): 1 Available, 1 Booting, 3 Orphan"
    assert f"tardis-sge-dask sweep {config} removes them" in captured.err

    assert main(["status", "--json", str(config)]) == 0
    states = [row["state"] for row in json.loads(capsys.readouterr().out)]
    assert states.count("Orphan") == 3


def test_a_site_that_cannot_be_listed_is_named_and_nothing_is_removed(
    tmp_path, monkeypatch, capsys
):
    config = write_config(tmp_path)
    record = tmp_path / "calls.jsonl"
    unreachable = (FIXTURES / "sge" / "qstat-j-unreachable.stderr").read_text()
    standin(tmp_path / "bin", "qstat", record, stderr=unreachable, code=1)
    standin(tmp_path / "bin", "qdel", record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert main(["sweep", "--yes", str(config)]) == 1
    err = capsys.readouterr().err
    assert "site PHYSnet not listed: exit code 1:" in err
    assert [call[0] for call in calls(record)] == ["qstat"]
    # status still shows the registry, and says why orphans are missing
    assert main(["status", str(config)]) == 0
    captured = capsys.readouterr()
    assert "2 drone(s)" in captured.out
    assert "orphans not looked for at site PHYSnet" in captured.err


def test_sweep_refuses_without_the_registry(tmp_path, capsys):
    config = write_config(tmp_path)
    (tmp_path / "drones.db").unlink()
    assert main(["sweep", "--yes", str(config)]) == 1
    assert "drones.db does not exist" in capsys.readouterr().err


def test_slurm_orphans_are_cancelled_and_ended_jobs_left(tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path, adapter="SlurmBatch")
    record = tmp_path / "calls.jsonl"
    listing = "\n".join(
        [
            f"201|RUNNING|{REGISTERED[0]}",
            "202|RUNNING|physnet-abcdefabcd",
            "203|COMPLETED|physnet-0000000000",
            "204|PENDING|interactive",
            "205_1|RUNNING|physnet-1212121212",
        ]
    )
    standin(tmp_path / "bin", "squeue", record, stdout=listing + "\n")
    # scancel -v names each job it cancels (tests/fixtures/slurm/scancel-v-bulk.stderr)
    standin(tmp_path / "bin", "scancel", record, per_id="scancel: Terminating job {id}\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert main(["sweep", "--yes", str(config)]) == 0
    assert [call for call in calls(record) if call[0] == "scancel"] == [["scancel", "-v", "202"]]
    assert "job 202 (physnet-abcdefabcd): removed" in capsys.readouterr().out


def test_a_job_already_gone_is_no_failure(sge_site, capsys):
    config, record = sge_site
    bindir = config.parent / "bin"
    # qdel's answer about an unknown id (recorded), then about the two it removed
    gone = (FIXTURES / "sge" / "qdel-unknown.stdout").read_text().replace("99999", "103")
    removed = "".join(f"root has registered the job {job} for deletion\n" for job in (104, 108))
    standin(bindir, "qdel", record, stdout=gone + removed, code=1)
    assert main(["sweep", "--yes", str(config)]) == 0
    out = capsys.readouterr().out
    assert "job 103 (physnet-3333333333): already gone" in out
    assert "job 104 (physnet-4444444444): removed" in out
