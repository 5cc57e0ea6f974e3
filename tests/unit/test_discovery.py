"""The discovery decisions (table merge, dials, redial backoff, exchanges) without any I/O."""

from __future__ import annotations

import itertools
import random

import pytest

from gossip.control import MAX_ADDR_CHARS, MAX_PEER_RECORDS, MAX_RECORD_ADDRS, PeerRecord
from peers.discovery import Discovery, DiscoveryConfig, addr_for
from peers.errors import PeerError

MEMBERS = {"me", "a", "b", "c", "d", "e"}


def addr(peer: str, port: int = 4001) -> str:
    return f"/ip4/10.0.0.1/tcp/{port}/p2p/{peer}"


def rec(peer: str, *ports: int) -> PeerRecord:
    return PeerRecord(peer, tuple(addr(peer, p) for p in (ports or (4001,))))


def make(target: int = 4, seed: int = 0, members: set[str] = MEMBERS, me: str = "me",
         **kw: float) -> Discovery:
    return Discovery(me, members.__contains__, DiscoveryConfig(target=target, **kw),
                     [addr(me)], random.Random(seed))


# --- the table --------------------------------------------------------------------------------

def test_records_about_non_members_and_about_itself_are_refused() -> None:
    d = make()

    result = d.merge("a", [rec("a"), rec("stranger"), rec("me", 9999)], now=0.0)

    assert d.known() == ["a"]
    assert result.new == ("a",) and result.refused == 1  # its own record is simply skipped
    assert d.addrs_of("me") == ()
    assert d.stats.records_refused == 1


def test_addresses_must_name_the_records_peer() -> None:
    d = make()

    d.merge("a", [PeerRecord("b", ("/ip4/10.0.0.2/tcp/1/p2p/c", "/ip4/10.0.0.2/tcp/2")),
                  PeerRecord("c", ("/ip4/10.0.0.3/tcp/1/p2p/a",))], now=0.0)

    assert d.addrs_of("b") == ("/ip4/10.0.0.2/tcp/2/p2p/b",)  # the foreign one dropped, id added
    assert d.known() == ["b"]  # c had no address of its own


def test_a_members_own_record_replaces_what_others_said() -> None:
    d = make()
    d.merge("a", [rec("b", 1)], now=0.0)
    d.merge("c", [rec("b", 2)], now=1.0)
    assert d.addrs_of("b") == (addr("b", 2), addr("b", 1))  # hearsay is merged, newest first

    d.merge("b", [rec("b", 3)], now=2.0)
    d.merge("a", [rec("b", 4)], now=3.0)

    assert d.addrs_of("b") == (addr("b", 3),)  # first-hand, then hearsay ignored


def test_addresses_per_member_are_bounded() -> None:
    d = make()
    for port in range(10):
        d.merge("a", [rec("b", port)], now=float(port))

    assert len(d.addrs_of("b")) == MAX_RECORD_ADDRS
    assert d.addrs_of("b")[0] == addr("b", 9)


def test_the_table_is_bounded_and_evicts_hearsay_before_first_hand() -> None:
    members = {f"p{i}" for i in range(10)} | {"me"}
    d = make(members=members, max_peers=3)
    d.merge("p0", [rec("p0")], now=0.0)  # first-hand
    d.merge("p0", [rec("p1")], now=1.0)  # hearsay
    d.merge("p0", [rec("p2")], now=2.0)  # hearsay

    result = d.merge("p0", [rec("p3")], now=3.0)

    assert result.new == ("p3",)
    assert d.known() == ["p0", "p2", "p3"]  # the oldest hearsay went


def test_a_full_table_of_busy_members_drops_new_records() -> None:
    members = {"me", "a", "b", "c"}
    d = make(members=members, max_peers=2)
    d.add_bootstrap("a", addr("a"), now=0.0)
    d.merge("a", [rec("b")], now=0.0)
    d.update_links(["b"], now=0.0)  # connected: not evictable either

    result = d.merge("a", [rec("c")], now=1.0)

    assert result.dropped == 1 and d.known() == ["a", "b"]
    assert d.stats.records_dropped == 1


