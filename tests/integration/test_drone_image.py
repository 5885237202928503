"""The drone test image, run as a drone runs it: by the Apptainer stand-in, as an ordinary user.

containers/test-image/build.sh builds a Debian 13 directory image with HTCondor 23.9, the
client's Python and the pinned Dask; `apptainer` in the stand-in bin directory is the one
stand-in of the overlay chain (bubblewrap with Apptainer's defaults). Everything here runs as
the unprivileged account ``tardis``, as batch jobs do.

What a user would notice, and what is asserted:
* the image's Python is the client's minor version with setup.py's dask/distributed and this
  package's current pilot code; HTCondor runs;
* Apptainer's defaults hold: --contain gives a private /tmp, without it the host's is seen;
  binds are visible; the image is read-only; the host environment passes in but PATH is the
  image's; a signal to the container's process group, or to the runtime alone, reaches the
  payload, and the runtime exits with the payload's status;
* what the stand-in does not implement fails loudly, naming the stand-in;
* end to end: the real pilot starts the image in dask mode, a function defined in this test
  (shipped by cloudpickle as bytecode) runs on its worker, and SIGTERM drains the drone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from distributed import Client, Scheduler

from tardis_sge_dask.pilot import pilot_path
from tests.conftest import DroneImage, service_missing
from tests.helpers.standins import wait_for
from tests.unit.test_image_pins import setup_py_dask_version

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
USER = "tardis"
# Bounds that turn a hang into a failure; nothing is asserted about durations.
RUN_WITHIN = 120
START_WITHIN = 120
LEAVE_WITHIN = 90
STANDIN_MESSAGE = "tardis-sge-dask test stand-in"


def build_script_value(name: str) -> str:
    match = re.search(
        rf'^{name}=("?)([^"\n]*)\1$',
        (ROOT / "containers/test-image/build.sh").read_text(),
        re.MULTILINE,
    )
    assert match, name
    return match.group(2)


@pytest.fixture(scope="module")
def account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        service_missing(f"the unprivileged account {USER!r} does not exist (services/sshd-up.sh)")
        raise


def user_environment(account: pwd.struct_passwd, image: DroneImage, **extra: str) -> dict:
    """A login-like environment for the account, with the stand-in first on PATH."""
    return {
        "PATH": f"{image.standin_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "LANG": "C.UTF-8",
        **extra,
    }


def as_user(
    account: pwd.struct_passwd,
    image: DroneImage,
    argv: Sequence[str],
    env: dict | None = None,
    **popen,
) -> subprocess.Popen:
    """Start ``argv`` as the unprivileged account (no `su`: signals go to argv itself).

    With every signal at its default, as after a login: a test runner may have inherited
    SIGQUIT or SIGINT ignored, and an ignored signal stays ignored in the container.
    """
    return subprocess.Popen(
        ["env", "--default-signal", *argv],
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        env=env or user_environment(account, image),
        cwd="/",
        **popen,
    )


def run_in_image(
    account,
    image: DroneImage,
    *args: str,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """``apptainer exec ARGS`` as the account; ARGS hold the options, the image and a command."""
    proc = as_user(
        account,
        image,
        ["apptainer", "exec", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=RUN_WITHIN)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def shared_dir(account) -> Iterator[Path]:
    """A host directory under /tmp owned by the account (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="drone-image-test.", dir="/tmp"))
    os.chown(path, account.pw_uid, account.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- the image


def test_the_dask_python_is_the_clients_minor_with_the_pinned_dask(drone_image, account):
    probe = (
        "import json, sys, dask, distributed, numpy, tardis_sge_dask;"
        "print(json.dumps({'minor': list(sys.version_info[:2]), 'prefix': sys.prefix,"
        " 'dask': dask.__version__, 'distributed': distributed.__version__}))"
    )
    seen = json.loads(
        ok(
            run_in_image(
                account,
                drone_image,
                "--contain",
                "--ipc",
                "--no-home",
                str(drone_image.path),
                "python3",
                "-c",
                probe,
            )
        )
    )
    assert seen["minor"] == list(sys.version_info[:2])  # cloudpickle's bytecode must load
    assert seen["prefix"] == "/opt/dask"  # PATH is the image's: drone.def's venv first
    assert seen["dask"] == seen["distributed"] == setup_py_dask_version()


def test_the_image_carries_the_working_trees_pilot(drone_image, account):
    """The pilot runs `python -m tardis_sge_dask.pilot.startd_config` inside the image."""
    listing = ok(
        run_in_image(
            account,
            drone_image,
            "--contain",
            "--no-home",
            str(drone_image.path),
            "python3",
            "-c",
            "import hashlib, json, pathlib, tardis_sge_dask.pilot as p;"
            "d = pathlib.Path(p.__file__).parent;"
            "print(json.dumps({f.name: hashlib.sha256(f.read_bytes()).hexdigest()"
            " for f in sorted(d.iterdir()) if f.is_file()}))",
        )
    )
    source = ROOT / "tardis_sge_dask" / "pilot"
    expected = {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(source.iterdir())
        if f.is_file() and (f.suffix == ".py" or f.name == "drone-pilot.sh")
    }
    assert json.loads(listing) == expected, "the image's pilot is stale: run `make image`"


def test_htcondor_runs_in_the_image_at_the_series_the_docs_name(drone_image, account):
    version = ok(
        run_in_image(
            account, drone_image, "--contain", "--no-home", str(drone_image.path), "condor_version"
        )
    )
    series = build_script_value("HTCONDOR_SERIES")
    assert re.search(rf"\$CondorVersion: {re.escape(series)}\.\d+ ", version), version


def test_gfal2_works_from_the_system_python_and_the_scripts(drone_image, account):
    """The pilot's gfal2 health check, and gfal-copy although /opt/dask/bin/python comes first."""
    ok(
        run_in_image(
            account,
            drone_image,
            "--contain",
            "--no-home",
            str(drone_image.path),
            "/usr/bin/python3",
            "-c",
            "import gfal2; gfal2.creat_context()",
        )
    )
    assert "gfal2" in ok(
        run_in_image(
            account,
            drone_image,
            "--contain",
            "--no-home",
            str(drone_image.path),
            "gfal-copy",
            "--version",
        )
    )


# ---------------------------------------------------------------- Apptainer's defaults


def test_contain_gives_a_private_tmp_and_without_it_the_hosts_is_seen(
    drone_image, account, shared_dir
):
    marker = shared_dir / "host-marker"
    marker.write_text("from the host\n")
    image = str(drone_image.path)

    assert ok(run_in_image(account, drone_image, "--no-home", image, "cat", str(marker))) == (
        "from the host\n"
    )
    contained = run_in_image(
        account,
        drone_image,
        "--contain",
        "--no-home",
        image,
        "sh",
        "-c",
        f"test ! -e {marker} && ls -A /tmp && touch /tmp/inside && ls /tmp",
    )
    assert ok(contained) == "inside\n"  # empty before, and writable
    assert not Path("/tmp/inside").exists()


def test_binds_are_visible_and_the_image_is_read_only(drone_image, account, shared_dir):
    data, more = shared_dir / "data", shared_dir / "more"
    data.mkdir()
    more.mkdir()
    (data / "input.txt").write_text("42\n")
    (more / "note").write_text("deep\n")
    for path in (data, more):
        os.chown(path, account.pw_uid, account.pw_gid)
    script = (
        "cat /data/input.txt && echo out > /data/output.txt && cat /srv/deep/more/note"
        " && ls /srv/deep && { touch /srv/deep/more/x 2>/dev/null && echo writable || echo ro; }"
        " && { touch /opt/x 2>/dev/null && echo writable || echo ro; }"
    )
    result = run_in_image(
        account,
        drone_image,
        "--contain",
        "--no-home",
        "--bind",
        f"{data}:/data,{more}:/srv/deep/more:ro",
        "--pwd",
        "/data",
        str(drone_image.path),
        "sh",
        "-c",
        script,
    )
    # /srv/deep does not exist in the image: it is made the way Apptainer's underlay does.
    assert ok(result).split() == ["42", "deep", "more", "ro", "ro"]
    assert (data / "output.txt").read_text() == "out\n"


def test_host_environment_passes_in_but_path_is_the_images(drone_image, account):
    env = user_environment(
        account, drone_image, DRONE_SETTING="from-host", APPTAINERENV_FROM_PREFIX="yes"
    )
    show = 'printf "%s|%s|%s|%s\\n" "$DRONE_SETTING" "$FROM_PREFIX" "$EXTRA" "$PATH"'
    image = str(drone_image.path)
    plain = (
        ok(
            run_in_image(
                account,
                drone_image,
                "--no-home",
                "--env",
                "EXTRA=set",
                image,
                "sh",
                "-c",
                show,
                env=env,
            )
        )
        .strip()
        .split("|")
    )
    assert plain[:3] == ["from-host", "yes", "set"]
    assert plain[3].startswith("/opt/dask/bin:")
    assert str(drone_image.standin_bin) not in plain[3]
    clean = (
        ok(
            run_in_image(
                account, drone_image, "--cleanenv", "--no-home", image, "sh", "-c", show, env=env
            )
        )
        .strip()
        .split("|")
    )
    assert clean[:3] == ["", "yes", ""]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGQUIT"])
@pytest.mark.parametrize("target", ["process group", "runtime only"])
def test_a_signal_reaches_the_payload(drone_image, account, shared_dir, signal_name, target):
    """The pilot signals the container's process group (it starts it under `setsid`)."""
    sig = getattr(signal, signal_name)
    short = signal_name.removeprefix("SIG")
    payload = (
        f"trap 'echo {short} > /data/caught; exit 7' {short}; echo up > /data/ready;"
        " while :; do sleep 0.1; done"
    )
    proc = as_user(
        account,
        drone_image,
        [
            "apptainer",
            "exec",
            "--contain",
            "--ipc",
            "--no-home",
            "--bind",
            f"{shared_dir}:/data",
            str(drone_image.path),
            "sh",
            "-c",
            payload,
        ],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        asyncio.run(
            wait_for(lambda: (shared_dir / "ready").exists(), RUN_WITHIN, "the payload to start")
        )
        if target == "process group":
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=RUN_WITHIN)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert (shared_dir / "caught").read_text() == f"{short}\n"
    # The runtime outlived the signal and reports how the payload ended.
    assert proc.returncode == 7, stderr


@pytest.mark.parametrize(
    "args",
    [
        ["exec", "--nv", "{image}", "true"],
        ["exec", "{sif}", "true"],
        ["run", "{image}"],
        ["exec", "--fakeroot", "{image}", "true"],
    ],
    ids=["--nv", "sif-file", "run", "--fakeroot"],
)
def test_what_the_standin_does_not_implement_fails_naming_it(
    drone_image, account, shared_dir, args
):
    sif = shared_dir / "drone.sif"
    sif.write_bytes(b"not an image")
    argv = [a.format(image=drone_image.path, sif=sif) for a in args]
    proc = as_user(
        account,
        drone_image,
        ["apptainer", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate(timeout=RUN_WITHIN)
    assert proc.returncode != 0
    assert stdout == ""
    assert len(stderr.splitlines()) == 1 and STANDIN_MESSAGE in stderr, stderr


def test_version_names_the_standin(drone_image, account):
    proc = as_user(
        account, drone_image, ["apptainer", "--version"], stdout=subprocess.PIPE, text=True
    )
    stdout, _ = proc.communicate(timeout=RUN_WITHIN)
    assert proc.returncode == 0
    assert stdout.startswith("apptainer version ") and STANDIN_MESSAGE in stdout


# ---------------------------------------------------------------- end to end


def drone_processes(drone_uuid: str) -> str:
    return subprocess.run(
        ["pgrep", "-a", "-u", USER, "-f", drone_uuid], capture_output=True, text=True
    ).stdout


async def test_the_pilot_runs_a_function_defined_here_on_a_worker_in_the_image(
    drone_image, account, shared_dir
):
    """The cloudpickle point: a closure from the client runs as bytecode in the image."""
    drone_uuid = f"imagetest-{uuid.uuid4().hex[:10]}"
    # Spooled like a batch job script: the account need not read the working tree.
    pilot = shared_dir / "drone-pilot.sh"
    shutil.copy(pilot_path(), pilot)
    os.chmod(pilot, 0o755)
    # Files, not pipes: a payload that outlived a failed test must not block reading them.
    stdout_path, stderr_path = shared_dir / "pilot.out", shared_dir / "pilot.err"
    offset = 17

    def shifted_square(x: int) -> tuple:  # not importable by the worker: shipped as bytecode
        import os as os_
        import sys as sys_

        return (
            x * x + offset,
            list(sys_.version_info[:2]),
            sys_.prefix,
            os_.path.exists("/.singularity.d/env/90-environment.sh"),
        )

    async with (
        Scheduler(host="127.0.0.1", port=0, dashboard=False) as scheduler,
        Client(scheduler.address, asynchronous=True) as client,
    ):
        env = user_environment(
            account,
            drone_image,
            TardisDroneCores="1",
            TardisDroneMemory="1024",
            TardisDroneDisk="1000",
            TardisDroneUuid=drone_uuid,
            PILOT_MODE="dask",
            PILOT_CONTAINER=str(drone_image.path),
            PILOT_DASK_SCHEDULER=scheduler.address,
        )
        with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
            proc = as_user(
                account,
                drone_image,
                ["bash", str(pilot)],
                env=env,
                start_new_session=True,
                stdout=stdout,
                stderr=stderr,
            )

        def joined() -> bool:
            return any(ws.name == drone_uuid for ws in scheduler.workers.values())

        try:
            await wait_for(
                lambda: joined() or proc.poll() is not None,
                START_WITHIN,
                "the drone's worker to register",
            )
            assert joined(), stderr_path.read_text()

            result = await asyncio.wait_for(
                client.submit(shifted_square, 5, workers=[drone_uuid], pure=False), RUN_WITHIN
            )
            assert result == (42, list(sys.version_info[:2]), "/opt/dask", True)
            text = client.submit(lambda word: word[::-1], "drone", workers=[drone_uuid])
            assert await asyncio.wait_for(text, RUN_WITHIN) == "enord"
            # The drain retires the worker, and a worker holding the only copy of a result
            # is not retired: let go of the results first.
            del text
            await wait_for(lambda: not scheduler.tasks, RUN_WITHIN, "the results to be released")

            proc.send_signal(signal.SIGTERM)
            await wait_for(lambda: proc.poll() is not None, LEAVE_WITHIN, "the pilot to exit")
            await wait_for(
                lambda: not drone_processes(drone_uuid),
                LEAVE_WITHIN,
                "no process of the drone to be left",
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # The payload runs in a session of its own: end what a failure left behind.
            subprocess.run(["pkill", "-KILL", "-u", USER, "-f", drone_uuid])
        output = stdout_path.read_text()
        assert proc.returncode == 0, output + stderr_path.read_text()
        assert not joined()
    assert "received SIGTERM: draining the dask payload" in output
    assert "payload left after the drain" in output
    scratch = re.search(r"scratch directory (\S+)", output)
    assert scratch and not Path(scratch.group(1)).exists()
