"""A healthy TLS connection must not fail because another one in the same thread did.

OpenSSL keeps one error queue per thread, and ``SSL_get_error`` looks at it before it looks
at the connection: an entry left there by another connection turns "no data yet"
(``SSLWantReadError``) into a fatal error of this one. CPython's ``ssl`` does not clear the
queue before ``SSL_read``/``SSL_write`` (python/cpython#148594) nor always after the error
it raises. Since OpenSSL 3.2 a failed ``write()`` leaves an ``ERR_LIB_SYS`` entry there, and
since Python 3.13 (python/cpython#127257) such an entry is raised as ``OSError(errno)``.

On Debian 13 (Python 3.13, OpenSSL 3.5) that broke every physicist's ``OverlayCluster``
session with TLS: the client, the cluster manager and the scheduler share one event-loop
thread; when a worker's nanny closed its one-shot connection with the scheduler's reply
still in flight, the scheduler's write met EPIPE, and the next read of the session's own
connection to its scheduler ended in ``BrokenPipeError`` (then the next, and so on).

:func:`clear_openssl_errors_before_tls_io` clears the queue before every ``SSLSocket``
read and write of this process, as OpenSSL's manual asks of every caller.
"""

from __future__ import annotations

import ctypes
import functools
import ssl
from collections.abc import Callable
from typing import Any

_PATCHED = "_tardis_sge_dask_clears_openssl_errors"
#: the ``SSLSocket`` methods that reach ``SSL_read``/``SSL_write`` (recv, recv_into and
#: sendall go through these)
_IO_METHODS = ("read", "write", "send")


def _err_clear_error() -> Callable[[], None] | None:
    """OpenSSL's ``ERR_clear_error`` from the libcrypto the ``ssl`` module uses."""
    try:
        import _ssl

        # dlsym on _ssl's handle finds the symbol in its libcrypto; built into the
        # interpreter, the program's own handle does
        library = ctypes.CDLL(getattr(_ssl, "__file__", None))
        function = library.ERR_clear_error
    except (ImportError, OSError, AttributeError, TypeError):
        return None
    function.argtypes = []
    function.restype = None
    return function


def clear_openssl_errors_before_tls_io() -> bool:
    """Clear OpenSSL's error queue before every TLS read and write (idempotent).

    Returns whether the workaround is in place (False where libcrypto's
    ``ERR_clear_error`` cannot be found; nothing is changed then).
    """
    if getattr(ssl.SSLSocket, _PATCHED, False):
        return True
    clear = _err_clear_error()
    if clear is None:
        return False
    for name in _IO_METHODS:
        original = getattr(ssl.SSLSocket, name)

        @functools.wraps(original)
        def cleared(
            self: ssl.SSLSocket, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            clear()
            return _original(self, *args, **kwargs)

        setattr(ssl.SSLSocket, name, cleared)
    setattr(ssl.SSLSocket, _PATCHED, True)
    return True