def test_bootstrap_refuses_itself_strangers_and_a_foreign_address() -> None:
    d = make()
    with pytest.raises(PeerError, match="itself"):
        d.add_bootstrap("me", addr("me"), now=0.0)
    with pytest.raises(PeerError, match="not in the consortium"):
        d.add_bootstrap("stranger", addr("stranger"), now=0.0)
    with pytest.raises(PeerError, match="does not name"):
        d.add_bootstrap("a", addr("b"), now=0.0)


def test_addr_for_appends_or_checks_the_peer_id() -> None:
    assert addr_for("/ip4/1.2.3.4/tcp/1", "a") == "/ip4/1.2.3.4/tcp/1/p2p/a"
    assert addr_for("/ip4/1.2.3.4/tcp/1/p2p/a", "a") == "/ip4/1.2.3.4/tcp/1/p2p/a"
    assert addr_for("/ip4/1.2.3.4/tcp/1/p2p/b", "a") is None


# --- what a peer tells its neighbours ---------------------------------------------------------

def test_records_start_with_its_own_then_connected_members() -> None:
    d = make()
    d.merge("a", [rec("a"), rec("b"), rec("c")], now=0.0)
    d.update_links(["c"], now=0.0)

    records = d.records()

    assert records[0] == PeerRecord("me", (addr("me"),))
    assert records[1].peer_id == "c"
    assert {r.peer_id for r in records} == {"me", "a", "b", "c"}


def test_no_own_record_without_addresses_and_never_too_many_records() -> None:
    members = {f"p{i}" for i in range(40)} | {"me"}
    d = Discovery("me", members.__contains__, DiscoveryConfig(), [], random.Random(0))
    for i in range(40):
        d.merge(f"p{i}", [rec(f"p{i}")], now=0.0)

    records = d.records()

    assert len(records) == MAX_PEER_RECORDS
    assert all(r.peer_id != "me" for r in records)


def test_own_addresses_are_normalised_and_bounded() -> None:
    own = ["/ip4/10.0.0.9/tcp/1", addr("me", 2), addr("other", 3), "/" + "x" * MAX_ADDR_CHARS,
           *(f"/ip4/10.0.0.9/tcp/{p}" for p in range(10, 20))]
    d = Discovery("me", MEMBERS.__contains__, DiscoveryConfig(), own, random.Random(0))

    assert d.own_addrs[:2] == ("/ip4/10.0.0.9/tcp/1/p2p/me", addr("me", 2))
    assert len(d.own_addrs) == MAX_RECORD_ADDRS
    assert all(a.endswith("/p2p/me") for a in d.own_addrs)


def test_an_exchange_is_owed_when_a_link_comes_up_then_only_on_changes_or_periodically() -> None:
    d = make(exchange_gap=1.0, exchange_every=30.0)
    d.update_links(["a"], now=0.0)

    assert d.exchanges(0.0) == ["a"]
    assert d.exchanges(0.5) == []
    d.merge("a", [rec("a")], now=0.5)  # the table changed...
    assert d.exchanges(0.6) == []  # ...but not more often than exchange_gap
    assert d.exchanges(1.0) == ["a"]
    for t in (1.5, 5.0, 20.0):
        d.merge("a", [rec("a")], now=t)  # the same record again: no change, no resend
        assert d.exchanges(t) == []
    assert d.exchanges(31.0) == ["a"]  # periodic
    assert d.stats.exchanges_sent == 3


def test_a_link_that_comes_back_is_owed_an_exchange_again() -> None:
    d = make()
    d.update_links(["a"], now=0.0)
    d.exchanges(0.0)
    d.update_links([], now=1.0)
    d.update_links(["a"], now=2.0)

    assert d.exchanges(2.0) == ["a"]


# --- dialling towards the target --------------------------------------------------------------

def test_known_members_are_dialled_up_to_the_target() -> None:
    d = make(target=2)
    d.merge("a", [rec("a"), rec("b"), rec("c"), rec("d")], now=0.0)
    d.update_links(["a"], now=0.0)

    dials = d.dials(0.0)

    assert len(dials) == 1 and dials[0].peer in {"b", "c", "d"} and not dials[0].redial
    assert d.dials(0.0) == []  # one in flight fills the room
    d.dial_done(dials[0].peer, True, 0.1)
    d.update_links(["a", dials[0].peer], now=0.1)
    assert d.dials(0.2) == []  # target reached


