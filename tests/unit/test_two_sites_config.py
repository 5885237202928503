"""``configs/two-sites.yaml``: PHYSnet's Grid Engine preferred over the SLURM cluster, each
with its quota, in one daemon; it passes ``check`` (the host files aside, as physnet.yaml)."""

from __future__ import annotations

from pathlib import Path

from tardis_sge_dask.check import check

TWO_SITES = Path(__file__).parents[2] / "configs" / "two-sites.yaml"


def test_the_two_site_example_passes_check():
    assert check(TWO_SITES, check_files=False) == []


def test_the_sites_come_in_the_order_of_preference_with_quotas_and_spill_after():
    text = TWO_SITES.read_text()
    sites = text.index("  Sites:\n")
    assert text.index("- name: PHYSnet", sites) < text.index("- name: hummel", sites)
    assert "adapter: SGE" in text and "adapter: SlurmBatch" in text
    assert text.count("quota: ") == 2
    assert "spill_after: 900" in text
