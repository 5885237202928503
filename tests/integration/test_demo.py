"""``tardis-sge-dask demo``: the whole loop on this machine, as a new user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_demo_computes_and_leaves_no_drone_behind(tmp_path):
    # the installed console script, as the README tells a new user to run it
    script = Path(sys.executable).with_name("tardis-sge-dask")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tardis_sge_dask"]
    result = subprocess.run(
        [*command, "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "tasks computed:        40/40 (result right)" in out
    started = int(re.search(r"drones started:\s+(\d+)", out).group(1))
    assert started >= 1
    assert re.search(r"time to first worker:\s+\d+\.\d s", out)
    assert "drones left:           0" in out
    assert "workers left:          0" in out
    assert out.rstrip().endswith("demo succeeded")
    # not a terminal: plain progress lines, no carriage returns
    assert "\r" not in out and re.search(r"\] tasks \d+/40 \| demand", out)
    # nothing of the demo survives it
    leftovers = subprocess.run(
        ["pgrep", "-f", f"{tmp_path}/tardis-sge-dask-demo-"], capture_output=True, text=True
    )
    assert leftovers.stdout == ""


def test_demo_fails_clearly_on_a_config_it_cannot_run(tmp_path):
    config = tmp_path / "sge.yaml"
    config.write_text(
        (ROOT / "configs" / "local.yaml").read_text().replace("adapter: Local", "adapter: SGE")
    )
    result = subprocess.run(
        [sys.executable, "-m", "tardis_sge_dask", "demo", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert "the demo runs drones only on this machine (adapter: Local)" in result.stdout
    assert "demo FAILED" in result.stdout
