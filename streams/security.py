"""Kafka client security from :class:`ripple.settings.Settings`: one source for aiokafka and Faust.

Four protocols, as Kafka names them (``RIPPLE_SECURITY_PROTOCOL``):

=================  ==========================================================================
``PLAINTEXT``      no authentication, no encryption (the default; loopback and private networks)
``SSL``            TLS; the broker's certificate is checked against ``RIPPLE_SSL_CAFILE`` (or the
                   system CAs); ``RIPPLE_SSL_CERTFILE``/``RIPPLE_SSL_KEYFILE`` add a client certificate
``SASL_PLAINTEXT`` SASL authentication (``RIPPLE_SASL_MECHANISM``: ``SCRAM-SHA-256``, ``SCRAM-SHA-512``
                   or ``PLAIN``) with ``RIPPLE_SASL_USERNAME``/``RIPPLE_SASL_PASSWORD``, no encryption
``SASL_SSL``       SASL over TLS (the production choice)
=================  ==========================================================================

:func:`kafka_client_kwargs` gives the keyword arguments of ``AIOKafkaProducer``,
``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``; :func:`faust_app_kwargs` gives those of
``faust.App`` (``broker_credentials``).  Both are empty / PLAINTEXT for the default settings, so
callers can always splat them.  The password is read from its ``SecretStr`` only here and is never
part of a ``repr`` or a log line.

>>> from types import SimpleNamespace
>>> kafka_client_kwargs(SimpleNamespace(security_protocol="PLAINTEXT"))
{}
>>> from pydantic import SecretStr
>>> s = SimpleNamespace(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
...                     sasl_username="ripple", sasl_password=SecretStr("s3cret"))
>>> kw = kafka_client_kwargs(s)
>>> kw["security_protocol"], kw["sasl_mechanism"], kw["sasl_plain_username"], kw["sasl_plain_password"]
('SASL_PLAINTEXT', 'SCRAM-SHA-512', 'ripple', 's3cret')
>>> describe(s)
'SASL_PLAINTEXT (SCRAM-SHA-512 as ripple)'
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class SecurityConfigError(ValueError):
    """The security settings are incomplete or contradictory (raised before any connection)."""


def _get(settings: Any, name: str, default: Any = None) -> Any:
    return getattr(settings, name, default)


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def protocol(settings: Any) -> str:
    """The validated ``security_protocol`` (upper case)."""
    proto = str(_get(settings, "security_protocol", "PLAINTEXT") or "PLAINTEXT").upper()
    if proto not in PROTOCOLS:
        raise SecurityConfigError(f"security_protocol must be one of {', '.join(PROTOCOLS)}, not {proto!r}")
    return proto


def _sasl(settings: Any) -> tuple[str, str, str]:
    mechanism = str(_get(settings, "sasl_mechanism", "SCRAM-SHA-512") or "SCRAM-SHA-512").upper()
    if mechanism not in SASL_MECHANISMS:
        raise SecurityConfigError(f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, not {mechanism!r}")
    username, password = _get(settings, "sasl_username"), _secret(_get(settings, "sasl_password"))
    if not username or not password:
        raise SecurityConfigError("SASL needs both sasl_username and sasl_password (RIPPLE_SASL_USERNAME/_PASSWORD)")
    return mechanism, str(username), password


def ssl_context(settings: Any) -> ssl.SSLContext | None:
    """A client TLS context for SSL / SASL_SSL (``None`` otherwise).

    Verifies the broker certificate and host name (``ssl_check_hostname``, default true) against
    ``ssl_cafile`` or the system CAs; loads ``ssl_certfile``/``ssl_keyfile`` for mutual TLS.
    """
    if not protocol(settings).endswith("SSL"):
        return None
    cafile, certfile, keyfile = (_get(settings, n) for n in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"))
    for name, path in (("ssl_cafile", cafile), ("ssl_certfile", certfile), ("ssl_keyfile", keyfile)):
        if path is not None and not Path(path).is_file():
            raise SecurityConfigError(f"{name} {str(path)!r} is not a readable file")
    if keyfile and not certfile:
        raise SecurityConfigError("ssl_keyfile needs ssl_certfile")
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = bool(_get(settings, "ssl_check_hostname", True))
    if certfile:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None,
                            password=_secret(_get(settings, "ssl_key_password")))
    return ctx


def kafka_client_kwargs(settings: Any) -> dict[str, Any]:
    """Security keyword arguments for aiokafka clients (empty for PLAINTEXT)."""
    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": proto}
    if proto.startswith("SASL"):
        mechanism, username, password = _sasl(settings)
        kwargs.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    ctx = ssl_context(settings)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    return kwargs


def faust_app_kwargs(settings: Any) -> dict[str, Any]:
    """``faust.App`` keyword arguments: ``broker_credentials`` for SSL / SASL (empty for PLAINTEXT).

    Faust turns them back into the same aiokafka arguments for its consumer, producer and the
    admin requests that create its changelog topics.
    """
    import faust

    proto = protocol(settings)
    if proto == "PLAINTEXT":
        return {}
    ctx = ssl_context(settings)
    if proto == "SSL":
        return {"broker_credentials": faust.SSLCredentials(ctx)}
    mechanism, username, password = _sasl(settings)
    creds = faust.SASLCredentials(username=username, password=password, ssl_context=ctx, mechanism=mechanism)
    return {"broker_credentials": creds}


def describe(settings: Any) -> str:
    """One log-safe line: protocol, mechanism and user (never the password)."""
    proto = protocol(settings)
    if proto.startswith("SASL"):
        return f"{proto} ({str(_get(settings, 'sasl_mechanism', 'SCRAM-SHA-512')).upper()} as {_get(settings, 'sasl_username')})"
    return proto
