"""The daemon scenarios on Grid Engine run with every batch system's in test_batch_systems.py.

Kept only for the name test_faults_daemon.py imports the site section under; new code
imports it from tests/helpers/site_sections.py.
"""

from tests.helpers.site_sections import sge_site_section

__all__ = ["sge_site_section"]
