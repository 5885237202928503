"""Grid data from inside a drone: gfal2 over XRootD with a real X.509 proxy.

Real: Debian's XRootD server of services/xrootd-up.sh, which admits only GSI clients whose
chain ends at the test CA and whose DN its grid-mapfile maps (to ``gridpilot``); RFC 3820
proxies made by ``voms-proxy-fake`` from the test user certificate; gfal2 with its XRootD
plugin, the gfal2-util scripts and the VOMS clients in the drone test image; the drone pilot
and its proxy check; Grid Engine; Dask. The proxy reaches the drone as on a site: its path
in the machine type's settings (``PILOT_X509_PROXY``), the file on the node, never the job's
environment; the test CA is bound where drone.def points ``X509_CERT_DIR``.

The stand-ins, as everywhere in these tests: Apptainer (containers/test-image/apptainer,
bubblewrap over the directory image) and CVMFS (not used: the CA directory a site would
take from /cvmfs/grid.cern.ch is bound from the test CA instead).

What a user would notice, and what is asserted:
* the image's gfal2 has its xrootd, http and file plugins; gfal-ls/gfal-cat and the VOMS
  clients run;
* the storage element lets in the pilot's proxy only: no proxy, a DN it does not map, the
  same DN from an untrusted CA, and an expired proxy are all refused;
* the pilot refuses an expired proxy and one too short for the walltime (exit 14, one line);
* direct mode: a Dask task on a drone (a Grid Engine job of the pilot account, in the image)
  reads a file from the server with gfal2 and writes its result back; the user reads the
  right content from the server, which logged the grid account for both.
* HTCondor overlay mode: the same through a worker job of the physicist on a drone's startd.
"""

from __future__ import annotations

import asyncio
import hashlib
import pwd
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, Scheduler
from tardis.interfaces.siteadapter import ResourceStatus
from tardis.utilities.executors.sshexecutor import SSHExecutor

from tardis_sge_dask.pilot import pilot_path
from tardis_sge_dask.sites.sge import SGEAdapter
from tests.conftest import DroneImage, service_missing
from tests.helpers import grid
from tests.helpers import sge as qstat
from tests.helpers.daemon import unique_site
from tests.helpers.overlay import PILOT_USER, owned_directory
from tests.helpers.standins import status_until, wait_for
from tests.helpers.tardis_config import drone, make_adapter, site_section
from tests.integration.test_drone_image import as_user, ok, run_in_image, user_environment
from tests.integration.test_end_to_end_sge import SGE
from tests.integration.test_overlay import (  # noqa: F401  (fixtures used by name)
    Run,
    overlay_image,
    overlay_pool,
    run_overlay,
)

pytestmark = pytest.mark.integration

RUN_WITHIN = 120
START_WITHIN = 240
LEAVE_WITHIN = 90


@pytest.fixture(scope="session")
def xrootd(tmp_path_factory) -> None:
    """The storage element of services/xrootd-up.sh answers an authenticated stat."""
    if shutil.which("voms-proxy-fake") is None or shutil.which("xrdcp") is None:
        service_missing("voms-clients or xrootd-client is not installed (services/xrootd-up.sh)")
    if not grid.server_answers(tmp_path_factory.mktemp("xrootd-probe")):
        service_missing(
            f"the XRootD server at {grid.ENDPOINT} does not answer an authenticated stat of /data"
        )


@pytest.fixture(scope="module")
def account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PILOT_USER)
    except KeyError:
        service_missing(f"the unprivileged account {PILOT_USER!r} does not exist (sshd-up.sh)")
        raise


@pytest.fixture
def pilot_dir(account) -> Iterator[Path]:
    """The pilot account's own directory: where a site keeps the proxy on the node."""
    path = owned_directory("tsd-grid-", PILOT_USER)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def storage_dir(request) -> Iterator[str]:
    """A directory of this test under the server's /data, removed afterwards."""
    name = f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}".replace("[", "-").replace("]", "")
    yield name
    shutil.rmtree(grid.STORAGE / "data" / name, ignore_errors=True)


