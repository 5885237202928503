"""The drone image pins the Dask this package pins.

The image cannot be built here (no Apptainer, no network to the EL repositories), so its
definition is checked statically: a worker in the image must speak the same
``distributed`` protocol as the scheduler and clients installed from setup.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
DEFINITION = ROOT / "containers" / "singularity" / "drone.def"


def setup_py_dask_version() -> str:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DASK_VERSION" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no DASK_VERSION")


def test_image_installs_the_dask_version_of_setup_py():
    text = DEFINITION.read_text()
    pinned = set(re.findall(r"^\s*DASK_VERSION=(\S+)\s*$", text, re.MULTILINE))
    assert pinned == {setup_py_dask_version()}
    assert '"dask==${DASK_VERSION}"' in text
    assert '"distributed==${DASK_VERSION}"' in text


def test_image_self_test_checks_the_same_versions():
    text = DEFINITION.read_text()
    test_section = text.split("%test", 1)[1]
    version = setup_py_dask_version()
    assert f'dask.__version__ == "{version}"' in test_section
    assert f'distributed.__version__ == "{version}"' in test_section


def test_image_has_what_the_pilot_needs():
    text = DEFINITION.read_text()
    assert re.search(r"^From: almalinux:9\s*$", text, re.MULTILINE)
    for package in ("condor", "gfal2-all", "gfal2-util-scripts", "python3-gfal2-util",
                    "xrootd-client", "ca-certificates", "tini", "epel-release"):
        assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", text), package
    assert "--set-enabled crb" in text
    assert "htcondor-release-current.el9" in text
    assert "/opt/tardis-sge-dask" in text
