"""The package's ``!Tags`` of the pipeline: the controller and its demand sources.

The classes themselves take these keys as keyword arguments; the schema is what the
daemon and ``check`` refuse a typo with before any of them is built.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, root_validator

from .base import Section
from .types import NonNegative, Positive, Text


class _Tag(Section):
    class Config:
        arbitrary_types_allowed = True


class DaskDemandControllerTag(_Tag):
    source: Any = Field(..., description="!DaskSchedulerDemand {...} or !CondorQueueDemand {...}")
    interval: Positive = Field(30, description="seconds between two readings")
    machine_types: dict[str, Any] | None = Field(
        None,
        description="{name: {Cores, Memory (GB), GPUs}}",
        doc_default="the pool's TARDIS machine types",
    )
    minimum: NonNegative = Field(0, description="lowest demand in cores")
    maximum: NonNegative | None = Field(
        None, description="highest demand in cores", doc_default="unlimited"
    )
    max_new_cores: NonNegative | None = Field(
        None, description="cap on the cores added per interval", doc_default="no cap"
    )
    idle_time: NonNegative = Field(300, description="seconds an idle drone is kept")
    source_timeout: Positive | None = Field(
        None, description="seconds one reading may take", doc_default="the interval"
    )
    spill_after: Positive | None = Field(
        None,
        description="seconds a site's drones may stay queued before jobs go to the next site",
        doc_default="never (only a full quota spills)",
    )

    @root_validator(skip_on_failure=True)
    def _bounds(cls, values: dict[str, Any]) -> dict[str, Any]:
        maximum = values.get("maximum")
        if maximum is not None and maximum < values.get("minimum", 0):
            raise ValueError("maximum must not be below minimum")
        return values


class DaskSchedulerDemandTag(_Tag):
    address: Text = Field(..., description="the Dask scheduler, tcp://host:8786")
    security: dict[str, Any] | None = Field(
        None, description="tls_ca_file, tls_client_cert, tls_client_key", doc_default="none"
    )
    memory_per_thread: NonNegative = Field(0, description="GB a worker thread needs")
    target_duration: Text | float | None = Field(
        None, description="Dask's adaptive target duration", doc_default="Dask's"
    )
    timeout: Positive = Field(10, description="seconds for one scheduler call")


class CondorQueueDemandTag(_Tag):
    executor: Any = Field(None, description="where condor_q runs", doc_default="the local shell")
    constraint: Text | None = Field(
        None, description="which jobs are Dask workers", doc_default="Dask-worker jobs"
    )
    schedds: list[Text] | None = Field(
        None, description="schedds to ask", doc_default="the local schedd"
    )
    pool: Text | None = Field(None, description="the collector, host:port")
    output_format: Text = Field("long", description="long, json or af")

    @root_validator(skip_on_failure=True)
    def _format(cls, values: dict[str, Any]) -> dict[str, Any]:
        if values.get("output_format") not in ("long", "json", "af"):
            raise ValueError(
                f"output_format must be long, json or af, not {values.get('output_format')!r}"
            )
        return values


class StaticDemandTag(_Tag):
    demand: NonNegative = Field(0, description="cores")
    file: Text | None = Field(None, description="a file holding the number of cores")
    interval: Positive = Field(5, description="seconds between two readings of the file")
