"""tardis-sge-dask: lend the idle nodes of a Grid Engine or SLURM site to Dask users.

Drones (pilot jobs) are managed by COBalD/TARDIS; this package adds the batch-site
adapters, the drone pilot, the demand controller and the user side.
"""

from setuptools import find_packages, setup

# The versions of the frameworks we plug into are pinned exactly: the site-adapter,
# controller and pool contracts we rely on are those of these releases.
COBALD = "cobald==0.14.0"
TARDIS = "cobald-tardis==0.9.0"
# The drone image pins the same dask/distributed; tests/unit/test_image_pins.py checks.
DASK_VERSION = "2026.8.0"

setup(
    name="tardis-sge-dask",
    version="0.1.0",
    description="Elastic COBalD/TARDIS drones on Grid Engine and SLURM for Dask users",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["tardis_sge_dask", "tardis_sge_dask.*"]),
    package_data={"tardis_sge_dask": ["pilot/*.sh", "py.typed"]},
    install_requires=[
        COBALD,
        TARDIS,
        f"dask=={DASK_VERSION}",
        f"distributed=={DASK_VERSION}",
        "dask-jobqueue==0.9.0",
        "asyncssh>=2.14",
        "htcondor>=25.0",
        "pyyaml>=6.0",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-asyncio>=0.23",
            "pytest-timeout>=2.3",
            # make lint's checkers, pinned: a newer release brings new findings, not fixes
            "ruff==0.17.6",
            "mypy==2.4.1",
            "types-PyYAML==6.0.12.20261122",
            "numpy",
        ],
    },
    entry_points={
        "cobald.config.yaml_constructors": [
            # each validates the configuration file first (tardis_sge_dask/tags.py)
            "StaticDemand = tardis_sge_dask.tags:StaticDemand",
            "DaskDemandController = tardis_sge_dask.tags:DaskDemandController",
            "CondorQueueDemand = tardis_sge_dask.tags:CondorQueueDemand",
            "DaskSchedulerDemand = tardis_sge_dask.tags:DaskSchedulerDemand",
        ],
        "console_scripts": ["tardis-sge-dask = tardis_sge_dask.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: System :: Distributed Computing",
    ],
)
