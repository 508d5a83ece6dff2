"""The client a request comes from: the peer, or behind trusted proxies the rightmost address they did not add."""

from __future__ import annotations

import pydantic
import pytest

from auth_service.security.client_address import UNKNOWN_CLIENT, ClientAddresses, parse_address
from auth_service.settings import Settings

INGRESS = ClientAddresses(["10.0.0.0/8", "192.0.2.1"])


def test_the_peer_is_the_client_when_no_proxy_is_trusted() -> None:
    assert ClientAddresses([]).resolve("203.0.113.7", ["198.51.100.1"]) == "203.0.113.7"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    assert INGRESS.resolve("203.0.113.7", ["198.51.100.1"]) == "203.0.113.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client() -> None:
    # The client wrote the first two itself; the ingress appended the third, where it was reached from.
    assert INGRESS.resolve("10.1.2.3", ["1.1.1.1, 2.2.2.2, 198.51.100.9"]) == "198.51.100.9"


def test_trusted_hops_are_skipped_and_several_headers_read_in_order() -> None:
    assert INGRESS.resolve("10.1.2.3", ["6.6.6.6, 198.51.100.9", "192.0.2.1, 10.9.9.9"]) == "198.51.100.9"


def test_when_every_hop_is_trusted_the_leftmost_is_the_client() -> None:
    assert INGRESS.resolve("10.1.2.3", ["10.4.4.4, 10.5.5.5"]) == "10.4.4.4"


def test_a_trusted_peer_without_the_header_is_itself_the_client() -> None:
    assert INGRESS.resolve("10.1.2.3", []) == "10.1.2.3"


def test_a_hop_that_is_no_address_stops_the_walk_at_the_last_trusted_one() -> None:
    assert INGRESS.resolve("10.1.2.3", ["198.51.100.9, not-an-address, 10.7.7.7"]) == "10.7.7.7"


def test_ports_and_brackets_are_stripped() -> None:
    assert parse_address("198.51.100.9:4711") == parse_address("198.51.100.9")
    assert INGRESS.resolve("10.1.2.3", ["[2001:db8::1]:4711"]) == "2001:db8::/64"


def test_ipv6_clients_are_counted_by_their_64() -> None:
    first = ClientAddresses([]).resolve("2001:db8:1:2::1", [])
    assert first == ClientAddresses([]).resolve("2001:db8:1:2:ffff::9", []) == "2001:db8:1:2::/64"
    assert ClientAddresses([]).resolve("2001:db8:1:3::1", []) != first


def test_an_ipv4_mapped_peer_is_its_ipv4_address() -> None:
    assert ClientAddresses([]).resolve("::ffff:203.0.113.7", []) == "203.0.113.7"


def test_a_peer_that_is_no_address_is_one_unknown_client() -> None:
    assert ClientAddresses([]).resolve(None, ["198.51.100.1"]) == UNKNOWN_CLIENT
    assert ClientAddresses([]).resolve("unix-socket", []) == UNKNOWN_CLIENT


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "ingress.local", ""])
def test_settings_refuse_a_trusted_proxy_that_is_no_address(entry: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="trusted_proxies"):
        Settings(trusted_proxies=(entry,))