def grid_binds(proxy: Path) -> list[str]:
    """The options a drone's runtime gets: the proxy at its path, the CAs where the image
    looks (on a site: /cvmfs/grid.cern.ch's certificates or the image's IGTF bundle)."""
    return ["--bind", f"{proxy}:{proxy}:ro", "--bind", f"{grid.CERT_DIR}:{grid.IMAGE_CERT_DIR}:ro"]


def in_image(account, image: DroneImage, proxy: Path, *command: str):
    env = user_environment(account, image, X509_USER_PROXY=str(proxy))
    return run_in_image(
        account,
        image,
        "--contain",
        "--no-home",
        *grid_binds(proxy),
        str(image.path),
        *command,
        env=env,
    )


# ---------------------------------------------------------------- the image's grid tools


def test_the_image_has_gfal2_with_its_plugins_and_the_voms_clients(drone_image, account):
    script = (
        '/usr/bin/python3 -c \'import gfal2; print(*sorted(p.split("-")[0] for p in'
        " gfal2.creat_context().get_plugin_names()))' && gfal-ls --version"
        " && voms-proxy-info --version && xrdcp --version"
    )
    out = ok(
        run_in_image(
            account,
            drone_image,
            "--contain",
            "--no-home",
            str(drone_image.path),
            "sh",
            "-c",
            script,
        )
    )
    assert out.splitlines()[0] == "file http xrootd"
    assert "gfal2-util version" in out and "voms-proxy-info" in out


# ---------------------------------------------------------------- the storage element


def test_the_storage_element_admits_the_pilots_proxy_and_nothing_else(
    xrootd, drone_image, account, pilot_dir, storage_dir
):
    name = storage_dir
    proxy = grid.make_proxy(pilot_dir / "x509up", PILOT_USER)
    grid.write(f"{name}/in.txt", b"admitted\n", proxy)
    log_start = grid.server_log_size()

    listing = in_image(account, drone_image, proxy, "gfal-ls", grid.url(name))
    assert ok(listing).split() == ["in.txt"]
    assert ok(in_image(account, drone_image, proxy, "gfal-cat", grid.url(f"{name}/in.txt"))) == (
        "admitted\n"
    )
    # the server authorized the grid account its grid-mapfile gives the DN, over GSI
    audit = grid.server_log_since(log_start)
    assert re.search(rf"grant gsi {grid.ACCOUNT}@\S+ read /data/{name}/in.txt", audit), audit

    refused = {
        "no proxy": pilot_dir / "absent",
        "a DN the grid-mapfile does not map": grid.make_proxy(
            pilot_dir / "stranger", PILOT_USER, user="stranger"
        ),
        "the pilot's DN from an untrusted CA": grid.untrusted_proxy(pilot_dir, PILOT_USER),
        "an expired proxy": grid.make_proxy(
            pilot_dir / "expired", PILOT_USER, hours=1, past="2:00"
        ),
    }
    for why, bad in refused.items():
        env = user_environment(account, drone_image, X509_USER_PROXY=str(bad))
        binds = grid_binds(bad) if bad.exists() else grid_binds(proxy)[2:]
        result = run_in_image(
            account,
            drone_image,
            "--contain",
            "--no-home",
            *binds,
            str(drone_image.path),
            "gfal-cat",
            grid.url(f"{name}/in.txt"),
            env=env,
        )
        assert result.returncode != 0 and "admitted" not in result.stdout, why


# ---------------------------------------------------------------- the pilot's proxy check


