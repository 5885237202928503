"""The controller and its sources load from a COBalD YAML config through their tags."""

from __future__ import annotations

from cobald.daemon.core.config import load

from tardis_sge_dask.demand.controller import DaskDemandController
from tardis_sge_dask.demand.dask_scheduler import DaskSchedulerDemand
from tardis_sge_dask.demand.htcondor import CondorQueueDemand

CONFIG = """
pipeline:
  - !DaskDemandController
    interval: 15
    idle_time: 600
    max_new_cores: 64
    machine_types:
      idefix.q: {Cores: 8, Memory: 32}
      graphix.q: {Cores: 16, Memory: 64, GPUs: 2}
    source: !CondorQueueDemand
      executor: !TardisShellExecutor {}
      schedds: [overlay-schedd-1.physnet, overlay-schedd-2.physnet]
      output_format: json
  - __type__: tests.unit.test_controller.FakeDrone
    cores: 8
---
pipeline:
  - !DaskDemandController
    machine_types: {local: {Cores: 2, Memory: 4}}
    source: !DaskSchedulerDemand
      address: tcp://127.0.0.1:8786
      security: {tls_ca_file: /etc/dask/ca.pem, require_encryption: false}
  - __type__: tests.unit.test_controller.FakeDrone
"""


def load_pipeline(tmp_path, text):
    path = tmp_path / "cobald.yaml"
    path.write_text(text)
    with load(str(path)) as config:
        # keys are the section plugins; the pipeline is a list of built objects
        return {plugin.section: value for plugin, value in config.items()}


def test_htcondor_mode_config_builds_the_controller(tmp_path):
    config = load_pipeline(tmp_path, CONFIG.split("---")[0])
    controller = config["pipeline"][0]
    assert isinstance(controller, DaskDemandController)
    assert controller.interval == 15 and controller.max_new_cores == 64
    assert isinstance(controller.source, CondorQueueDemand)
    assert controller.source.schedds == ["overlay-schedd-1.physnet", "overlay-schedd-2.physnet"]
    assert controller.source.output_format == "json"


def test_direct_mode_config_builds_the_controller(tmp_path):
    config = load_pipeline(tmp_path, CONFIG.split("---")[1])
    controller = config["pipeline"][0]
    assert isinstance(controller.source, DaskSchedulerDemand)
    assert controller.source.address == "tcp://127.0.0.1:8786"
    assert controller.source.security.tls_ca_file == "/etc/dask/ca.pem"
