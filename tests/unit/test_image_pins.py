"""The drone images pin the Dask this package pins, and carry the same tools.

The production image (containers/singularity/drone.def, AlmaLinux 9) cannot be built here
(no Apptainer, no network to the EL repositories), so its definition is checked
statically: a worker in the image must speak the same ``distributed`` protocol as the
scheduler and clients installed from setup.py. The test image
(containers/test-image/build.sh, Debian 13) is built and run by the integration tests;
here its definition is held in step with drone.def's.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]
DEFINITION = ROOT / "containers" / "singularity" / "drone.def"
TEST_IMAGE_BUILD = ROOT / "containers" / "test-image" / "build.sh"
TEST_IMAGE_README = ROOT / "containers" / "test-image" / "README.md"

# The one statement of how the two images' packages correspond: a Debian 13 package of the
# test image -> the AlmaLinux 9 package of drone.def that provides the same.
COUNTERPARTS = {
    "condor": "condor",
    "ca-certificates": "ca-certificates",
    "openssl": "openssl",
    "procps": "procps-ng",
    "tini": "tini",
    "gfal2": "gfal2-all",
    "gfal2-plugin-file": "gfal2-all",
    "gfal2-plugin-http": "gfal2-all",
    "gfal2-plugin-xrootd": "gfal2-all",
    "python3-gfal2": "python3-gfal2-util",  # EL: a dependency of python3-gfal2-util
    "python3-gfal2-util": "python3-gfal2-util",
    "gfal2-util-scripts": "gfal2-util-scripts",
    "xrootd-client": "xrootd-client",
    "voms-clients": "voms-clients-cpp",
}
# In one image only, each with the reason.
TEST_IMAGE_ONLY = {
    "python-is-python3": "gfal-copy falls back to /usr/bin/python; Debian has none without it",
}
DRONE_DEF_ONLY = {
    "dnf-plugins-core": "repository set-up",
    "epel-release": "repository set-up",
    "python3.11": "the test image carries the client's own Python instead",
    "python3.11-pip": "the test image carries the client's own Python instead",
    "which": "Debian's is in an essential package",
    "osg-ca-certs": "IGTF CAs; the tests make their own CA",
}


# What a task needs to reach grid storage from a drone (issue 14), by the package that
# provides it in each image: (Debian 13 test image, AlmaLinux 9 drone.def).
GRID_TOOLS = {
    "gfal2 library": ("gfal2", "gfal2-all"),
    "gfal2 XRootD plugin": ("gfal2-plugin-xrootd", "gfal2-all"),
    "gfal2 HTTP/WebDAV plugin": ("gfal2-plugin-http", "gfal2-all"),
    "gfal2 file plugin": ("gfal2-plugin-file", "gfal2-all"),
    "gfal2 Python bindings (the pilot's health check)": ("python3-gfal2", "python3-gfal2-util"),
    "gfal-copy, gfal-ls, gfal-cat (tardis_sge_dask.grid)": (
        "gfal2-util-scripts",
        "gfal2-util-scripts",
    ),
    "XRootD client and its GSI plugin": ("xrootd-client", "xrootd-client"),
    "VOMS clients (voms-proxy-info, voms-proxy-init)": ("voms-clients", "voms-clients-cpp"),
}


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
    for package in (
        "condor",
        "gfal2-all",
        "gfal2-util-scripts",
        "python3-gfal2-util",
        "xrootd-client",
        "voms-clients-cpp",
        "ca-certificates",
        "tini",
        "epel-release",
    ):
        assert re.search(rf"(^|\s){re.escape(package)}(\s|$)", text), package
    assert "--set-enabled crb" in text
    assert "htcondor-release-current.el9" in text
    assert "/opt/tardis-sge-dask" in text


def drone_def_packages() -> set[str]:
    """Every package name drone.def's %post hands to `dnf install`."""
    post = DEFINITION.read_text().split("%post", 1)[1].split("\n%", 1)[0]
    post = post.replace("\\\n", " ")
    packages: set[str] = set()
    for command in re.split(r"&&|\|\||;|\n", post):
        match = re.match(r"\s*dnf -y install (.*)", command)
        if match:
            packages.update(w for w in match.group(1).split() if "://" not in w)
    return packages


def build_script_assignment(name: str) -> str:
    match = re.search(rf'^{name}="?([^"\n]*)"?$', TEST_IMAGE_BUILD.read_text(), re.MULTILINE)
    assert match, f"build.sh sets no {name}"
    return match.group(1)


def test_test_image_reads_the_dask_version_from_setup_py():
    """One source of truth: the assignment in build.sh, run, yields setup.py's pin."""
    assignment = next(
        line
        for line in TEST_IMAGE_BUILD.read_text().splitlines()
        if line.startswith("DASK_VERSION=")
    )
    version = subprocess.run(
        ["bash", "-c", f'REPO={ROOT}; {assignment}; printf %s "$DASK_VERSION"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert version == setup_py_dask_version()
    text = TEST_IMAGE_BUILD.read_text()
    assert '"dask==$DASK_VERSION"' in text
    assert '"distributed==$DASK_VERSION"' in text


def test_both_images_pin_the_same_dask():
    pinned = set(re.findall(r"^\s*DASK_VERSION=(\S+)\s*$", DEFINITION.read_text(), re.MULTILINE))
    assert pinned == {setup_py_dask_version()}
    # and the test image's pin is setup.py's by construction (the test above)


def test_the_two_images_install_the_same_tools():
    debian = set(build_script_assignment("DRONE_PACKAGES").split())
    assert debian == set(COUNTERPARTS) | set(TEST_IMAGE_ONLY), (
        "a package of the test image lacks its drone.def counterpart in COUNTERPARTS"
    )
    assert drone_def_packages() == set(COUNTERPARTS.values()) | set(DRONE_DEF_ONLY), (
        "a package of drone.def lacks its test-image counterpart in COUNTERPARTS"
    )


def test_the_htcondor_series_of_both_images_are_the_ones_documented():
    """They cannot be equal (Debian 13 packages 23.9); the difference is stated, not hidden."""
    production = re.search(r"^\s*HTCONDOR_SERIES=(\S+)\s*$", DEFINITION.read_text(), re.MULTILINE)
    assert production
    test_series = build_script_assignment("HTCONDOR_SERIES")
    readme = TEST_IMAGE_README.read_text()
    assert f"HTCondor {test_series}" in readme
    assert f"HTCondor {production.group(1)}" in readme


def test_both_images_carry_the_grid_tools():
    """gfal2 with its XRootD, HTTP and file plugins, the gfal scripts, XRootD's client and
    the VOMS clients, in both images; tests/integration/test_grid_data.py runs them."""
    debian = set(build_script_assignment("DRONE_PACKAGES").split())
    alma = drone_def_packages()
    for tool, (debian_package, alma_package) in GRID_TOOLS.items():
        assert debian_package in debian, f"the test image lacks {tool} ({debian_package})"
        assert alma_package in alma, f"drone.def lacks {tool} ({alma_package})"
        assert COUNTERPARTS[debian_package] == alma_package, tool
    readme = TEST_IMAGE_README.read_text()
    grid_row = next(line for line in readme.splitlines() if line.startswith("| grid tools"))
    for _, alma_package in GRID_TOOLS.values():
        assert alma_package in grid_row, f"the README's grid tools row lacks {alma_package}"