@pytest.mark.parametrize(
    ("hours", "past", "message"),
    [(1, "2:00", "has expired"), (1, "0:50", "expires within the drone's")],
    ids=["expired", "shorter-than-the-walltime"],
)
def test_the_pilot_refuses_a_proxy_that_will_not_last(
    drone_image, account, pilot_dir, hours, past, message, xrootd
):
    proxy = grid.make_proxy(pilot_dir / "x509up", PILOT_USER, hours=hours, past=past)
    pilot = pilot_dir / "drone-pilot.sh"
    shutil.copy(pilot_path(), pilot)
    env = user_environment(
        account,
        drone_image,
        TardisDroneCores="1",
        TardisDroneMemory="1024",
        TardisDroneDisk="1000",
        TardisDroneUuid=f"gridproxy-{uuid.uuid4().hex[:8]}",
        PILOT_MODE="dask",
        PILOT_DASK_SCHEDULER="tcp://127.0.0.1:9",
        PILOT_CONTAINER=str(drone_image.path),
        PILOT_X509_PROXY=str(proxy),
        PILOT_WALLTIME="3600",
        PILOT_LIFETIME_MARGIN="120",
        PILOT_SCRATCH_BASE=str(pilot_dir),
    )
    proc = as_user(
        account,
        drone_image,
        ["bash", str(pilot)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=RUN_WITHIN)
    assert proc.returncode == 14, stdout + stderr
    assert stderr.splitlines() == [
        line for line in stderr.splitlines() if line.startswith("drone-pilot: error: X.509 proxy")
    ]
    assert len(stderr.splitlines()) == 1 and message in stderr, stderr
    assert not list(pilot_dir.glob("tardis-drone.*")), "scratch left behind"


# ---------------------------------------------------------------- direct (dask) mode


def user_task():
    """The user's task. Made here, not at module level, so that cloudpickle ships it by
    value (a worker cannot import this test module), as it ships a notebook's functions."""

    def analyse(source: str, destination: str) -> dict:
        # the user's code on the worker: the package's gfal2 helper and the pilot's proxy
        import hashlib as hashlib_

        from tardis_sge_dask import grid as grid_

        data = grid_.read_bytes(source)
        summary = (
            f"{len(data.split())} words, sha256 {hashlib_.sha256(data).hexdigest()}\n"
        ).encode()
        grid_.write_bytes(destination, summary)
        return {"proxy": grid_.proxy(), "summary": summary.decode()}

    return analyse


def expected_summary(data: bytes) -> str:
    return f"{len(data.split())} words, sha256 {hashlib.sha256(data).hexdigest()}\n"


async def test_a_dask_task_on_a_grid_engine_drone_reads_and_writes_grid_storage(
    sge, sshd, xrootd, drone_image, account, pilot_dir, storage_dir, tmp_path
):
    site = unique_site("gridsge")
    drone_uuid = f"{site}-{uuid.uuid4().hex[:10]}"
    name = storage_dir
    proxy = grid.make_proxy(pilot_dir / f"x509up_u{account.pw_uid}", PILOT_USER)
    data = b"the quick brown fox jumps over the lazy drone\n" * 100
    grid.write(f"{name}/events.txt", data, proxy)
    logs = owned_directory(f"tsd-{site}-logs-", PILOT_USER, 0o755)
    known_hosts = tmp_path / "known_hosts"
    host_key = Path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:2222 {host_key[0]} {host_key[1]}\n")
    log_start = grid.server_log_size()
    adapter = attributes = None
    try:
        async with (
            Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler,
            Client(scheduler.address, asynchronous=True) as client,
        ):
            section = site_section(
                str(pilot_path()),
                Queue="all.q",
                MemoryResource=None,
                Walltime=3600,
                LogDirectory=str(logs),
                JobEnvironment={
                    "PILOT_MODE": "dask",
                    "PILOT_DASK_SCHEDULER": scheduler.address,
                    "PILOT_CONTAINER": str(drone_image.path),
                    # the Apptainer stand-in first: the pilot's `auto` search finds it
                    "PATH": f"{drone_image.standin_bin}:/usr/local/bin:/usr/bin:/bin",
                    "PILOT_LIFETIME_MARGIN": "120",
                    # the proxy: a path on the node, as a site configures it
                    "PILOT_X509_PROXY": str(proxy),
                    "PILOT_BINDS": f"{grid.CERT_DIR}:{grid.IMAGE_CERT_DIR}:ro",
                },
            )
            section["MachineMetaData"]["small"] = {"Cores": 1, "Memory": 1, "Disk": 1}
            section["executor"] = SSHExecutor(**sshd, known_hosts=str(known_hosts))
            section["accounting_grace"] = 10
            adapter = make_adapter(SGEAdapter, "SGE", section, site=site)
            attributes = drone(drone_uuid)
            attributes.update(await adapter.deploy_resource(attributes))
            job_id = attributes.remote_resource_uuid
            # nothing of the proxy in what every user sees with qstat -j
            assert not any(
                "X509" in key or key.startswith("PILOT_") for key in qstat.environment(job_id)
            )

            def joined() -> bool:
                return any(ws.name == drone_uuid for ws in scheduler.workers.values())

            await wait_for(
                lambda: joined() or not qstat.jobs(site),
                START_WITHIN,
                "the drone's worker to register",
            )
            assert joined(), _job_files(logs)
            analyse = user_task()
            result = await asyncio.wait_for(
                client.submit(
                    analyse,
                    grid.url(f"{name}/events.txt"),
                    grid.url(f"{name}/summary.txt"),
                    workers=[drone_uuid],
                    pure=False,
                ),
                RUN_WITHIN,
            )
            assert result == {"proxy": str(proxy), "summary": expected_summary(data)}
            # the user reads the result from the storage element
            assert grid.read(f"{name}/summary.txt", proxy).decode() == expected_summary(data)
            await adapter.stop_resource(attributes)
            await status_until(adapter, attributes, ResourceStatus.Deleted, LEAVE_WITHIN)
            attributes = None
    finally:
        if attributes is not None:
            await adapter.terminate_resource(attributes)
        qstat.delete(site)
    audit = grid.server_log_since(log_start)
    for action in (f"read /data/{name}/events.txt", f"\\w+ /data/{name}/summary.txt"):
        assert re.search(rf"grant gsi {grid.ACCOUNT}@\S+ {action}", audit), audit
    stdout = _job_files(logs)
    assert re.search(rf"X\.509 proxy {re.escape(str(proxy))} valid for \d+ s", stdout), stdout
    shutil.rmtree(logs, ignore_errors=True)


def _job_files(logs: Path) -> str:
    return "\n".join(
        f"--- {path.name}\n{path.read_text()}" for path in sorted(logs.iterdir()) if path.is_file()
    )


# ---------------------------------------------------------------- HTCondor overlay mode


@pytest.mark.usefixtures("sge", "xrootd", "overlay_pool", "overlay_image")
def test_a_physicists_worker_job_on_an_overlay_drone_reads_and_writes_grid_storage(
    sshd, account, pilot_dir, storage_dir, tmp_path
):
    """The physicist's OverlayCluster worker runs as an HTCondor job on a drone's startd;
    its task finds the drone's proxy through the job environment the startd gives it."""
    name = storage_dir
    proxy = grid.make_proxy(pilot_dir / f"x509up_u{account.pw_uid}", PILOT_USER)
    data = b"an overlay worker reads grid storage\n" * 50
    grid.write(f"{name}/events.txt", data, proxy)
    log_start = grid.server_log_size()

    def grid_round(run: Run) -> None:
        run.session.send(f"grid {grid.url(f'{name}/events.txt')} {grid.url(f'{name}/summary.txt')}")
        answer = run.session.wait_for("grid", 300)
        assert answer["proxy"] == str(proxy) and answer["summary"] == expected_summary(data), answer
        assert answer["cert_dir"] in (None, grid.IMAGE_CERT_DIR), answer
        # what the physicist reads back from the storage element
        assert grid.read(f"{name}/summary.txt", proxy).decode() == expected_summary(data)
        said = "".join(path.read_text() for path in run.logs.glob("*.o*"))
        assert re.search(rf"X\.509 proxy {re.escape(str(proxy))} valid for \d+ s", said), said

    run_overlay(
        tmp_path,
        SGE,
        unique_site("ovgrid"),
        sshd,
        during=grid_round,
        environment={
            "PILOT_X509_PROXY": str(proxy),
            "PILOT_BINDS": f"{grid.CERT_DIR}:{grid.IMAGE_CERT_DIR}:ro",
            "PILOT_CHECK_GFAL2": "true",
        },
    )
    audit = grid.server_log_since(log_start)
    for action in (f"read /data/{name}/events.txt", f"\\w+ /data/{name}/summary.txt"):
        assert re.search(rf"grant gsi {grid.ACCOUNT}@\S+ {action}", audit), audit
