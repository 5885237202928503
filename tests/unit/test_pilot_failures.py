"""Every way the drone pilot refuses to start, run as a real bash process.

The pilot runs with a PATH holding only bash and coreutils (all a node guarantees), an
environment built from scratch, and its scratch base in a temporary directory. Each
failure must end with its documented exit code, exactly one ``drone-pilot: error:`` line
on stderr, and no scratch left behind. The payload is stood in for by ``true``/``false``
as PILOT_PYTHON where a test needs the pilot to get that far.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tardis_sge_dask.pilot import EXIT_CODES, pilot_path
from tardis_sge_dask.sites.jobscript import render_job_script
from tests.conftest import service_missing

COREUTILS = """
    basename cat chmod chown cp cut date dd df dirname echo env expr false head id ln ls
    mkdir mktemp mv nproc paste printf pwd readlink realpath rm rmdir sleep sort stat tail
    tee test timeout touch tr true uname wc whoami
""".split()


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory) -> str:
    """A PATH with bash and coreutils only."""
    bin_dir = tmp_path_factory.mktemp("bare-bin")
    for tool in ["bash", *COREUTILS]:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


@pytest.fixture
def scratch_base(tmp_path) -> Path:
    base = tmp_path / "scratch"
    base.mkdir()
    return base


@pytest.fixture
def drone_env(bare_path, scratch_base) -> dict[str, str]:
    return {
        "PATH": bare_path,
        "HOME": str(scratch_base),
        "TardisDroneCores": "1",
        "TardisDroneMemory": "1000",
        "TardisDroneDisk": "1000",
        "TardisDroneUuid": "unit-drone-1",
        "PILOT_MODE": "dask",
        "PILOT_CONTAINER": "none",
        "PILOT_DASK_SCHEDULER": "tcp://127.0.0.1:9",
        "PILOT_PYTHON": "true",
        "PILOT_SCRATCH_BASE": str(scratch_base),
    }


def run_pilot(env: dict[str, str], script: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script or pilot_path())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["HOME"],
    )


def assert_failure(result, code: int, reason: str, scratch_base: Path) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("drone-pilot: error: ")
    assert reason in lines[0]
    assert list(scratch_base.iterdir()) == []


def test_exit_codes_are_distinct_and_documented():
    docs = (Path(__file__).parents[2] / "docs" / "pilot.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in docs
    body = pilot_path().read_text()
    for code in EXIT_CODES:
        assert f"={code}\n" in body


def test_every_setting_the_pilot_reads_is_documented():
    docs = (Path(__file__).parents[2] / "docs" / "pilot.md").read_text()
    used = set(re.findall(r"\bPILOT_[A-Z0-9_]+", pilot_path().read_text()))
    assert used, "the pilot reads no PILOT_* settings?"
    assert sorted(name for name in used if f"`{name}`" not in docs) == []


def test_a_good_environment_runs_the_payload_and_cleans_scratch(drone_env, scratch_base):
    result = run_pilot(drone_env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "payload finished" in result.stdout
    assert list(scratch_base.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"TardisDroneUuid": None}, "TardisDroneUuid is not set"),
        ({"TardisDroneCores": None}, "TardisDroneCores is not set"),
        ({"TardisDroneMemory": "lots"}, "TardisDroneMemory='lots' is not a positive integer"),
        ({"TardisDroneDisk": "0"}, "TardisDroneDisk='0' is not a positive integer"),
        ({"TardisDroneUuid": "a b"}, "TardisDroneUuid='a b'"),
        ({"PILOT_MODE": "slurm"}, "PILOT_MODE='slurm' is neither dask nor htcondor"),
        ({"PILOT_DASK_SCHEDULER": None}, "PILOT_MODE=dask needs PILOT_DASK_SCHEDULER"),
        ({"PILOT_MODE": "htcondor"}, "PILOT_MODE=htcondor needs PILOT_COLLECTOR"),
        ({"PILOT_WALLTIME": "200"}, "leaves nothing after PILOT_LIFETIME_MARGIN=300"),
    ],
)
def test_bad_environment(drone_env, scratch_base, change, reason):
    for name, value in change.items():
        if value is None:
            drone_env.pop(name)
        else:
            drone_env[name] = value
    assert_failure(run_pilot(drone_env), 10, reason, scratch_base)


def test_image_configured_but_no_container_runtime(drone_env, scratch_base, tmp_path):
    image = tmp_path / "drone.sif"
    image.write_bytes(b"not really an image")
    drone_env["PILOT_CONTAINER"] = str(image)
    assert_failure(run_pilot(drone_env), 11, "no container runtime", scratch_base)


def test_required_cvmfs_missing(drone_env, scratch_base, tmp_path):
    drone_env["PILOT_CVMFS_REPOSITORIES"] = "cms.cern.ch,grid.cern.ch"
    drone_env["PILOT_CVMFS_ROOT"] = str(tmp_path / "no-cvmfs-here")
    assert_failure(
        run_pilot(drone_env), 12, "'cms.cern.ch,grid.cern.ch' are required", scratch_base
    )


def test_optional_cvmfs_missing_only_warns(drone_env, scratch_base, tmp_path):
    drone_env["PILOT_CVMFS_REPOSITORIES"] = "cms.cern.ch"
    drone_env["PILOT_CVMFS_ROOT"] = str(tmp_path / "no-cvmfs-here")
    drone_env["PILOT_CVMFS_REQUIRED"] = "false"
    result = run_pilot(drone_env)
    assert result.returncode == 0, result.stderr
    assert "warning: CVMFS repositories 'cms.cern.ch' are not available" in result.stdout


def test_host_cvmfs_is_used_when_mounted(drone_env, scratch_base, tmp_path):
    repo = tmp_path / "cvmfs" / "cms.cern.ch"
    repo.mkdir(parents=True)
    (repo / "README").write_text("a repository\n")
    drone_env["PILOT_CVMFS_REPOSITORIES"] = "cms.cern.ch"
    drone_env["PILOT_CVMFS_ROOT"] = str(tmp_path / "cvmfs")
    result = run_pilot(drone_env)
    assert result.returncode == 0, result.stderr
    assert "CVMFS provided by: host" in result.stdout


@pytest.mark.parametrize("kind", ["missing", "empty", "directory"])
def test_unreadable_token(drone_env, scratch_base, tmp_path, kind):
    token = tmp_path / "drone.token"
    if kind == "empty":
        token.write_text("")
    elif kind == "directory":
        token.mkdir()
    drone_env["PILOT_TOKEN_FILE"] = str(token)
    assert_failure(run_pilot(drone_env), 13, f"token file '{token}'", scratch_base)


def test_readable_token_never_appears_in_the_output(drone_env, scratch_base, tmp_path):
    token = tmp_path / "drone.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.secret-part.signature\n")
    drone_env["PILOT_TOKEN_FILE"] = str(token)
    result = run_pilot(drone_env)
    assert result.returncode == 0, result.stderr
    assert "secret-part" not in result.stdout + result.stderr


def test_scratch_smaller_than_the_promised_disk(drone_env, scratch_base):
    drone_env["TardisDroneDisk"] = str(10**15)
    assert_failure(run_pilot(drone_env), 14, "KiB free, the drone promises", scratch_base)


def test_missing_x509_proxy(drone_env, scratch_base, tmp_path):
    drone_env["PILOT_X509_PROXY"] = str(tmp_path / "x509up_u1000")
    assert_failure(run_pilot(drone_env), 14, "X.509 proxy", scratch_base)


def test_x509_proxy_expiring_before_the_walltime(drone_env, scratch_base, tmp_path):
    if shutil.which("openssl") is None:
        service_missing("openssl is not installed (it makes the test certificate)")
    proxy = tmp_path / "x509up"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=drone-test",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(proxy),
        ],
        check=True,
        capture_output=True,
    )
    drone_env["PATH"] = f"{drone_env['PATH']}:{Path(shutil.which('openssl')).parent}"
    drone_env["PILOT_X509_PROXY"] = str(proxy)
    drone_env["PILOT_WALLTIME"] = str(3 * 86400)
    assert_failure(run_pilot(drone_env), 14, "expires within the drone's", scratch_base)
    drone_env["PILOT_WALLTIME"] = "3600"
    assert run_pilot(drone_env).returncode == 0


def test_x509_proxy_lifetime_is_the_earliest_end_in_its_chain(drone_env, scratch_base, tmp_path):
    """A proxy outliving the certificate that signed it is only as good as that one."""
    if shutil.which("openssl") is None:
        service_missing("openssl is not installed (it makes the test certificates)")

    def openssl(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=user",
        "-keyout",
        str(tmp_path / "user.key"),
        "-out",
        str(tmp_path / "user.pem"),
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=user/CN=proxy",
        "-keyout",
        str(tmp_path / "proxy.key"),
        "-out",
        str(tmp_path / "proxy.csr"),
    )
    openssl(
        "x509",
        "-req",
        "-days",
        "30",
        "-in",
        str(tmp_path / "proxy.csr"),
        "-CA",
        str(tmp_path / "user.pem"),
        "-CAkey",
        str(tmp_path / "user.key"),
        "-set_serial",
        "7",
        "-out",
        str(tmp_path / "proxy.pem"),
    )
    proxy = tmp_path / "x509up"
    # the order of a proxy file: proxy certificate, its key, then the chain
    proxy.write_text(
        "".join((tmp_path / name).read_text() for name in ("proxy.pem", "proxy.key", "user.pem"))
    )
    drone_env["PATH"] = f"{drone_env['PATH']}:{Path(shutil.which('openssl')).parent}"
    drone_env["PILOT_X509_PROXY"] = str(proxy)
    drone_env["PILOT_WALLTIME"] = str(3 * 86400)
    assert_failure(run_pilot(drone_env), 14, "expires within the drone's", scratch_base)
    drone_env["PILOT_WALLTIME"] = "3600"
    passed = run_pilot(drone_env)
    assert passed.returncode == 0, passed.stderr
    logged = rf"X\.509 proxy {re.escape(str(proxy))} valid for 8[0-9]{{4}} s"
    assert re.search(logged, passed.stdout)


def test_x509_proxy_without_a_certificate(drone_env, scratch_base, tmp_path):
    proxy = tmp_path / "x509up"
    proxy.write_text("not a proxy\n")
    drone_env["PILOT_X509_PROXY"] = str(proxy)
    assert_failure(run_pilot(drone_env), 14, "holds no certificate", scratch_base)


def test_gfal2_check_fails_where_gfal2_is_missing(drone_env, scratch_base):
    drone_env["PILOT_CHECK_GFAL2"] = "true"
    drone_env["PILOT_GFAL2_PYTHON"] = sys.executable  # a python without gfal2
    assert_failure(run_pilot(drone_env), 14, "gfal2 is not usable", scratch_base)


def test_payload_failure(drone_env, scratch_base):
    drone_env["PILOT_PYTHON"] = "false"
    assert_failure(run_pilot(drone_env), 15, "the dask payload exited with status 1", scratch_base)


def test_the_rendered_job_script_behaves_like_the_pilot(drone_env, scratch_base, tmp_path):
    settings = {k: drone_env.pop(k) for k in list(drone_env) if k.startswith("PILOT_")}
    settings.pop("PILOT_DASK_SCHEDULER")
    script = tmp_path / "job.sh"
    script.write_text(render_job_script(pilot_path(), settings))
    assert_failure(
        run_pilot(drone_env, script), 10, "PILOT_MODE=dask needs PILOT_DASK_SCHEDULER", scratch_base
    )


def test_path_entry_point_prints_the_installed_pilot():
    out = subprocess.run(
        [
            os.environ.get("PYTHON", shutil.which("python") or "python3"),
            "-m",
            "tardis_sge_dask.pilot",
            "--path",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out) == pilot_path()
    assert Path(out).read_text().startswith("#!/bin/bash")


def test_a_world_readable_token_is_warned_about(drone_env, scratch_base, tmp_path):
    token = tmp_path / "drone.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.secret-part.signature\n")
    drone_env["PILOT_TOKEN_FILE"] = str(token)
    token.chmod(0o644)
    loose = run_pilot(drone_env)
    assert loose.returncode == 0, loose.stderr
    assert f"warning: token file {token} is readable by every user" in loose.stdout
    token.chmod(0o600)
    tight = run_pilot(drone_env)
    assert tight.returncode == 0 and "readable by every user" not in tight.stdout


@pytest.mark.parametrize("variable", ["TMPDIR", "TMP"])
def test_the_token_copy_lives_where_the_batch_system_cleans_even_after_sigkill(
    drone_env, scratch_base, tmp_path, variable
):
    # Grid Engine gives every job a temporary directory of its own and removes it when the
    # job ends, however it ends (measured: gone after a SIGKILL); SGE 8.1.9 names it in TMP
    # only. PILOT_SCRATCH_BASE (big, shared scratch) is nobody's to clean
    job_tmpdir = tmp_path / "sge-tmpdir" / "4711.1.all.q"
    job_tmpdir.mkdir(parents=True)
    token = tmp_path / "drone.token"
    token.write_text("eyJhbGciOiJIUzI1NiJ9.secret-part.signature\n")
    token.chmod(0o600)
    payload = tmp_path / "payload"
    payload.write_text("#!/bin/bash\nexec sleep 60\n")
    payload.chmod(0o755)
    drone_env.update(PILOT_TOKEN_FILE=str(token), PILOT_PYTHON=str(payload))
    drone_env[variable] = str(job_tmpdir)
    pilot = subprocess.Popen(
        ["bash", str(pilot_path())],
        env=drone_env,
        cwd=drone_env["HOME"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not list(job_tmpdir.rglob("drone.token")):
            assert time.monotonic() < deadline, "the pilot never copied its token"
            assert pilot.poll() is None, "the pilot ended early"
            time.sleep(0.1)
    finally:
        # the batch system's kill: the whole job, no trap runs
        for group in {os.getpgid(pilot.pid), *payload_groups(scratch_base)}:
            os.killpg(group, signal.SIGKILL)
        pilot.wait(10)
    copies = [
        path
        for path in scratch_base.rglob("*")
        if path.is_file() and "secret" in path.read_text(errors="replace")
    ]
    assert copies == [], "a token copy outlives the job in PILOT_SCRATCH_BASE"
    (copy,) = job_tmpdir.rglob("drone.token")
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600


def payload_groups(scratch_base: Path) -> set[int]:
    """Process groups of processes started in the drone's scratch (the shielded payload)."""
    groups = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(scratch_base) in os.readlink(entry / "cwd"):
                groups.add(os.getpgid(int(entry.name)))
        except OSError:
            continue
    return groups
