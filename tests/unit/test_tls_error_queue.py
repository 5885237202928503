"""A TLS connection with nothing to read is not broken by another connection's OpenSSL error.

Seen on Debian 13 (Python 3.13, OpenSSL 3.5): the physicist's OverlayCluster session ended
in ``BrokenPipeError`` on its own scheduler connection as soon as a nanny closed a
connection with the scheduler's reply in flight (tardis_sge_dask/dask/tls.py).
"""

from __future__ import annotations

import ctypes
import socket
import ssl
import subprocess
import sys
import textwrap
import threading

import pytest
from distributed.security import Security

from tardis_sge_dask.dask.tls import _err_clear_error, clear_openssl_errors_before_tls_io

PROBE = textwrap.dedent(
    """
    import ctypes, errno, socket, ssl, sys, threading, _ssl
    from distributed.security import Security
    if sys.argv[1] == "cleared":
        from tardis_sge_dask.dask.tls import clear_openssl_errors_before_tls_io
        assert clear_openssl_errors_before_tls_io()
    security = Security.temporary()
    server_ctx = security.get_listen_args("scheduler")["ssl_context"]
    client_ctx = security.get_connection_args("client")["ssl_context"]
    a, b = socket.socketpair()
    server = {}
    t = threading.Thread(target=lambda: server.setdefault(
        "tls", server_ctx.wrap_socket(a, server_side=True)))
    t.start()
    client = client_ctx.wrap_socket(b)
    t.join()
    server["tls"].send(b"ok")
    assert client.recv(2) == b"ok"
    client.setblocking(False)
    # what a failed write() of another connection leaves behind with OpenSSL >= 3.2
    crypto = ctypes.CDLL(_ssl.__file__)
    crypto.ERR_new()
    crypto.ERR_set_debug(b"test", 1, b"write")
    crypto.ERR_set_error(2, errno.EPIPE, None)
    try:
        client.recv(1)
    except ssl.SSLWantReadError:
        print("want-read")
    except OSError as error:
        print("broken:", repr(error))
    """
)


def openssl_can_raise() -> bool:
    try:
        import _ssl

        crypto = ctypes.CDLL(_ssl.__file__)
        return all(hasattr(crypto, name) for name in ("ERR_new", "ERR_set_debug", "ERR_set_error"))
    except (ImportError, OSError, TypeError):
        return False


pytestmark = pytest.mark.skipif(
    not openssl_can_raise(), reason="needs OpenSSL 3's ERR_new/ERR_set_error to plant an error"
)


def run_probe(mode: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_a_stale_error_of_another_connection_breaks_a_healthy_read_without_the_workaround():
    # the bug itself, so that the workaround is dropped when Python clears the queue itself
    # (python/cpython#148594): BrokenPipeError on 3.13 with OpenSSL >= 3.2, an SSLError before
    assert run_probe("plain").startswith("broken:")


def test_with_the_workaround_a_healthy_read_only_waits_for_data():
    assert run_probe("cleared") == "want-read"


def test_the_workaround_is_idempotent_and_keeps_tls_working():
    assert _err_clear_error() is not None
    assert clear_openssl_errors_before_tls_io()
    read = ssl.SSLSocket.read
    assert clear_openssl_errors_before_tls_io()
    assert ssl.SSLSocket.read is read
    security = Security.temporary()
    server_ctx = security.get_listen_args("scheduler")["ssl_context"]
    client_ctx = security.get_connection_args("client")["ssl_context"]
    a, b = socket.socketpair()
    server: dict[str, ssl.SSLSocket] = {}
    thread = threading.Thread(
        target=lambda: server.setdefault("tls", server_ctx.wrap_socket(a, server_side=True))
    )
    thread.start()
    with client_ctx.wrap_socket(b) as client:
        thread.join()
        client.sendall(b"ping")
        assert server["tls"].recv(4) == b"ping"
        server["tls"].send(b"pong")
        buffer = bytearray(4)
        assert client.recv_into(buffer) == 4 and buffer == b"pong"
        server["tls"].close()


def test_overlay_cluster_puts_the_workaround_in_place(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
            import ssl
            from tardis_sge_dask.dask import OverlayCluster
            print(getattr(ssl.SSLSocket, "_tardis_sge_dask_clears_openssl_errors", False))
            cluster = OverlayCluster(cores=1, memory="1GB", disk="1GB",
                                     scheduler_options={"dashboard_address": ":0", "port": 0})
            print(getattr(ssl.SSLSocket, "_tardis_sge_dask_clears_openssl_errors", False))
            cluster.close()
            """
            ),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    assert out == ["False", "True"]
