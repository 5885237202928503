"""Talking to a Dask scheduler over distributed's plain RPC, for every module that does.

The demand source (direct mode), the Dask batch-system adapter and ``status`` all ask the
same scheduler the same questions. No ``Client`` is registered, so the COBalD daemon does
not appear as a user of the cluster and holds no futures.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

from distributed.core import rpc
from distributed.security import Security


def make_security(security: dict[str, Any] | None) -> Security | None:
    """``Security`` from a config mapping (tls_ca_file, tls_client_cert, tls_client_key)."""
    if not security:
        return None
    return Security(**security)


@asynccontextmanager
async def scheduler_rpc(address: str, security: Security | None = None, timeout: float = 10):
    """A short-lived RPC connection to the scheduler."""
    args = security.get_connection_args("client") if security else {}
    remote = rpc(address, connection_args=args, timeout=timeout)
    try:
        yield remote
    finally:
        await remote.close_rpc()


async def scheduler_state(
    address: str,
    security: Security | None = None,
    timeout: float = 10,
    target_duration: str | float | None = None,
) -> dict[str, Any]:
    """One consistent-enough view: wanted workers, connected workers and their load."""
    async with scheduler_rpc(address, security, timeout) as remote:

        async def calls() -> tuple:
            target = await remote.adaptive_target(target_duration=target_duration)
            identity = await remote.identity()
            processing = await remote.processing()
            return target, identity, processing

        target, identity, processing = await asyncio.wait_for(calls(), timeout=timeout)
    workers = {}
    for address_, info in identity.get("workers", {}).items():
        workers[address_] = {
            "name": str(info.get("name", address_)),
            "nthreads": int(info.get("nthreads") or 0),
            "memory_limit": int(info.get("memory_limit") or 0),
            "status": info.get("status", "running"),
            "managed_bytes": int((info.get("metrics") or {}).get("managed_bytes", 0) or 0),
            "processing": len(processing.get(address_, ()) or ()),
            "resources": dict(info.get("resources") or {}),
        }
    return {"target": int(target), "workers": workers}
