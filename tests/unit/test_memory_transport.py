import pytest

from gossip.errors import TransportError
from gossip.memory import MemoryNetwork
from gossip.transport import Envelope, Transport


def ring3():
    return MemoryNetwork({"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]})


def test_endpoint_implements_transport_protocol():
    assert isinstance(ring3().endpoint("a"), Transport)


def test_send_delivers_in_order_and_drain_empties():
    net = ring3()
    a, b = net.endpoint("a"), net.endpoint("b")
    a.send("b", b"1")
    a.send("b", b"2")
    assert b.drain() == [Envelope("a", b"1"), Envelope("a", b"2")]
    assert b.drain() == []
    assert net.bytes_sent["a"] == 2 and net.messages_sent["a"] == 2


def test_send_to_non_neighbour_is_refused():
    net = MemoryNetwork({"a": ["b"], "b": ["a", "c"], "c": ["b"]})
    with pytest.raises(TransportError, match="not a neighbour"):
        net.endpoint("a").send("c", b"x")


def test_asymmetric_links_are_refused():
    with pytest.raises(TransportError, match="not symmetric"):
        MemoryNetwork({"a": ["b"], "b": []})


def test_oversized_payload_is_refused_and_not_counted():
    net = MemoryNetwork({"a": ["b"], "b": ["a"]}, max_message_bytes=4)
    with pytest.raises(TransportError, match="exceeds"):
        net.endpoint("a").send("b", b"12345")
    assert net.endpoint("b").drain() == []
    assert net.bytes_sent["a"] == 0


def test_closed_transport_refuses_calls_and_receives_nothing():
    net = ring3()
    a, b = net.endpoint("a"), net.endpoint("b")
    b.close()
    a.send("b", b"lost")  # a closed peer simply does not receive
    with pytest.raises(TransportError):
        b.drain()
    with pytest.raises(TransportError):
        b.send("a", b"x")