def test_wanted_members_are_dialled_whatever_the_target() -> None:
    # the one-peer graph's partners must be links even when the target is already reached
    d = make(target=1)
    d.want(["c", "d", "me", "stranger"])  # itself and non-members are never wanted
    d.merge("a", [rec("a"), rec("b"), rec("c")], now=0.0)
    d.update_links(["a"], now=0.0)

    assert [x.peer for x in d.dials(0.0)] == ["c"]  # d: no address known yet
    d.dial_done("c", False, 0.1)
    assert d.dials(0.2) == []  # a failed one backs off
    d.merge("a", [rec("d")], now=0.3)
    assert [x.peer for x in d.dials(0.3)] == ["d"]
    d.dial_done("d", True, 0.4)
    d.update_links(["a", "d"], now=0.4)
    assert [x.peer for x in d.dials(100.0)] == ["c"]  # retried after its backoff, never b
    d.dial_done("c", True, 100.1)
    d.update_links(["a", "c", "d"], now=100.1)
    assert d.dials(200.0) == []


def test_the_dial_order_is_seeded() -> None:
    def first_dials(seed: int) -> list[str]:
        d = make(target=3, seed=seed)
        d.merge("a", [rec(p) for p in "abcde"], now=0.0)
        return [x.peer for x in d.dials(0.0)]

    assert first_dials(1) == first_dials(1)
    assert len({tuple(first_dials(s)) for s in range(8)}) > 1


def test_a_member_without_an_address_is_never_dialled() -> None:
    d = make()
    d.update_links(["a"], now=0.0)
    d.update_links([], now=1.0)  # lost, but it dialled in and never sent its record

    assert d.dials(100.0) == []
    assert d.next_due(100.0) is None


def test_a_failed_fill_dial_backs_off() -> None:
    d = make(target=1)
    d.merge("a", [rec("b")], now=0.0)
    (dial,) = d.dials(0.0)

    wait = d.dial_done(dial.peer, False, 0.0)

    assert wait is not None and 0.75 <= wait <= 1.0  # second delay: 1 s, jittered down
    assert d.dials(wait - 0.01) == []
    (again,) = d.dials(wait)
    assert again.peer == "b" and again.attempt == 1


# --- redialling lost neighbours ---------------------------------------------------------------

def test_a_lost_neighbour_is_redialled_with_jittered_exponential_backoff_to_a_cap() -> None:
    d = make(target=1, backoff_initial=0.5, backoff_max=30.0, jitter=0.25)
    d.merge("a", [rec("a")], now=0.0)
    d.update_links(["a"], now=0.0)
    _, down = d.update_links([], now=10.0)
    assert down == ["a"] and d.lost == {"a"}

    now, waits = 10.0, []
    first = d.next_due(now)
    assert first is not None and 10.0 + 0.375 <= first <= 10.5
    assert d.dials(first - 0.001) == []
    now = first
    for failures in range(12):
        (dial,) = d.dials(now)
        assert dial.peer == "a" and dial.redial and dial.attempt == failures
        wait = d.dial_done("a", False, now)
        assert wait is not None
        waits.append(wait)
        assert d.dials(now + wait - 0.001) == []
        now += wait

    for failures, wait in enumerate(waits, start=1):
        base = min(30.0, 0.5 * 2 ** failures)
        assert 0.75 * base <= wait <= base
    assert max(waits) <= 30.0 and waits[-1] >= 22.5  # capped, and still trying
    assert d.stats.redials == 12


def test_a_lost_neighbour_is_redialled_even_when_the_target_is_met() -> None:
    d = make(target=1)
    d.merge("a", [rec("a"), rec("b")], now=0.0)
    d.update_links(["a", "b"], now=0.0)
    d.update_links(["a"], now=1.0)

    dials = d.dials(100.0)

    assert [(x.peer, x.redial) for x in dials] == [("b", True)]


