"""A minimal binding to libnftables: run nft commands in-process.

We bind the C library with ctypes rather than spawning ``nft`` per change because the
sandbox touches the ruleset on every instance start and stop, and a process per step
would dominate a jail's start-up; Debian's python3-nftables module exists only for the
system Python. This module only runs command text; what the rules say lives in
``firewall.py``. It must never interpolate untrusted text into a command: callers pass
only names and addresses they generated themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from gigmcp.errors import LaunchError


class NftError(LaunchError):
    pass


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _library() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            name = ctypes.util.find_library("nftables") or "libnftables.so.1"
            try:
                lib = ctypes.CDLL(name, use_errno=True)
            except OSError as exc:
                raise NftError("libnftables is not installed (apt-get install nftables)") from exc
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
            lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            _lib = lib
        return _lib


def available() -> str | None:
    try:
        _library()
    except NftError as exc:
        return str(exc)
    return None


class Nft:
    """One libnftables context. Not thread-safe: keep one per thread."""

    def __init__(self) -> None:
        self._lib = _library()
        ctx = self._lib.nft_ctx_new(0)
        if not ctx:
            raise NftError("nft_ctx_new failed")
        self._ctx = ctypes.c_void_p(ctx)
        self._lib.nft_ctx_buffer_output(self._ctx)
        self._lib.nft_ctx_buffer_error(self._ctx)

    def run(self, commands: str) -> str:
        """Run a batch atomically (the kernel applies all of it or none); return output."""
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
        out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
        err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        if rc != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise NftError(message[0] if message else f"nft failed with {rc}")
        return out.decode(errors="replace")

    def close(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = ctypes.c_void_p(None)

    def __enter__(self) -> Nft:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
