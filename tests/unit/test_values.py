"""Control characters in values bound for a job script or command line: ``check`` and the
adapters refuse them with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tardis_sge_dask.check import check
from tardis_sge_dask.configfile import dump, load
from tardis_sge_dask.sites.values import control_character_problems

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.mark.parametrize(
    ("change", "key_path"),
    [
        (
            lambda site: site["JobEnvironment"].update(PILOT_TOKEN_FILE="/t\n#$ -t 1-1000"),
            "tardis.PHYSnet.JobEnvironment.PILOT_TOKEN_FILE",
        ),
        (
            lambda site: site["MachineTypeConfiguration"]["idefix"].update(Queue="idefix.q\r"),
            "tardis.PHYSnet.MachineTypeConfiguration.idefix.Queue",
        ),
        (
            lambda site: site["MachineTypeConfiguration"]["idefix"].update(
                ExtraOptions=["-l", "arch=x\0"]
            ),
            "tardis.PHYSnet.MachineTypeConfiguration.idefix.ExtraOptions[1]",
        ),
    ],
)
def test_check_names_a_value_with_a_control_character(tmp_path, change, key_path):
    document = load(ROOT / "configs" / "physnet.yaml")
    change(document["tardis"]["PHYSnet"])
    config = tmp_path / "physnet.yaml"
    config.write_text(dump(document))
    named = [
        problem.key_path
        for problem in check(config, check_files=False)
        if "control character" in problem.problem
    ]
    # the key, or the one item of a list key
    assert len(named) == 1 and key_path.startswith(named[0]), named


def test_every_string_is_walked_except_the_executor_and_names():
    section = {
        "executor": object(),
        "MachineTypes": ["a\nb"],
        "JobEnvironment": {"X": "ok", "Y": "bad\x7f"},
        "MachineTypeConfiguration": {"m": {"ExtraOptions": ["-l", "x\u2029"], "Walltime": 60}},
    }
    assert [path for path, _ in control_character_problems("s", section)] == [
        "s.JobEnvironment.Y",
        "s.MachineTypeConfiguration.m.ExtraOptions[1]",
    ]
