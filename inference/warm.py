"""Warm provider clients: each process builds its targets' clients when it starts and renews their credentials
before they expire, so no request pays for building a client (the first failover costs what later ones cost) and
none goes out with an expired STS session or Google token.

`warm_start()` is called once per serving process, after it forked: gunicorn's `post_worker_init`
(config/gunicorn.py) and Celery's `worker_process_init` (config/celery.py). Never at import or in
AppConfig.ready: management commands, migrations and tests build nothing they do not use. It starts one daemon
thread that builds the clients of the platform's provider order and of every active tenant's, then every
ATRIUM_CLIENT_REFRESH_INTERVAL_S renews the credentials due before the next pass or the one after
(inference.providers.base.provider_clients_renew) and builds the clients of tenants added since.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from inference.errors import ProviderMisconfigured
from inference.types import ProviderTarget

logger = logging.getLogger(__name__)

_started_pid: int | None = None
_start_lock = threading.Lock()
_stop = threading.Event()
REWARM_EVERY = 10  # refresher passes between looks for new tenants' targets


def warm_targets() -> list[ProviderTarget]:
    """The targets this process may call: the platform's order (its credentials) and each active tenant's."""
    from django_tenants.utils import get_tenant_model, schema_context

    from inference.targets import parse_target, targets_for_tenant

    targets: list[ProviderTarget] = []
    for key in settings.ATRIUM_PROVIDER_ORDER:
        try:
            targets.append(parse_target(key))
        except ValueError:
            logger.warning("warm: bad target in ATRIUM_PROVIDER_ORDER", extra={"target": key})
    with schema_context("public"):
        tenants = list(get_tenant_model().objects.filter(is_active=True).exclude(schema_name="public"))
    for tenant in tenants:
        try:
            targets.extend(targets_for_tenant(tenant))
        except ValueError:
            logger.warning("warm: a tenant's provider order is not valid", extra={"tenant": tenant.schema_name})
    return targets


def clients_warm(targets: Iterable[ProviderTarget]) -> dict[str, str]:
    """Build (or find cached) each target's client: the SDK client, its connection pool, for Bedrock the signer's
    data and an assumed role's STS session, for Vertex the access token. {target: "ok" | reason}; a target that
    cannot be built is reported, never raised (it is skipped as misconfigured when a request gets to it)."""
    from inference.providers.base import provider_client

    _prime_process()
    outcome: dict[str, str] = {}
    for target in targets:
        name = target.breaker_name
        try:
            client = provider_client(target)
            _prime(client)
            _breaker_seen(target)
            outcome[name] = "ok"
        except ProviderMisconfigured as exc:
            outcome.setdefault(name, exc.message)
        except Exception as exc:  # a warm-up failure must never stop a process from serving
            outcome.setdefault(name, f"{type(exc).__name__}")
            logger.warning("warm: building a provider client failed", extra={"target": target.key}, exc_info=True)
    return outcome


def _prime_process() -> None:
    """What the first call of a process would otherwise pay for, whichever target it goes to: the imports of each
    provider's path, botocore's Bedrock event-stream model (read from disk), the attempt threads, the model
    catalog's snapshot and the Redis connection pool (breakers)."""
    import google.auth.transport.requests  # noqa: F401
    from anthropic.lib.bedrock._stream_decoder import AWSEventStreamDecoder, get_response_stream_shape
    from botocore.auth import SigV4Auth  # noqa: F401
    from botocore.awsrequest import AWSRequest  # noqa: F401

    from inference import attempts
    from inference.catalog.selectors import catalog_entries

    get_response_stream_shape()
    AWSEventStreamDecoder()
    _error_classes()
    attempts.executor_prestart()
    try:
        catalog_entries()
    except Exception:
        logger.warning("warm: the model catalog could not be loaded", exc_info=True)


