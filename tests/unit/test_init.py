"""``tardis-sge-dask init``: parsers, probes and the written file, on recorded site answers.

``tests/fixtures/init/recorded-*`` are real answers of this machine's Grid Engine and SLURM
(``init --record``); ``handmade-*`` are other flavours and versions written by hand from
their documented formats, and say so in their ``label``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tardis_sge_dask.check import check
from tardis_sge_dask.configfile import load
from tardis_sge_dask.init import placeholders, sge, slurm
from tardis_sge_dask.init.command import InitError, run_init, ssh_target
from tardis_sge_dask.init.runner import Output, ReplayRunner

FIXTURES = Path(__file__).parent.parent / "fixtures" / "init"


def replay(name: str) -> ReplayRunner:
    return ReplayRunner(json.loads((FIXTURES / name).read_text()))


def test_every_fixture_says_whether_it_was_recorded_or_made_by_hand():
    for path in FIXTURES.glob("*.json"):
        label = json.loads(path.read_text())["label"]
        assert label.startswith("HAND-MADE") == path.name.startswith("handmade-"), path.name
        assert label.startswith("recorded") == path.name.startswith("recorded-"), path.name


# ------------------------------------------------------------------ Grid Engine parsers
def test_qconf_continuation_lines_and_per_host_values():
    conf = sge.parse_conf("qname  all.q\nload_values  a=1, \\\n     num_proc=4\nslots 1,[n1=8]\n")
    assert conf["load_values"] == "a=1,num_proc=4"
    assert sge.parse_host_values(conf["slots"]) == ("1", {"n1": "8"})
    assert sge.parse_host_values("smp mpi,[@gpu=smp]") == ("smp mpi", {"@gpu": "smp"})


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [("4G", 4096), ("4096M", 4096), ("1g", 1e9 / 2**20), ("24105.046875M", 24105.046875)],
)
def test_grid_engine_memory_units(text, megabytes):
    assert sge.parse_memory_mb(text) == pytest.approx(megabytes)
    assert sge.parse_memory_mb("INFINITY") is None


def test_grid_engine_times():
    assert sge.parse_time("02:00:00") == 7200
    assert sge.parse_time("90") == 90
    assert sge.parse_time("INFINITY") is None


def test_the_memory_attribute_is_the_consumable_one():
    table = sge.parse_complexes(
        "#name shortcut type relop requestable consumable default urgency\n"
        "h_vmem h_vmem MEMORY <= YES NO 0 0\nmem_free mf MEMORY <= YES YES 0 0\n"
    )
    assert sge.choose_memory_attribute(table).value == "mem_free"
    per_job = sge.parse_complexes("m_mem_free mfree MEMORY <= YES JOB 0 0 NO\n")
    choice = sge.choose_memory_attribute(per_job)
    assert choice.value is None and "per job" in choice.source and choice.question


# ------------------------------------------------------------------------ SLURM parsers
def test_scontrol_records_keep_values_with_spaces():
    (record,) = slurm.parse_records(
        "NodeName=n1 Gres=gpu:a100:4(S:0-1) Reason=Not responding [slurm@2024] State=DOWN"
    )
    assert record["Reason"] == "Not responding [slurm@2024]"
    assert slurm.parse_gpus(record["Gres"]) == 4
    assert slurm.parse_gpus("(null)") == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2-00:00:00", 172800), ("02:00:00", 7200), ("30", 1800), ("UNLIMITED", None)],
)
def test_slurm_time_limits(text, seconds):
    assert slurm.parse_minutes_limit(text) == seconds


# ------------------------------------------------------------------------------ probes
def test_grid_engine_univa_style_site():
    survey = sge.probe(replay("handmade-univa-8.6-sge.json"))
    types = {proposal.name: proposal for proposal in survey.machine_types}
    assert sorted(types) == ["gpu", "long", "mpi"]
    long = types["long"]
    assert long.config["ParallelEnvironment"].value == "smp"  # $pe_slots over $fill_up
    assert long.config["MemoryResource"].value == "m_mem_free"
    assert long.config["Walltime"].value == 71 * 3600  # s_rt below h_rt
    assert long.cores == 8 and long.memory <= 125 * 8 / 16 * 0.5
    # mpi.q offers only $fill_up: one-core drones, and the question why
    assert types["mpi"].cores == 1 and types["mpi"].meta["Cores"].question
    assert types["gpu"].gpus.value == 1
    assert types["gpu"].config["ExtraOptions"].value == ["-l", "gpu=1"]
    left_out = {excluded.name: excluded.reason for excluded in survey.excluded}
    assert "INTERACTIVE" in left_out["interactive.q"]
    assert "may not use" in left_out["staff.q"]


def test_slurm_23_style_site():
    survey = slurm.probe(replay("handmade-slurm-23.11.json"))
    types = {proposal.name: proposal for proposal in survey.machine_types}
    assert sorted(types) == ["cpu", "gpu", "lowmem"]
    assert types["cpu"].config["Walltime"].value == 3 * 86400
    assert types["gpu"].gpus.value == 1 and types["gpu"].config["QOS"].value == "gpu"
    assert types["lowmem"].memory <= 8 * 1000 / 1024
    left_out = {excluded.name: excluded.reason for excluded in survey.excluded}
    assert set(left_out) == {"admin", "cms", "maint", "tiny"}
    assert "AllowAccounts" in left_out["cms"]


def test_recorded_grid_engine_of_this_machine():
    survey = sge.probe(replay("recorded-sge-8.1.9-debian12-one-queue.json"))
    (proposal,) = survey.machine_types
    assert proposal.config["Queue"].value == "all.q"
    assert proposal.config["ParallelEnvironment"].value == "smp"
    assert proposal.notes[-1].startswith("qsub -w v")


def test_recorded_slurm_of_this_machine():
    survey = slurm.probe(replay("recorded-slurm-22.05.8-debian12-one-partition.json"))
    assert [proposal.name for proposal in survey.machine_types] == ["debug"]


def test_a_refused_verification_leaves_the_queue_out():
    fixture = json.loads((FIXTURES / "handmade-slurm-23.11.json").read_text())
    for answer in fixture["answers"]:
        if (
            answer["command"].startswith("sbatch --test-only")
            and "partition=gpu" in answer["command"]
        ):
            answer.update(exit_code=1, stderr="sbatch: error: Invalid qos specification")
    survey = slurm.probe(ReplayRunner(fixture))
    assert "gpu" not in [proposal.name for proposal in survey.machine_types]
    assert any("Invalid qos" in excluded.reason for excluded in survey.excluded)


# ------------------------------------------------------------------------- the file
@pytest.mark.parametrize("overlay", ["dask", "htcondor"])
@pytest.mark.parametrize(
    ("fixture", "batch_system"),
    [
        ("handmade-univa-8.6-sge.json", "sge"),
        ("handmade-slurm-23.11.json", "slurm"),
        ("recorded-sge-8.1.9-debian12-one-queue.json", "sge"),
        ("recorded-slurm-22.05.8-debian12-one-partition.json", "slurm"),
        ("recorded-sge-8.1.9-debian12-multi-queue-ssh.json", "sge"),
        ("recorded-slurm-22.05.8-debian12-multi-partition.json", "slurm"),
    ],
)
def test_check_names_only_the_placeholders(tmp_path, fixture, batch_system, overlay):
    output = tmp_path / "site.yaml"
    run_init(
        output,
        batch_system=batch_system,
        overlay=overlay,
        site=None,
        ssh=None,
        runner=replay(fixture),
    )
    left = dict(placeholders.find(load(output)))
    assert left
    problems = check(output)
    assert set(left) <= {problem.key_path for problem in problems}
    # anything else is about a key holding a placeholder (a token path that is no path)
    names = {path.rsplit(".", 1)[-1] for path in left}
    assert {problem.key_path.rsplit(".", 1)[-1] for problem in problems} == names
    # filled in, the file is clean
    text = output.read_text()
    for question in set(left.values()):
        filled = "/opt/x" if "path" in question else "tcp://127.0.0.1:8786"
        if "9618" in question:
            filled = "cm.example:9618"
        text = text.replace(
            f"'{placeholders.MARKER} {question.replace(chr(39), chr(39) * 2)}'", filled
        )
    output.write_text(text)
    assert check(output, check_files=False) == []


def test_every_value_says_where_it_came_from(tmp_path):
    output = tmp_path / "site.yaml"
    run_init(
        output,
        batch_system="sge",
        overlay="dask",
        site="physnet",
        ssh=None,
        runner=replay("handmade-univa-8.6-sge.json"),
    )
    lines = output.read_text().splitlines()
    section = lines[lines.index("    MachineMetaData:") :]
    for number, line in enumerate(section):
        if line.strip().startswith(("Cores:", "Memory:", "Disk:", "Queue:", "Walltime:")):
            comments = []
            for above in reversed(section[:number]):
                if not above.strip().startswith("#"):
                    break
                comments.append(above.strip())
            assert any(comment.startswith("# from") for comment in comments), line
    assert "left out: staff.q" in output.read_text()


def test_init_never_overwrites(tmp_path):
    output = tmp_path / "site.yaml"
    output.write_text("mine")
    with pytest.raises(InitError, match="never overwrites"):
        run_init(
            output,
            batch_system="sge",
            overlay="dask",
            site=None,
            ssh=None,
            runner=replay("handmade-univa-8.6-sge.json"),
        )
    assert output.read_text() == "mine"


def test_ssh_target_is_the_executor_of_the_file(tmp_path):
    target = ssh_target("tardis@submit.example", 2222, ["key"], None)
    assert target["host"] == "submit.example" and target["port"] == 2222
    output = tmp_path / "site.yaml"
    run_init(
        output,
        batch_system="slurm",
        overlay="dask",
        site=None,
        ssh=target,
        runner=replay("handmade-slurm-23.11.json"),
    )
    executor = load(output)["tardis"]["slurm"]["executor"]
    assert executor.tag == "TardisSSHExecutor" and executor.value["port"] == 2222
    with pytest.raises(InitError):
        ssh_target("submit.example", None, [], None)


# ------------------------------------------------- the shaped sites of this machine
# services/site-shapes.sh up sge|slurm, then init --record, locally (root) and over the test
# sshd (tardis): see tests/integration/test_init.py for the shapes
def test_recorded_multi_queue_grid_engine():
    survey = sge.probe(replay("recorded-sge-8.1.9-debian12-multi-queue.json"))
    types = {proposal.config["Queue"].value: proposal for proposal in survey.machine_types}
    assert sorted(types) == ["all.q", "mpi.q", "short.q"]
    short = types["short.q"]
    # pe_list "tsd_rr smp": the $pe_slots PE, though the $round_robin one comes first
    assert short.config["ParallelEnvironment"].value == "smp"
    assert short.config["MemoryResource"].value == "h_vmem"  # consumable per slot (YES)
    # without h_stack Grid Engine would make the stack limit as large as h_vmem
    assert short.config["ExtraOptions"].value == ["-l", "h_stack=8M"]
    assert short.config["Walltime"].value == 1800  # h_rt 00:30:00
    assert 1 < short.cores <= 4 and short.memory <= 4 * short.cores  # h_vmem 4G per slot
    # only a $round_robin PE: one-core drones without a PE, and the question why
    mpi = types["mpi.q"]
    assert mpi.cores == 1 and "ParallelEnvironment" not in mpi.config
    assert mpi.meta["Cores"].question
    left_out = {excluded.name: excluded.reason for excluded in survey.excluded}
    assert set(left_out) == {"staff.q"}
    assert "user_lists tsd_staff do not hold root" in left_out["staff.q"]


def test_a_stack_limit_only_where_drones_request_h_vmem():
    table = sge.parse_complexes(
        "h_stack h_stack MEMORY <= YES NO 0 0\nh_vmem h_vmem MEMORY <= YES YES 0 0\n"
        "mem_free mf MEMORY <= YES YES 0 0\n"
    )
    assert sge.choose_stack_limit(table, "h_vmem").value == ["-l", "h_stack=8M"]
    assert sge.choose_stack_limit(table, "mem_free") is None
    assert sge.choose_stack_limit(table, None) is None


def test_the_hosts_memory_consumable_bounds_a_drone():
    """The recorded site with the host's h_vmem capacity cut to 8G (edited here)."""
    fixture = json.loads((FIXTURES / "recorded-sge-8.1.9-debian12-multi-queue.json").read_text())
    for answer in fixture["answers"]:
        if answer["command"].startswith("qconf -se "):
            answer["stdout"] = answer["stdout"].replace("h_vmem=48G", "h_vmem=8G")
    run = ReplayRunner(fixture)
    verified = Output("", "verification: found suitable queue(s)", "", 0)
    survey = sge.probe(lambda *argv: verified if argv[:3] == ("qsub", "-w", "v") else run(*argv))
    assert len(survey.machine_types) == 3
    # half of the capacity: two drones of any type still fit on the host together
    for proposal in survey.machine_types:
        assert proposal.memory <= 4, proposal.name
        assert "50% of h_vmem 8.0 GB on vm" in proposal.meta["Memory"].source


