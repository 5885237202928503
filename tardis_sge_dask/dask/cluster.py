"""``OverlayCluster``: dask-jobqueue's HTCondorCluster for the PHYSnet overlay pool.

Differences to the stock ``HTCondorCluster`` (all configurable under ``jobqueue.overlay``):

* worker jobs are marked ``IsDaskWorker = true`` (what the demand controller counts) and
  may only run on drones (``TARGET.TardisDroneUuid =!= undefined``);
* ``site="PHYSnet"`` (``jobqueue.overlay.site``) keeps them to that site's drones: the job
  carries ``TardisSite = "PHYSnet"``, which the demand controller reads, and requires
  ``TARGET.TardisDroneSite =?= MY.TardisSite``, which the drone advertises;
* no shared filesystem: the worker's Python is the one inside the drone image, TLS files
  travel with the job (``transfer_input_files``) and are referenced by their base names in
  the job's scratch directory, the worker's local directory is HTCondor's scratch;
* the scheduler can advertise a ``contact_address`` (a notebook behind NAT);
* with TLS, one connection's OpenSSL error does not end the session's other connections
  (Python 3.13 with OpenSSL >= 3.2, see ``tls.py``);
* workers retire themselves before the drone ends (``--lifetime`` with stagger) and listen
  on a port range a site firewall can open.
"""

from __future__ import annotations

import copy
import os
import shlex
from typing import Any

import dask
from dask_jobqueue import HTCondorCluster
from dask_jobqueue.htcondor import HTCondorJob

from .tls import clear_openssl_errors_before_tls_io

CONFIG_NAME = "overlay"

#: defaults on top of dask-jobqueue's own ``jobqueue.htcondor`` section; the same keys are
#: documented in configs/jobqueue.yaml
OVERLAY_DEFAULTS: dict[str, Any] = {
    "name": "dask-worker",
    # the interpreter inside the drone image, found on the drone's PATH
    "python": "python3",
    "death-timeout": 120,
    "local-directory": "$_CONDOR_SCRATCH_DIR",
    "shebang": "#!/usr/bin/env condor_submit",
    # seconds before the drone ends; workers retire before that
    "lifetime": "3h",
    "lifetime-stagger": "5m",
    "worker-ports": "40000:40100",
    "nanny-ports": "40100:40200",
    "contact-address": None,
    # the COBalD/TARDIS site the workers must run at (None: any site)
    "site": None,
    "job-extra-directives": {},
    "scheduler-options": {},
}

DRONE_REQUIREMENT = "(TARGET.TardisDroneUuid =!= undefined)"
#: the job attribute naming the site; the demand sources read it without parsing Requirements
SITE_ATTRIBUTE = "TardisSite"
SITE_REQUIREMENT = f"(TARGET.TardisDroneSite =?= MY.{SITE_ATTRIBUTE})"


def _site_literal(site: str) -> str:
    """The site as a ClassAd string; a name the drone could not advertise is refused."""
    if not site or any(char in site for char in '"\\') or not site.isprintable():
        raise ValueError(f"site {site!r} is not a plain site name")
    return f'"{site}"'


def register_defaults() -> None:
    """Make ``jobqueue.overlay`` exist with every key dask-jobqueue reads."""
    base = copy.deepcopy(dask.config.get("jobqueue.htcondor", default={}) or {})
    base.update(OVERLAY_DEFAULTS)
    dask.config.update_defaults({"jobqueue": {CONFIG_NAME: base}})


register_defaults()


def _config(key: str) -> Any:
    return dask.config.get(f"jobqueue.{CONFIG_NAME}.{key}")


