"""``tardis-sge-dask render``: what it prints is what the adapter really submits."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml
from tardis.utilities.attributedict import AttributeDict

from tardis_sge_dask.cli import main
from tardis_sge_dask.pilot import pilot_path
from tardis_sge_dask.render import MASK, mask, render
from tardis_sge_dask.sites.sge import SGEAdapter

ROOT = Path(__file__).resolve().parent.parent.parent
PILOT = ROOT / "tardis_sge_dask" / "pilot" / "drone-pilot.sh"

STAND_IN_QSUB = """#!/bin/bash
# records its argv (one per line) and the job script on stdin, answers like qsub -terse
printf '%s\\n' "$0" "$@" > "$RECORD_DIR/argv"
cat > "$RECORD_DIR/stdin"
echo 4711
"""
STAND_IN_QSTAT = """#!/bin/bash
echo '<?xml version="1.0"?><job_info><queue_info></queue_info><job_info></job_info></job_info>'
"""


def sge_config(tmp_path: Path) -> Path:
    document = {
        "pipeline": [{"__type__": "tardis_sge_dask.poolfactory.create_composite_pool"}],
        "tardis": {
            "BatchSystem": {"adapter": "Dask", "scheduler_address": "tcp://127.0.0.1:8786"},
            "Sites": [{"name": "renderq", "adapter": "SGE", "quota": 16}],
            "renderq": {
                "MachineTypes": ["quad"],
                "MachineMetaData": {"quad": {"Cores": 4, "Memory": 8, "Disk": 20}},
                "MachineTypeConfiguration": {
                    "quad": {
                        "StartupCommand": str(PILOT),
                        "Queue": "all.q",
                        "ParallelEnvironment": "smp",
                        "Walltime": "2:00:00",
                        "JobEnvironment": {
                            "PILOT_DASK_SCHEDULER": "tcp://10.0.0.1:8786",
                            "PILOT_TOKEN_FILE": "/etc/condor/tokens.d/drone",
                            "OVERLAY_PASSWORD": "hunter2",
                        },
                    }
                },
            },
        },
    }
    path = tmp_path / "sge.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def stand_ins(tmp_path: Path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("qsub", STAND_IN_QSUB), ("qstat", STAND_IN_QSTAT)):
        program = bin_dir / name
        program.write_text(text)
        program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    return bin_dir


async def test_render_is_what_the_sge_adapter_submits(tmp_path, monkeypatch):
    config = sge_config(tmp_path)
    stand_ins(tmp_path, monkeypatch)
    rendered = render(config, "renderq", "quad", drone_uuid="renderq-abcdef0123")

    # render left the adapter's configuration installed, as the daemon would have it
    SGEAdapter._listings.clear()
    adapter = SGEAdapter(machine_type="quad", site_name="renderq")
    result = await adapter.deploy_resource(
        AttributeDict(
            drone_uuid="renderq-abcdef0123",
            site_name="renderq",
            machine_type="quad",
            obs_machine_meta_data_translation_mapping=AttributeDict(
                Cores=1, Memory=1024, Disk=1024 * 1024
            ),
        )
    )
    assert result.remote_resource_uuid == "4711"
    submitted_argv = (tmp_path / "argv").read_text().splitlines()
    assert Path(submitted_argv[0]).name == "qsub"
    assert ["qsub", *submitted_argv[1:]] == rendered.argv
    assert (tmp_path / "stdin").read_text() == rendered.script
    # the drone's sizes travel in the overlay's units, settings inside the script
    assert "TardisDroneMemory=8192" in rendered.argv
    assert "export PILOT_DASK_SCHEDULER=tcp://10.0.0.1:8786" in rendered.script


def test_render_command_line_masks_secrets(tmp_path, capsys):
    config = sge_config(tmp_path)
    assert main(["render", str(config), "--site", "renderq", "--machine-type", "quad"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# drone renderq-0123456789 of site renderq, machine type quad")
    assert "qsub -terse -N renderq-0123456789 -S /bin/bash -q all.q -pe smp 4" in out
    assert f"export OVERLAY_PASSWORD={MASK}" in out and "hunter2" not in out
    # a path to a secret is not a secret
    assert "export PILOT_TOKEN_FILE=/etc/condor/tokens.d/drone" in out
    assert "#!/bin/bash" in out and "drone-pilot" in out

    assert (
        main(
            ["render", str(config), "--site", "renderq", "--machine-type", "quad", "--show-secrets"]
        )
        == 0
    )
    assert "export OVERLAY_PASSWORD=hunter2" in capsys.readouterr().out


def test_render_of_the_local_config_runs_the_pilot_with_bash(capsys):
    assert (
        main(
            [
                "render",
                str(ROOT / "configs" / "local.yaml"),
                "--site",
                "Local",
                "--machine-type",
                "local1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "env TardisDroneCores=1 TardisDroneMemory=1024" in out
    assert "TardisDroneUuid=local-0123456789 bash " in out
    assert "export PILOT_BATCH_SYSTEM=local" in out
    assert "export PILOT_CONTAINER=none" in out


def test_render_names_what_is_missing(tmp_path, capsys):
    config = sge_config(tmp_path)
    assert main(["render", str(config), "--site", "renderq", "--machine-type", "huge"]) == 1
    assert "site renderq has no machine type 'huge'; machine types: quad" in capsys.readouterr().err
    assert main(["render", str(config), "--site", "nosuch", "--machine-type", "quad"]) == 1
    assert "no site 'nosuch'; sites: renderq" in capsys.readouterr().err


def test_mask_keeps_plain_values():
    text = "export SECRET_KEY='a b'\nexport PILOT_MODE=dask\n-v TOKEN=xyz"
    assert mask(text) == f"export SECRET_KEY={MASK}\nexport PILOT_MODE=dask\n-v TOKEN={MASK}"


def test_render_of_the_production_config_off_the_daemon_host(capsys):
    config = Path(__file__).parents[2] / "configs" / "physnet.yaml"
    physnet = ["render", str(config), "--site", "PHYSnet", "--machine-type", "idefix"]
    # the configured pilot path exists only on the daemon's host: a clear error, no traceback
    assert main(physnet) == 1
    err = capsys.readouterr().err
    assert "cannot read StartupCommand /opt/" in err and "--pilot" in err
    assert "Traceback" not in err
    assert main([*physnet, "--pilot", str(pilot_path())]) == 0
    out = capsys.readouterr().out
    assert "-q idefix.q -pe smp 8" in out
    assert "export PILOT_MODE=htcondor" in out


@pytest.mark.parametrize("where", ["config", "--pilot"])
def test_a_nul_byte_in_the_startup_command_is_one_clear_line(tmp_path, capsys, where):
    config = sge_config(tmp_path)
    argv = ["render", str(config), "--site", "renderq", "--machine-type", "quad"]
    if where == "config":
        document = yaml.safe_load(config.read_text())
        quad = document["tardis"]["renderq"]["MachineTypeConfiguration"]["quad"]
        quad["StartupCommand"] = f"{PILOT}\0.sh"
        config.write_text(yaml.safe_dump(document))
    else:
        argv += ["--pilot", f"{PILOT}\0.sh"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    first = captured.err.splitlines()[0]
    assert first.startswith("tardis-sge-dask render: ")
    assert "StartupCommand" in first and "'\\x00'" in first


def test_the_job_script_names_a_nul_in_the_pilot_path(tmp_path):
    from tardis_sge_dask.sites.jobscript import JobScriptError, render_job_script

    with pytest.raises(JobScriptError, match="StartupCommand"):
        render_job_script(f"{PILOT}\0.sh", {})


@pytest.mark.parametrize(
    "name",
    [
        "OVERLAY_PASSWORD",
        "GPG_PASSPHRASE",
        "SSH_KEY",
        "SSH_PRIVATE_KEY",
        "TLS_PEM",
        "CLIENT_PEM",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "S3_KEY",
        "HTTP_AUTH",
        "REDIS_COOKIE",
    ],
)
def test_secret_names_are_masked(name):
    assert mask(f"export {name}=s3cr3t") == f"export {name}={MASK}"


@pytest.mark.parametrize(
    "name", ["PILOT_TOKEN_FILE", "SSH_KEY_FILE", "PILOT_MODE", "PILOT_X509_PROXY", "KEYBOARD"]
)
def test_paths_and_plain_settings_are_shown(name):
    assert mask(f"export {name}=/etc/x") == f"export {name}=/etc/x"


def test_a_secret_with_a_single_quote_is_masked_whole(tmp_path, capsys):
    config = sge_config(tmp_path)
    document = yaml.safe_load(config.read_text())
    quad = document["tardis"]["renderq"]["MachineTypeConfiguration"]["quad"]
    quad["JobEnvironment"]["OVERLAY_PASSWORD"] = 'it\'s hunter2 "and" more'
    config.write_text(yaml.safe_dump(document))
    assert main(["render", str(config), "--site", "renderq", "--machine-type", "quad"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "more" not in out
    assert f"export OVERLAY_PASSWORD={MASK}\n" in out


def test_secrets_in_extra_options_are_masked(tmp_path, capsys):
    config = sge_config(tmp_path)
    document = yaml.safe_load(config.read_text())
    quad = document["tardis"]["renderq"]["MachineTypeConfiguration"]["quad"]
    quad["ExtraOptions"] = [
        "-v", "PILOT_MODE=dask,API_TOKEN=tok1",
        "-ac", "DB_PASSWORD=pw2",
        "--token=tok3",
        "--password", "pw4",
        "-v", "PILOT_URL=https://drone:pw5@cm.physnet:9618/",
    ]  # fmt: skip
    config.write_text(yaml.safe_dump(document))
    assert main(["render", str(config), "--site", "renderq", "--machine-type", "quad"]) == 0
    out = capsys.readouterr().out
    for secret in ("tok1", "pw2", "tok3", "pw4", "pw5"):
        assert secret not in out
    assert "PILOT_MODE=dask" in out and "cm.physnet:9618" in out
    assert (
        main(
            ["render", str(config), "--site", "renderq", "--machine-type", "quad", "--show-secrets"]
        )
        == 0
    )
    shown = capsys.readouterr().out
    assert all(secret in shown for secret in ("tok1", "pw2", "tok3", "pw4", "pw5"))
