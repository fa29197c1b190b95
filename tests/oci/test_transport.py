"""The HTTP transport under the distribution client: failures that retrying cannot mend are not retried."""

from __future__ import annotations

import socket

import pytest

from compose_kfp.oci.auth import StaticKeychain
from compose_kfp.oci.errors import DistributionError
from compose_kfp.oci.registry import RegistryClient
from compose_kfp.oci.transport import Transport, name_not_resolved


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """The host names of ``.invalid`` (RFC 2606: resolves nowhere) passed to ``socket.getaddrinfo``, in order."""
    seen: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def counting_getaddrinfo(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            seen.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting_getaddrinfo)
    return seen


def test_host_name_that_does_not_resolve_fails_at_once_and_says_so(lookups):
    # issue 20 item 8: a mistyped host was retried for 16.5 s and said "connection failed after 5 retries"
    transport = Transport("no-such-host.invalid:5000", StaticKeychain({}), retries=5, backoff=0.5)
    with pytest.raises(DistributionError) as exc:
        transport.ping()
    assert lookups == ["no-such-host.invalid"]  # one attempt: not retried
    assert str(exc.value) == (
        "cannot reach the registry no-such-host.invalid:5000: the host name no-such-host.invalid does not "
        "resolve (name lookup failed on GET /v2/); check the spelling of the host name")
    assert exc.value.status is None


def test_a_protocol_step_on_a_host_that_does_not_resolve_fails_at_once(lookups):
    client = RegistryClient("no-such-host.invalid:5000", StaticKeychain({}), retries=5, backoff=0.5)
    with pytest.raises(DistributionError, match="the host name no-such-host.invalid does not resolve"):
        client.head_manifest("team/app", "v1")
    assert lookups == ["no-such-host.invalid"]


def test_name_not_resolved_is_told_from_a_temporary_failure_and_a_refusal():
    assert name_not_resolved(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    wrapped = ConnectionError("HTTPConnectionPool: Max retries exceeded")
    wrapped.__cause__ = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert name_not_resolved(wrapped)
    assert not name_not_resolved(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    assert not name_not_resolved(ConnectionRefusedError(111, "Connection refused"))
    assert not name_not_resolved(None)


def test_requests_charset_detector_loads_only_when_an_encoding_is_guessed():
    """Issue 17: importing the registry client does not load charset_normalizer (~40 ms of codecs); guessing the
    encoding of a response that declares none still works, with the real package loaded then."""
    import subprocess
    import sys

    probe = (
        "import sys, importlib.util\n"
        "import compose_kfp.oci.registry\n"
        "assert 'charset_normalizer.api' not in sys.modules, 'loaded at import'\n"
        "assert importlib.util.find_spec('charset_normalizer') is not None\n"
        "import requests\n"
        "r = requests.models.Response(); r._content = 'grüße'.encode('utf-8')\n"
        "assert r.apparent_encoding.lower().replace('_', '-') == 'utf-8', r.apparent_encoding\n"
        "assert 'charset_normalizer.api' in sys.modules\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
