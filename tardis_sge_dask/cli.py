"""``tardis-sge-dask``: the admin's command line (init, demo, check, render, status, sweep)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .configfile import ConfigFileError


def _demo(args: argparse.Namespace) -> int:
    from .demo import DEFAULT_CONFIG, run_demo

    config = Path(args.config) if args.config else DEFAULT_CONFIG
    if not config.exists():
        print(f"tardis-sge-dask demo: {config} does not exist; pass --config", file=sys.stderr)
        return 2
    return run_demo(
        config=config, tasks=args.tasks, task_seconds=args.task_seconds, timeout=args.timeout
    )


def _check(args: argparse.Namespace) -> int:
    from .check import check

    problems = check(args.config, check_files=not args.skip_files)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    print(f"{args.config}: no problems found")
    return 0


def _render(args: argparse.Namespace) -> int:
    from .render import RenderError, format_rendered, render
    from .sites.jobscript import JobScriptError
    from .sites.settings import SiteConfigError

    try:
        rendered = render(
            args.config, args.site, args.machine_type, args.drone_uuid, pilot=args.pilot
        )
    except JobScriptError as err:
        print(f"tardis-sge-dask render: {err}", file=sys.stderr)
        print(
            "(on another host than the daemon's: --pilot \"$(python -m tardis_sge_dask.pilot"
            ' --path)")',
            file=sys.stderr,
        )
        return 1
    except (RenderError, SiteConfigError, ConfigFileError) as err:
        print(f"tardis-sge-dask render: {err}", file=sys.stderr)
        print("(tardis-sge-dask check CONFIG lists every problem of the file)", file=sys.stderr)
        return 1
    sys.stdout.write(format_rendered(rendered, show_secrets=args.show_secrets))
    return 0


def _status(args: argparse.Namespace) -> int:
    from .status import StatusError, as_json, collect, format_table, select

    try:
        rows, note = collect(args.config, args.registry)
    except (StatusError, ConfigFileError) as err:
        print(f"tardis-sge-dask status: {err}", file=sys.stderr)
        return 1
    if args.find:
        rows = select(rows, args.find)
        if not rows:
            print(f"tardis-sge-dask status: no drone knows {args.find!r}", file=sys.stderr)
            if note:
                print(f"note: {note}", file=sys.stderr)
            return 1
    rows += _orphan_rows(args)
    print(as_json(rows) if args.json else format_table(rows))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _orphan_rows(args: argparse.Namespace) -> list:
    """The batch jobs of drones the registry does not know, as rows in state Orphan."""
    from .orphans import OrphanError, run_survey, sweep_command
    from .status import DroneRow, StatusError, select

    try:
        survey = run_survey(args.config, args.registry)
    except (OrphanError, StatusError, ConfigFileError) as err:
        print(f"note: orphans not looked for: {err}", file=sys.stderr)
        return []
    for site, problem in survey.problems.items():
        print(f"note: orphans not looked for at site {site}: {problem}", file=sys.stderr)
    rows = [
        DroneRow(orphan.name, "Orphan", orphan.job_id, orphan.site, "-", None)
        for orphan in survey.orphans
    ]
    if rows:
        print(
            f"note: {len(rows)} job(s) of drones not in the registry (state Orphan);"
            f" {sweep_command(args.config, args.registry)} removes them",
            file=sys.stderr,
        )
    return select(rows, args.find) if args.find else rows


def _sweep(args: argparse.Namespace) -> int:
    from .orphans import (
        OrphanError,
        format_orphans,
        run_removal,
        run_survey,
        sweep_command,
    )
    from .status import StatusError

    try:
        survey = run_survey(args.config, args.registry)
    except (OrphanError, StatusError, ConfigFileError) as err:
        print(f"tardis-sge-dask sweep: {err}", file=sys.stderr)
        return 1
    for site, problem in survey.problems.items():
        print(f"tardis-sge-dask sweep: site {site} not listed: {problem}", file=sys.stderr)
    if not survey.listed and not survey.problems:
        print(f"tardis-sge-dask sweep: {args.config} has no Grid Engine or SLURM site")
        return 1
    if not survey.orphans:
        print(f"no orphans at {', '.join(survey.listed) or 'any site'}")
        return 1 if survey.problems else 0
    print(f"{len(survey.orphans)} orphan job(s): in the batch system, not in the registry")
    print(format_orphans(survey.orphans))
    if not args.yes:
        command = sweep_command(args.config, args.registry)
        print(f"dry run, nothing removed; to remove them: {command} --yes")
        return 1 if survey.problems else 0
    removals = run_removal(args.config, survey.orphans)
    for removal in removals:
        orphan = removal.orphan
        print(f"{orphan.site}: job {orphan.job_id} ({orphan.name}): {removal.outcome}")
    failed = sum(removal.failed for removal in removals)
    if failed:
        print(f"tardis-sge-dask sweep: {failed} removal(s) failed", file=sys.stderr)
    return 1 if failed or survey.problems else 0


def _init(args: argparse.Namespace) -> int:
    from .init.command import InitError, run_init, ssh_target
    from .init.runner import ProbeError

    try:
        ssh = (
            ssh_target(args.ssh, args.ssh_port, args.ssh_key or [], args.known_hosts)
            if args.ssh
            else None
        )
        _, survey = run_init(
            Path(args.output),
            batch_system=args.batch_system,
            overlay=args.overlay,
            site=args.site,
            ssh=ssh,
            record=Path(args.record) if args.record else None,
        )
    except (InitError, ProbeError, OSError) as err:
        print(f"tardis-sge-dask init: {err}", file=sys.stderr)
        return 1
    for proposal in survey.machine_types:
        print(f"machine type {proposal.name}: {proposal.cores} cores, {proposal.memory:g} GB")
    for excluded in survey.excluded:
        print(f"left out {excluded.name}: {excluded.reason}")
    print(f"wrote {args.output}; next: tardis-sge-dask check {args.output}")
    return 0 if survey.machine_types else 1


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="tardis-sge-dask",
        description="Lend idle batch nodes to Dask users through COBalD/TARDIS drones.",
    )
    commands = main_parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init", help="probe a Grid Engine or SLURM site and write a configuration for it"
    )
    init.add_argument("output", help="the configuration file to write (never overwritten)")
    init.add_argument("--batch-system", choices=("sge", "slurm"), help="default: whichever answers")
    init.add_argument(
        "--overlay", choices=("dask", "htcondor"), default="dask", help="the pilot's mode"
    )
    init.add_argument("--site", help="the site's name (default: gridengine or slurm)")
    init.add_argument("--ssh", metavar="USER@HOST", help="probe (and later submit) over SSH")
    init.add_argument("--ssh-port", type=int, help="the SSH port (default 22)")
    init.add_argument("--ssh-key", action="append", metavar="FILE", help="private key (repeatable)")
    init.add_argument("--known-hosts", metavar="FILE", help="pinned host keys")
    init.add_argument(
        "--record", metavar="FILE", help="also write every command's answer (JSON), for a report"
    )
    init.set_defaults(run=_init)

    demo = commands.add_parser(
        "demo", help="run the whole loop on this machine (scheduler, daemon, drones, a computation)"
    )
    demo.add_argument("--config", help="configuration to run (default: configs/local.yaml)")
    demo.add_argument("--tasks", type=int, default=40, help="tasks of the sample computation")
    demo.add_argument("--task-seconds", type=float, default=0.25, help="seconds each task takes")
    demo.add_argument(
        "--timeout", type=float, default=150, help="give up (and clean up) after this many seconds"
    )
    demo.set_defaults(run=_demo)

    check = commands.add_parser("check", help="validate a configuration offline")
    check.add_argument("config", help="the COBalD/TARDIS YAML file")
    check.add_argument(
        "--skip-files",
        action="store_true",
        help="do not check files of the daemon's host (pilot, SSH keys, tokens, TLS files,"
        " registry directory): for a production config checked on another machine",
    )
    check.set_defaults(run=_check)

    render = commands.add_parser(
        "render", help="print the submit command and job script a drone would get"
    )
    render.add_argument("config")
    render.add_argument("--site", required=True)
    render.add_argument("--machine-type", required=True)
    render.add_argument("--drone-uuid", help="the drone uuid to render (default: a sample)")
    render.add_argument(
        "--pilot",
        metavar="PATH",
        help="job script body instead of the configured StartupCommand (which exists only on"
        " the daemon's host)",
    )
    render.add_argument(
        "--show-secrets", action="store_true", help="do not mask tokens and passwords"
    )
    render.set_defaults(run=_render)

    status = commands.add_parser("status", help="list the drones (registry + overlay)")
    status.add_argument("config")
    status.add_argument("--registry", help="the SqliteRegistry file (default: from the config)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--find",
        metavar="NAME",
        help="only the drone serving this Dask worker, HTCondor job, batch job or drone uuid",
    )
    status.set_defaults(run=_status)

    sweep = commands.add_parser(
        "sweep",
        help="remove the batch jobs of this site's drones that the registry does not know"
        " (dry run unless --yes)",
    )
    sweep.add_argument("config")
    sweep.add_argument("--registry", help="the SqliteRegistry file (default: from the config)")
    sweep.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    sweep.set_defaults(run=_sweep)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