def test_a_neighbour_that_comes_back_is_no_longer_redialled_and_its_backoff_resets() -> None:
    d = make(target=1)
    d.merge("a", [rec("a")], now=0.0)
    d.update_links(["a"], now=0.0)
    d.update_links([], now=1.0)
    assert [x.peer for x in d.dials(5.0)] == ["a"]
    d.dial_done("a", False, 5.0)

    up, _ = d.update_links(["a"], now=6.0)  # it dialled in by itself

    assert up == ["a"] and d.lost == set()
    assert d.dials(1000.0) == []
    d.update_links([], now=1001.0)
    assert d.next_due(1001.0) <= 1001.5  # type: ignore[operator]  # back to the first delay


def test_next_due_is_the_earliest_backoff_or_exchange() -> None:
    d = make(target=1, exchange_every=30.0)
    assert d.next_due(0.0) is None
    d.update_links(["a"], now=0.0)
    assert d.next_due(0.0) == 0.0  # exchange owed now
    d.exchanges(0.0)
    assert d.next_due(0.0) == 30.0


@pytest.mark.parametrize("kw, needle", [
    ({"target": 0}, "target"),
    ({"max_peers": 0}, "max_peers"),
    ({"backoff_initial": 0.0}, "backoff"),
    ({"backoff_initial": 5.0, "backoff_max": 1.0}, "backoff"),
    ({"jitter": 1.0}, "jitter"),
    ({"exchange_gap": 5.0, "exchange_every": 1.0}, "exchange"),
])
def test_bad_config_is_a_peer_error(kw: dict, needle: str) -> None:
    with pytest.raises(PeerError, match=needle):
        DiscoveryConfig(**kw)


# --- several peers: a bootstrap chain becomes a full mesh --------------------------------------

def test_a_bootstrap_chain_becomes_a_full_mesh_by_peer_exchange() -> None:
    names = ["p0", "p1", "p2", "p3", "p4"]
    members = set(names)
    peers = {n: Discovery(n, members.__contains__, DiscoveryConfig(target=4), [addr(n)],
                          random.Random(i)) for i, n in enumerate(names)}
    for prev, nxt in itertools.pairwise(names):
        peers[nxt].add_bootstrap(prev, addr(prev), now=0.0)
    links: set[frozenset[str]] = set()

    def neighbours(n: str) -> list[str]:
        return [m for link in links for m in link if n in link and m != n]

    now = 0.0
    for _ in range(20):  # ticks: dials succeed at once, exchanges arrive at once
        for n, d in peers.items():
            d.update_links(neighbours(n), now)
            for dial in d.dials(now):
                links.add(frozenset({n, dial.peer}))
                d.dial_done(dial.peer, True, now)
            d.update_links(neighbours(n), now)
            for to in d.exchanges(now):
                peers[to].merge(n, d.records(), now)
        now += 0.25

    for n, d in peers.items():
        assert d.connected == members - {n}, n
        assert d.stats.neighbours_seen == members - {n}
    assert all(d.stats.exchanges_sent <= 3 * 4 for d in peers.values())  # no flood


def test_bootstrap_members_are_dialled_whatever_the_target_and_retried_until_linked() -> None:
    d = make(target=1)
    d.add_bootstrap("a", addr("a"), now=0.0)
    d.add_bootstrap("b", addr("b"), now=0.0)
    d.update_links(["c"], now=0.0)  # someone dialled in first: the target is already met

    first = d.dials(0.0)
    assert sorted((x.peer, x.redial) for x in first) == [("a", False), ("b", False)]
    d.dial_done("a", True, 0.1)
    wait = d.dial_done("b", False, 0.1)
    d.update_links(["a", "c"], now=0.1)

    assert d.dials(0.1 + wait - 0.01) == []
    assert [x.peer for x in d.dials(0.1 + wait)] == ["b"]  # retried with backoff
    d.dial_done("b", True, 5.0)
    d.update_links(["a", "b", "c"], now=5.0)
    d.update_links(["a", "c"], now=6.0)
    assert d.lost == {"b"}  # from now on an ordinary neighbour: redialled when lost
