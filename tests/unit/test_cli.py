"""Bad input on the command line: one line on stderr, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from peers.cli import EXIT_USAGE, main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["simulate", "--peers", "0"], "peers"),
        (["simulate", "--data", "nosuchset"], "unknown dataset"),
        (["simulate", "--data", "/nonexistent/file.npz"], "file.npz"),
        (["simulate", "--topology", "moebius"], "moebius"),
        (["simulate", "--topology", "kregular:3", "--peers", "5"], "even"),
        (["simulate", "--partition", "dirichlet:-1"], "partition"),
        (["simulate", "--arms", "swarm,oracle"], "oracle"),
        (["simulate", "--data", "heart", "--peers", "9"], "4"),
        (["simulate", "--cut", "2@5"], "PEER@ROUND:BACK_AT_ROUND"),
        (["simulate", "--cut", "2@5:5"], "after ROUND"),
        (["simulate", "--cut", "9@1:3", "--peers", "4"], "peer 9 does not exist"),
        (["simulate", "--cut", "1@1:3", "--cut", "1@4:6"], "only once"),
    ],
)
def test_bad_simulate_input_is_one_line_and_nonzero(argv, needle, capsys, tmp_path):
    code = main([*argv, "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE
    assert err.startswith("medswarm: error:")
    assert needle in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "report.json").exists()


def test_corrupt_npz_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip file")
    code = main(["simulate", "--data", str(bad), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "broken.npz" in err and len(err.splitlines()) == 1


def test_console_script_module_exits_nonzero_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "peers.cli", "simulate", "--peers", "0", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == EXIT_USAGE
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_keygen_writes_a_private_key_and_prints_its_peer_id(tmp_path, capsys):
    from gossip.libp2p_identity import load_key

    key_file = tmp_path / "hospital-a.key"
    assert main(["keygen", "--out", str(key_file)]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("12D3KooW")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_key(key_file).peer_id == printed


def test_keygen_never_overwrites_an_identity(tmp_path, capsys):
    key_file = tmp_path / "a.key"
    assert main(["keygen", "--out", str(key_file)]) == 0
    before = key_file.read_bytes()
    capsys.readouterr()
    code = main(["keygen", "--out", str(key_file)])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "already exists" in err and len(err.splitlines()) == 1
    assert key_file.read_bytes() == before


def test_keygen_into_a_missing_directory_is_a_one_line_error(tmp_path, capsys):
    code = main(["keygen", "--out", str(tmp_path / "no" / "such" / "dir.key")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and err.startswith("medswarm: error:") and len(err.splitlines()) == 1


def test_peer_refuses_an_open_swarm_unless_asked(tmp_path, capsys):
    code = main(["peer", "--key", str(tmp_path / "k.key"), "--site", "0", "--sites", "4",
                 "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "--consortium" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


def test_peer_site_outside_the_split_is_a_one_line_error(tmp_path, capsys):
    code = main(["peer", "--key", str(tmp_path / "k.key"), "--insecure-open-swarm", "--site", "4",
                 "--sites", "4", "--state-dir", str(tmp_path / "s")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "--site 4" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, needle", [
    (["--target-neighbours", "0"], "target neighbours"),
    (["--isolation-wait", "-1"], "isolation_wait"),
    (["--announce", "/ip4/0.0.0.0/tcp/4001"], "not dialable"),
    (["--announce", "/ip4/10.0.0.1/udp/4001"], "--announce must be"),
    (["--bootstrap", "/ip4/10.0.0.1/tcp/4001"], "bootstrap"),
    (["--bootstrap", "SELF"], "this peer itself"),
    (["--bootstrap", "STRANGER"], "not in the consortium"),
])
def test_peer_bad_discovery_options_are_one_line_errors(tmp_path, capsys, extra, needle):
    from gossip.libp2p_identity import generate_key_file

    me = generate_key_file(tmp_path / "k.key").peer_id
    stranger = generate_key_file(tmp_path / "x.key").peer_id
    (tmp_path / "c.toml").write_text(f'[[member]]\nname = "me"\npeer_id = "{me}"\n')
    extra = [{"SELF": f"/ip4/10.0.0.1/tcp/1/p2p/{me}",
              "STRANGER": f"/ip4/10.0.0.1/tcp/1/p2p/{stranger}"}.get(x, x) for x in extra]
    code = main(["peer", "--key", str(tmp_path / "k.key"), "--consortium", str(tmp_path / "c.toml"),
                 "--site", "0", "--sites", "4", "--state-dir", str(tmp_path / "s"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and needle in err and len(err.splitlines()) == 1, err
