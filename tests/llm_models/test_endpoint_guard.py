"""The SSRF guard on node endpoints, without HTTP. DNS is the `fake_dns` table of conftest.py."""

import ipaddress

import pytest

from llm_models.endpoint_guard import UnsafeEndpoint, address_problem, check_node_endpoint
from llm_models.endpoint_guard import resolve_host as real_resolve_host  # taken before fake_dns replaces it

REFUSED_ALWAYS = [
    "http://169.254.169.254/latest",
    "http://0.0.0.0:8000/v1",
    "http://[::]:8000/v1",
    "http://[fe80::1]/v1",
    "http://[fe80::1%25eth0]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://100.100.100.200/latest",
    "http://[fd00:ec2::254]/latest",
    "http://224.0.0.1/v1",
    "http://[ff02::1]/v1",
    "http://metadata.example.net/v1",
    "ftp://example.com/v1",
    "file:///etc/passwd",
    "gopher://x",
    "javascript:alert(1)",
    "http://user:pass@node.example.com/v1",
    "http://user@node.example.com/v1",
    "http://node.example.com/v1?x=1",
    "http://node.example.com/v1#frag",
    "http:///v1",
    "http://node.example.com:99999/v1",
    "not a url",
    "",
    "http://2130706433/v1",
    "http://0x7f000001/v1",
    "http://0177.0.0.1/v1",
    "http://127.1/v1",
    "http://0x7f.1/v1",
    "http://no-such-host.example.net/v1",
    "http://node.example.com/v 1",
    "http://node.example.com\n/v1",
    "http://node.example.com/v1\x00",
    "http://[2002:a9fe:a9fe::]/v1",  # 6to4 carrying 169.254.169.254
    "http://[64:ff9b:1::a9fe:a9fe]/v1",  # local-use NAT64
]

REFUSED_UNLESS_PRIVATE_ALLOWED = [
    "http://127.0.0.1:8000/v1",
    "http://10.0.0.5/v1",
    "http://172.16.3.4/v1",
    "http://192.168.1.10/v1",
    "http://100.64.0.1/v1",
    "http://[::1]:8000/v1",
    "http://[fc00::1]/v1",
    "http://[::ffff:127.0.0.1]/v1",
    "http://[64:ff9b::a00:5]/v1",
    "http://[::127.0.0.1]/v1",  # IPv4-compatible
    "http://[2002:7f00:1::]/v1",  # 6to4 carrying 127.0.0.1
    "http://localhost:8000/v1",
    "http://private.example.net/v1",
]


@pytest.mark.parametrize("url", REFUSED_ALWAYS + REFUSED_UNLESS_PRIVATE_ALLOWED)
def test_unsafe_endpoints_are_refused(url):
    with pytest.raises(UnsafeEndpoint) as exc:
        check_node_endpoint(url, allow_private=False)

    assert exc.value.code == "unsafe_endpoint"
    assert exc.value.attr == "endpoint_url"


@pytest.mark.parametrize("url", REFUSED_ALWAYS)
def test_link_local_metadata_unspecified_and_malformed_endpoints_are_refused_even_when_private_is_allowed(url):
    with pytest.raises(UnsafeEndpoint):
        check_node_endpoint(url, allow_private=True)


@pytest.mark.parametrize("url", REFUSED_UNLESS_PRIVATE_ALLOWED)
def test_loopback_and_private_endpoints_are_accepted_when_private_is_allowed(url):
    assert check_node_endpoint(url, allow_private=True) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://gpu-7.example.net:8000/v1",
        "https://node.example.com/v1",
        "http://93.184.216.34:8000/v1",
        "http://[2606:2800:220:1:248:1893:25c8:1946]:8000/v1",
        "HTTP://GPU-7.EXAMPLE.NET/v1",
        "http://gpu-7.example.net./v1",
    ],
)
def test_public_endpoints_are_accepted(url):
    assert check_node_endpoint(url, allow_private=False) == url


def test_accepted_endpoint_loses_surrounding_space_and_trailing_slash():
    assert check_node_endpoint("  https://node.example.com/v1/ ", allow_private=False) == "https://node.example.com/v1"