class OverlayJob(HTCondorJob):
    """One Dask-worker job for the overlay pool."""

    config_name = CONFIG_NAME

    def __init__(
        self,
        scheduler: str | None = None,
        name: str | None = None,
        # HTCondorJob's positional parameters, kept: dask-jobqueue builds a cluster's
        # job_cls as it would build an HTCondorJob
        disk: str | None = None,
        config_name: str | None = None,
        submit_command_extra: list[str] | None = None,
        cancel_command_extra: list[str] | None = None,
        *,
        contact_address: str | None = None,
        lifetime: str | None = None,
        lifetime_stagger: str | None = None,
        worker_ports: str | None = None,
        nanny_ports: str | None = None,
        site: str | None = None,
        **kwargs: Any,
    ):
        site = site if site is not None else _config("site")
        extra = list(kwargs.pop("worker_extra_args", None) or _config("worker-extra-args") or [])
        lifetime = lifetime if lifetime is not None else _config("lifetime")
        stagger = lifetime_stagger if lifetime_stagger is not None else _config("lifetime-stagger")
        worker_ports = worker_ports if worker_ports is not None else _config("worker-ports")
        nanny_ports = nanny_ports if nanny_ports is not None else _config("nanny-ports")
        if lifetime:
            extra += ["--lifetime", str(lifetime)]
            if stagger:
                extra += ["--lifetime-stagger", str(stagger)]
        if worker_ports:
            extra += ["--worker-port", str(worker_ports)]
        if nanny_ports:
            extra += ["--nanny-port", str(nanny_ports)]
        # behind NAT the scheduler's own address is not what the drone can reach
        scheduler = contact_address or _config("contact-address") or scheduler
        super().__init__(
            scheduler,
            name,
            disk,
            config_name,
            submit_command_extra,
            cancel_command_extra,
            worker_extra_args=extra,
            **kwargs,
        )

        requirement = DRONE_REQUIREMENT
        if site:
            requirement = f"{DRONE_REQUIREMENT} && {SITE_REQUIREMENT}"
        directives = {
            **({f"MY.{SITE_ATTRIBUTE}": _site_literal(site)} if site else {}),
            "MY.IsDaskWorker": "true",
            # dask-jobqueue writes "htcondor--<job id>--" here but names the worker after
            # the cluster's job name (--name): the drone publishes this attribute, and
            # `tardis-sge-dask status` maps a worker to its job and drone by it
            **({"MY.DaskWorkerName": f'"{name}"'} if name and '"' not in name else {}),
            "Requirements": requirement,
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT",
        }
        security = kwargs.get("security")
        files = _tls_files(security)
        if files:
            # the drone has no shared filesystem: ship the files, point at the copies
            for path in files:
                self._command_template = self._command_template.replace(
                    path, os.path.basename(path)
                )
            directives["transfer_input_files"] = ",".join(files)
        # the user's own directives win
        for key, value in directives.items():
            if key == "MY.DaskWorkerName":
                self.job_header_dict[key] = value
            else:
                self.job_header_dict.setdefault(key, value)
        if "Requirements" in (self.job_extra_directives or {}):
            user = self.job_extra_directives["Requirements"]
            self.job_header_dict["Requirements"] = f"{requirement} && ({user})"


def _tls_files(security: Any) -> list[str]:
    if not security:
        return []
    config = security.get_tls_config_for_role("worker")
    return [
        value
        for key, value in config.items()
        if key != "ciphers" and isinstance(value, str) and value and "\n" not in value
    ]


class OverlayCluster(HTCondorCluster):
    """Dask workers as jobs of the overlay HTCondor pool, landing on TARDIS drones.

    Accepts everything ``HTCondorCluster`` accepts, plus

    :param contact_address: address workers use to reach the scheduler (NAT, containers)
    :param lifetime: worker ``--lifetime`` (default ``jobqueue.overlay.lifetime``)
    :param lifetime_stagger: worker ``--lifetime-stagger``
    :param worker_ports: worker listening port range, e.g. ``"40000:40100"``
    :param nanny_ports: nanny listening port range
    :param site: the COBalD/TARDIS site whose drones the workers run on (default
        ``jobqueue.overlay.site``; none: any site)
    """

    job_cls = OverlayJob

    def __init__(self, *args: Any, contact_address: str | None = None, **kwargs: Any):
        # client, cluster manager and scheduler share one thread: with TLS, one
        # connection's OpenSSL error must not end the others' (tls.py)
        clear_openssl_errors_before_tls_io()
        contact_address = contact_address or _config("contact-address")
        if contact_address:
            options = dict(
                kwargs.pop("scheduler_options", None) or _config("scheduler-options") or {}
            )
            options.setdefault("contact_address", contact_address)
            if "port" not in options:
                port = contact_address.rsplit(":", 1)[-1]
                if port.isdigit():
                    options["port"] = int(port)
            kwargs["scheduler_options"] = options
            kwargs["contact_address"] = contact_address
        super().__init__(*args, **kwargs)


def submit_file_arguments(job_script: str) -> list[str]:
    """The worker command line of a rendered job script (for checks and tests)."""
    for line in job_script.splitlines():
        if line.startswith("Arguments = "):
            quoted = line[len("Arguments = ") :].strip().strip('"')
            return shlex.split(quoted.replace("''", "'"))
    return []
