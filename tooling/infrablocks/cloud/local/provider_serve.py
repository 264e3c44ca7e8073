"""Serving the local-cloud provider to many Terraform processes from one process.

Terraform normally starts a provider itself, several times per command (go-plugin's managed
mode: a new process, a TLS certificate exchange, the provider's imports, every time). A tool
that runs many Terraform commands can instead start the provider once and hand its address to
every Terraform process in ``TF_REATTACH_PROVIDERS`` (go-plugin's unmanaged mode, the one
Terraform's own SDK test harness uses): Terraform then dials the running provider over a unix
socket and never starts or stops it.

This module is the serving side (``python -m infrablocks.cloud.local.provider --serve``):

- the gRPC services Terraform's go-plugin client needs (tfplugin6 ``Provider``, go-plugin's
  ``GRPCController`` and ``GRPCStdio``), on a unix socket in a fresh 0700 directory, without
  TLS: go-plugin's reattach client never negotiates it, and the socket's directory admits only
  the user;
- one line on stdout once it serves: ``{"reattach": {SOURCE: {...}}}``, the value for
  ``TF_REATTACH_PROVIDERS`` (``"Test": true``: go-plugin then never kills the process when a
  Terraform command ends);
- ``StopProvider`` (Terraform's Ctrl-C) and ``GRPCController.Shutdown`` are acknowledged and
  otherwise ignored: other Terraform processes are using the same provider, and the operations
  in flight finish and reach their state, as in :func:`provider._finish_operations_on_stop`;
- its lifetime belongs to the process that started it (``infrablocks.terraform.reattach``):
  SIGTERM (or SIGINT) stops it, after the calls in flight have finished (at most
  ``STOP_GRACE_SECONDS``). Its stdin is a pipe only the starter holds: at end of file the
  starter is gone without stopping it, and it serves on until no call has come for
  ``LINGER_SECONDS`` (a Terraform the starter left finishing on its own still reaches it),
  then stops the same way.

Requests share nothing but the cloud handle: the framework makes a new resource object per
call, and :class:`~infrablocks.cloud.local.control.LocalCloud` holds the cloud's file lock per
thread. The process serves one cloud root (``LOCALCLOUD_ROOT`` of its own environment); a
provider block configuring another ``root`` is refused (see ``LocalCloudProvider``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures
from typing import Any

# Terraform runs up to 10 operations at once per command (-parallelism) and the tool runs
# several commands at once; every call in flight holds one worker.
MAX_WORKERS = 64
STOP_GRACE_SECONDS = 60.0
# With its starter gone, serve on while Terraform processes it left behind still call.
LINGER_SECONDS = 30.0
SOCKET_NAME = "provider.sock"


def reattach_config(source: str, socket_path: str, pid: int) -> dict[str, Any]:
    """The ``TF_REATTACH_PROVIDERS`` value naming one provider (go-plugin's ReattachConfig)."""
    return {source: {"Protocol": "grpc", "ProtocolVersion": 6, "Pid": pid, "Test": True,
                     "Addr": {"Network": "unix", "String": socket_path}}}


def serve(provider: Any, *, linger: float | None = None) -> None:
    """Serve ``provider`` (a ``tf.iface.Provider``) until told to stop (see the module
    docstring); returns once the calls in flight have finished. ``linger``: seconds without a
    call after which an orphaned server stops (default ``LINGER_SECONDS``)."""
    linger = LINGER_SECONDS if linger is None else linger
    import grpc
    from tf.gen import grpc_controller_pb2 as controller_pb
    from tf.gen import grpc_controller_pb2_grpc as controller_rpc
    from tf.gen import grpc_stdio_pb2_grpc as stdio_rpc
    from tf.gen import tfplugin_pb2_grpc as rpc
    from tf.provider import ProviderServicer

    class Controller(controller_rpc.GRPCControllerServicer):
        def Shutdown(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC name
            return controller_pb.Empty()   # the starter decides when this process ends

    class Stdio(stdio_rpc.GRPCStdioServicer):
        def StreamStdio(self, request: Any, context: Any) -> Any:  # noqa: N802
            return iter(())

    activity = _Activity()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=MAX_WORKERS),
                         interceptors=[activity])
    rpc.add_ProviderServicer_to_server(ProviderServicer(provider), server)
    controller_rpc.add_GRPCControllerServicer_to_server(Controller(), server)
    stdio_rpc.add_GRPCStdioServicer_to_server(Stdio(), server)

    directory = tempfile.mkdtemp(prefix="infrablocks-provider-")   # 0700
    socket_path = os.path.join(directory, SOCKET_NAME)
    stop = threading.Event()
    orphaned = threading.Event()
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        server.add_insecure_port(f"unix://{socket_path}")
        server.start()
        threading.Thread(target=_watch_stdin, args=(orphaned,), daemon=True).start()
        line = json.dumps({"reattach": reattach_config(provider.full_name(), socket_path,
                                                      os.getpid())})
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        os.dup2(2, 1)   # anything printed later goes to the log, not to a closed pipe
        while not stop.wait(0.5):
            if orphaned.is_set() and activity.idle_for() >= linger:
                break
        server.stop(grace=STOP_GRACE_SECONDS).wait()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
        with contextlib.suppress(OSError):
            os.rmdir(directory)


class _Activity:
    """A gRPC server interceptor counting the calls in flight and when the last one ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since the last call ended; 0 while one is in flight."""
        with self._lock:
            return 0.0 if self._active else time.monotonic() - self._last

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def behavior(request: Any, context: Any) -> Any:
            with self._lock:
                self._active += 1
            try:
                return inner(request, context)
            finally:
                with self._lock:
                    self._active -= 1
                    self._last = time.monotonic()

        return handler._replace(unary_unary=behavior)


def _watch_stdin(orphaned: threading.Event) -> None:
    """Set ``orphaned`` at end of file on stdin: the starter is gone without stopping us."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    orphaned.set()