def test_a_name_is_refused_if_any_of_its_addresses_is_private():
    with pytest.raises(UnsafeEndpoint, match="private"):
        check_node_endpoint("http://rebind.example.net/v1", allow_private=False)


def test_a_name_that_resolves_to_nothing_is_refused(fake_dns):
    fake_dns["empty.example.net"] = []

    with pytest.raises(UnsafeEndpoint, match="does not resolve"):
        check_node_endpoint("http://empty.example.net/v1", allow_private=False)


def test_a_name_the_resolver_cannot_encode_is_refused(monkeypatch):
    def refuse(host: str, port: int) -> list:
        raise UnicodeError("label too long")

    monkeypatch.setattr("llm_models.endpoint_guard.resolve_host", refuse)

    with pytest.raises(UnsafeEndpoint, match="does not resolve"):
        check_node_endpoint("http://" + "a" * 70 + ".example.net/v1", allow_private=True)


def test_the_resolver_is_asked_with_the_default_port_of_the_scheme(monkeypatch):
    asked = []

    def resolve(host: str, port: int) -> list:
        asked.append((host, port))
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr("llm_models.endpoint_guard.resolve_host", resolve)

    check_node_endpoint("https://node.example.com/v1", allow_private=False)
    check_node_endpoint("http://node.example.com/v1", allow_private=False)
    check_node_endpoint("http://node.example.com:8000/v1", allow_private=False)

    assert asked == [("node.example.com", 443), ("node.example.com", 80), ("node.example.com", 8000)]


def test_ip_literals_are_not_sent_to_the_resolver(monkeypatch):
    def fail(host: str, port: int) -> list:
        raise AssertionError("an IP literal must not be resolved")

    monkeypatch.setattr("llm_models.endpoint_guard.resolve_host", fail)

    assert check_node_endpoint("http://93.184.216.34/v1", allow_private=False) == "http://93.184.216.34/v1"


def test_the_real_resolver_returns_addresses_of_a_numeric_host():
    # A numeric host needs no DNS server: getaddrinfo answers it locally.
    assert real_resolve_host("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("93.184.216.34", False, False),
        ("2606:2800:220:1:248:1893:25c8:1946", False, False),
        ("127.0.0.1", False, True),
        ("127.0.0.1", True, False),
        ("10.1.2.3", False, True),
        ("10.1.2.3", True, False),
        ("100.64.0.1", True, False),
        ("::1", True, False),
        ("fc00::1", True, False),
        ("169.254.169.254", True, True),
        ("fe80::1", True, True),
        ("0.0.0.0", True, True),
        ("::", True, True),
        ("224.0.0.1", True, True),
        ("100.100.100.200", True, True),
        ("::ffff:127.0.0.1", False, True),
        ("::ffff:93.184.216.34", False, False),
        ("64:ff9b::a01:203", False, True),
        ("64:ff9b::5db8:d822", False, False),
        ("::127.0.0.1", False, True),
        ("2002:7f00:1::", False, True),
        ("2002:5db8:d822::", False, False),
        ("64:ff9b:1::5db8:d822", True, True),
        ("240.0.0.1", False, True),
        ("203.0.113.7", False, True),  # documentation range (TEST-NET-3): not routable on the internet
    ],
)
def test_address_problem(address, allow_private, refused):
    problem = address_problem(ipaddress.ip_address(address), allow_private=allow_private)

    assert (problem is not None) is refused


def test_a_single_label_name_is_judged_by_what_it_resolves_to(fake_dns):
    fake_dns["vllm"] = ["172.18.0.5"]  # a docker-compose service name

    assert check_node_endpoint("http://vllm:8000/v1", allow_private=True) == "http://vllm:8000/v1"
    with pytest.raises(UnsafeEndpoint):
        check_node_endpoint("http://vllm:8000/v1", allow_private=False)


def test_a_name_in_a_documentation_range_is_not_public():
    # 203.0.113.0/24 (TEST-NET-3) is reserved for documentation and never routed on the internet.
    with pytest.raises(UnsafeEndpoint):
        check_node_endpoint("http://docs-range.example.net/v1", allow_private=False)
