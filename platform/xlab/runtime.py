"""Start or join Ray, with token authentication handled explicitly.

Ray 2.60 turns token auth on for new local clusters, and clients of a token cluster must set
``RAY_AUTH_MODE=token`` to send the token (``~/.ray/auth_token`` or ``$RAY_AUTH_TOKEN``). xlab sets
``RAY_AUTH_MODE=token`` unless the user chose a mode, so a local cluster, a ``ray start --head``
cluster and job submission all behave the same.

    from xlab.runtime import init_ray
    init_ray()                         # new local cluster with this machine's cores
    init_ray("10.0.0.5:6379")          # join a cluster (or set RAY_ADDRESS)
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from xlab.errors import XlabError

DEFAULT_AUTH_MODE = "token"


def ensure_auth_mode() -> str:
    """Set ``RAY_AUTH_MODE`` (default ``token``) before Ray is imported or contacted; return it."""
    mode = os.environ.setdefault("RAY_AUTH_MODE", DEFAULT_AUTH_MODE)
    if mode not in ("token", "disabled"):
        raise XlabError(f"RAY_AUTH_MODE={mode!r} is not a Ray auth mode; use 'token' or 'disabled'")
    return mode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (the OS picks it; IPv6 if ``host`` has a colon)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address) is this machine's loopback."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_reachable(address: str, what: str, hint: str, timeout: float = 3.0) -> None:
    """Fail fast with a clear error if nothing listens at ``address`` (host:port or URL).

    Ray and MLflow clients retry an unreachable address for minutes before failing; a TCP probe
    answers in seconds.
    """
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if port is None:
        port = {"http": 80, "https": 443, "ray": 10001}.get(parsed.scheme, 6379)
    if not host:
        raise XlabError(f"{what} address {address!r} has no host; {hint}")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise XlabError(f"cannot reach {what} at {address} ({e.strerror or e}); {hint}") from None


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    include_dashboard: bool = False,
    **kwargs,
) -> dict:
    """Start a local Ray cluster or join one; a no-op if Ray is already initialised.

    ``address`` (or ``$RAY_ADDRESS``) joins an existing cluster; otherwise a new local cluster with
    ``num_cpus`` (default: all cores) starts. Returns ``ray.cluster_resources()``.
    """
    ensure_auth_mode()
    import ray

    if ray.is_initialized():
        return ray.cluster_resources()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address not in ("auto", "local"):
        hint = "start one with `ray start --head` or drop --ray.address to use a local cluster"
        check_reachable(address, "the Ray cluster", hint)
        ray.init(address=address, **kwargs)
    elif address == "auto":
        try:
            ray.init(address="auto", **kwargs)
        except ConnectionError as e:
            raise XlabError(f"no running Ray cluster found for address 'auto' ({e}); start one with `ray start --head`") from None
    else:
        # address="local" never attaches to a cluster that happens to run on this machine.
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            object_store_memory=object_store_memory,
            include_dashboard=include_dashboard,
            **kwargs,
        )
    return ray.cluster_resources()


def shutdown_ray() -> None:
    """Disconnect from (and, for a local cluster, stop) Ray."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def iter_finished(refs: list, *, stall_timeout_s: float, what: str, field: str) -> Iterator[Any]:
    """Values of Ray ``refs`` as they finish; XlabError (naming ``field``) if none finishes for ``stall_timeout_s``.

    A bare ``ray.wait`` loop hangs forever on a hung task or on tasks no node can schedule; here the
    unfinished tasks are cancelled and the error says how many were left.
    """
    import time

    import ray

    pending = list(refs)
    while pending:
        t0 = time.monotonic()
        done, pending = ray.wait(pending, num_returns=1, timeout=stall_timeout_s)
        if not done:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise XlabError(
                f"{what}: {len(pending)} of {len(refs)} tasks unfinished and none finished in "
                f"{time.monotonic() - t0:.0f} s ({field}={stall_timeout_s:g}); tasks hung or the cluster has no free "
                "CPUs (see `ray status`)"
            )
        yield ray.get(done[0])