def test_recorded_multi_queue_grid_engine_over_ssh():
    survey = sge.probe(replay("recorded-sge-8.1.9-debian12-multi-queue-ssh.json"))
    assert survey.user == "tardis"
    assert sorted(proposal.config["Queue"].value for proposal in survey.machine_types) == [
        "all.q",
        "mpi.q",
        "short.q",
    ]
    (excluded,) = survey.excluded
    assert excluded.name == "staff.q" and "do not hold tardis" in excluded.reason


def test_recorded_multi_partition_slurm():
    survey = slurm.probe(replay("recorded-slurm-22.05.8-debian12-multi-partition.json"))
    types = {proposal.config["Partition"].value: proposal for proposal in survey.machine_types}
    assert sorted(types) == ["debug", "gpu", "short"]
    for proposal in types.values():  # gres/gpu:4 (File= in gres.conf) on the one node
        assert proposal.gpus.value == 1
        assert proposal.config["ExtraOptions"].value == ["--gres=gpu:1"]
    short = types["short"]
    assert short.config["Walltime"].value == 1800  # MaxTime=30 (minutes)
    assert short.cores == 4 and short.memory <= 4  # MaxCPUsPerNode=4, MaxMemPerNode=4096
    assert types["gpu"].config["Walltime"].value == 4 * 3600
    left_out = {excluded.name: excluded.reason for excluded in survey.excluded}
    assert set(left_out) == {"restricted"}
    assert "AllowAccounts=tsd_physics" in left_out["restricted"]


def test_a_user_without_an_association_keeps_the_open_partitions():
    """tardis has no association in slurmdbd; this SLURM does not enforce them."""
    survey = slurm.probe(replay("recorded-slurm-22.05.8-debian12-multi-partition-ssh.json"))
    assert survey.user == "tardis"
    types = {proposal.config["Partition"].value: proposal for proposal in survey.machine_types}
    assert sorted(types) == ["debug", "gpu", "short"]
    assert not any("Account" in proposal.config for proposal in types.values())
    (excluded,) = survey.excluded
    assert excluded.name == "restricted" and "tardis has no account" in excluded.reason
