"""The pure parts of scripts/swarm_status.py: status documents to rows, when to stop, the table."""

from __future__ import annotations

import io

from rich.console import Console

from tests.scripts import load_script

st = load_script("swarm_status")


def doc(state="running", round_=3, **kw):
    base = {"peer_id": "12D3KooWabc", "name": "hospital-a", "site": 0, "round": round_, "state": state,
            "neighbours": ["x", "y"], "suspected": ["y"], "last": {"loss": 0.5, "metric": 0.25, "distance": 0.125},
            "convergence": {"voted": False, "stop_round": None, "reason": None}, "rounds_completed": 3,
            "rejected": {"bad-checksum": 2, "nan": 1}, "bad_control": 0, "updated_at": 0.0}
    base.update(kw)
    return base


def test_a_status_document_becomes_a_row():
    row = st.row_from_status("http://h:1/status", doc())
    assert (row.name, row.state, row.round, row.neighbours, row.suspected) == ("hospital-a", "running", 3, 2, 1)
    assert (row.loss, row.metric, row.distance, row.rejected) == (0.5, 0.25, 0.125, 3)


def test_a_peer_without_a_consortium_name_is_shown_by_its_id_and_a_silent_one_as_unreachable():
    assert st.row_from_status("u", doc(name=None)).name == "12D3KooWabc"
    row = st.row_from_status("http://h:1/status", None, "ConnectionRefusedError")
    assert row.state == "unreachable" and row.name == "h:1" and row.error == "ConnectionRefusedError"


def test_missing_or_null_fields_do_not_break_a_row():
    row = st.row_from_status("u", {"state": "starting", "last": None, "convergence": None, "rejected": None})
    assert row.state == "starting" and row.round is None and row.neighbours == 0 and row.rejected == 0


def test_done_only_when_every_hospital_stopped_or_exited_after_stopping():
    a_stopped = st.row_from_status("a", doc("stopped"))
    b_running = st.row_from_status("b", doc("running"))
    b_gone = st.row_from_status("b", None)
    seen = st.update_seen_stopped([a_stopped, b_running], set())
    assert seen == {"a"} and not st.all_stopped([a_stopped, b_running], seen)
    assert not st.all_stopped([a_stopped, b_gone], seen)  # b vanished without being seen stopped
    seen = st.update_seen_stopped([st.row_from_status("b", doc("stopped"))], seen)
    assert st.all_stopped([st.row_from_status("a", None), b_gone], seen)
    assert not st.all_stopped([], set())


def test_urls_without_a_path_get_the_status_path():
    assert st.status_url("http://127.0.0.1:8081") == "http://127.0.0.1:8081/status"
    assert st.status_url("http://127.0.0.1:8081/") == "http://127.0.0.1:8081/status"
    assert st.status_url("http://h:1/status") == "http://h:1/status"


def test_the_table_shows_each_hospital_with_its_figures_and_stop():
    rows = [st.row_from_status("a", doc("stopped", 7, convergence={"stop_round": 7,
                                                                   "reason": "converged: 4 live members voted"})),
            st.row_from_status("b", None, "timeout")]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(st.render(rows))  # fits a plain terminal
    text = out.getvalue()
    assert "hospital-a" in text and "stopped" in text and "7 converged" in text
    assert "0.250" in text and "2 (1?)" in text and "unreachable" in text and "timeout" in text


def test_watch_redraws_until_all_stopped():
    states = iter([["running", "running"], ["stopped", "running"], ["stopped", "stopped"]])
    current: list[str] = []

    def poll(url):
        if url == "a":
            current[:] = next(states)
        return st.row_from_status(url, doc(current[0 if url == "a" else 1]))

    console = Console(file=io.StringIO(), width=160, color_system=None)
    assert st.watch(["a", "b"], interval=0, timeout=60, console=console, poll=poll)
    try:
        next(states)
        raise AssertionError("polled past the end")
    except StopIteration:
        pass