def _error_classes() -> None:
    """Build one SDK status error: the first one makes pydantic generate the error body's schema (about 250 ms),
    which would otherwise fall on the first failover of the process."""
    import anthropic
    import httpx2

    client = anthropic.Anthropic(api_key="warm-up", base_url="http://127.0.0.1:9", max_retries=0)
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "warm-up"}}
    for status in (400, 429, 503, 529):
        client._make_status_error("warm-up", body=body, response=httpx2.Response(
            status, json=body, request=httpx2.Request("POST", "http://127.0.0.1:9/v1/messages")))
    client.close()


def _breaker_seen(target: ProviderTarget) -> None:
    """Read the target's breaker (no transition): the Redis connection is made and kept in the pool."""
    from inference.breaker import breaker_state

    try:
        breaker_state(target.breaker_name)
    except Exception:
        logger.warning("warm: Redis did not answer", exc_info=True)


def _prime(client: Any) -> None:
    """Open the client's connection to its provider (an unauthenticated POST of `{}` to its base URL, whose answer,
    a 404 or 403, is dropped: no model is called and nothing is billed), so the TCP and TLS handshakes are not in the
    first request's time; and sign a throwaway request with a Bedrock client's keys (botocore loads its signer on
    first use)."""
    import anthropic

    _connect(client)
    if isinstance(client, anthropic.AnthropicBedrock) and client.aws_access_key and client.aws_secret_key:
        import httpx2
        from anthropic.lib.aws._auth import get_auth_headers

        get_auth_headers(method="POST", url=f"{client.base_url}/model/warm/invoke", headers=httpx2.Headers(),
                         data=b"{}",
                         aws_access_key=client.aws_access_key, aws_secret_key=client.aws_secret_key,
                         aws_session_token=client.aws_session_token, region=client.aws_region, profile=None,
                         service_name="bedrock")


def refresh_pass(horizon_s: float | None = None) -> int:
    """Renew every cached client's credentials due within `horizon_s` (default: two refresher intervals)."""
    from inference.providers.base import provider_clients_renew

    interval = float(settings.ATRIUM_CLIENT_REFRESH_INTERVAL_S)
    return provider_clients_renew(2 * interval if horizon_s is None else horizon_s)


def _run() -> None:
    passes = 0
    try:
        while not _stop.is_set():
            try:
                if passes % REWARM_EVERY == 0:
                    started = time.monotonic()
                    outcome = clients_warm(warm_targets())
                    logger.info("provider clients warm", extra={
                        "clients": sum(1 for v in outcome.values() if v == "ok"), "skipped": len(outcome) - sum(
                            1 for v in outcome.values() if v == "ok"),
                        "ms": round((time.monotonic() - started) * 1000, 1)})
                refresh_pass()
            except Exception:
                logger.warning("warm: a refresher pass failed", exc_info=True)
            finally:
                close_old_connections()
            passes += 1
            _stop.wait(float(settings.ATRIUM_CLIENT_REFRESH_INTERVAL_S))
    finally:
        connection.close()


def warm_start() -> threading.Thread | None:
    """Start this process's warm-up and refresher thread (once per process; ATRIUM_WARM_CLIENTS=false: never)."""
    global _started_pid
    if not settings.ATRIUM_WARM_CLIENTS:
        return None
    with _start_lock:
        if _started_pid == os.getpid():
            return None
        _started_pid = os.getpid()
    _stop.clear()
    thread = threading.Thread(target=_run, name="provider-clients", daemon=True)
    thread.start()
    return thread


def warm_stop() -> None:
    _stop.set()


def _connect(client: Any) -> None:
    timeout = min(float(settings.ATRIUM_CONNECT_TIMEOUT_S), 5.0)
    try:
        pool = getattr(client, "_pool", None)  # the Anthropic API's direct path (inference/providers/anthropic_api)
        if pool is not None:
            response = pool.urlopen("POST", "/", body=b"{}", headers={"content-type": "application/json"},
                                    retries=False, redirect=False, timeout=timeout, preload_content=True)
            response.release_conn()
        else:
            client._client.post(str(client.base_url), content=b"{}", headers={"content-type": "application/json"},
                                timeout=timeout).close()
    except Exception as exc:  # an unreachable provider is the breaker's business, when a request gets there
        logger.info("warm: no connection to a provider", extra={"reason": type(exc).__name__})
