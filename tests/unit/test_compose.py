"""Static checks of the Docker demo: docker-compose.yml, the Dockerfile and the entrypoint.

No Docker engine runs here, so these check that the files agree with each other and with
``medswarm peer``: every option a service passes is one the peer's own argparse parser
defines, the entrypoint turns each service into a command that parser accepts, volumes,
ports and addresses are consistent and unique, the bootstrap is the first hospital, the
healthcheck asks the status port, the image installs the pinned CPU torch before the
project and runs as a non-root user. The scenario itself runs in tests/netns.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML (the test extra) reads the compose file")

from gossip.libp2p_identity import Consortium, NodeKey
from peers import cli
from peers.peer_options import add_arguments
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
NAMES = list(SERVICES)
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
#: real peer ids of fresh keys, one per service (the dry runs never read a key file)
FAKE_IDS = {name: NodeKey.generate().peer_id for name in NAMES}


def peer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medswarm peer", add_help=False)
    add_arguments(parser)
    return parser


def medswarm_args(argv, monkeypatch):
    """The options ``medswarm ARGV`` hands to the peer: the real command line, parsed and
    resolved by peers.cli, with the peer itself replaced by a recorder."""
    import peers.peer_cmd

    seen = []
    monkeypatch.setattr(peers.peer_cmd, "run_peer", lambda args: seen.append(args) or 0)
    assert cli.main(argv) == 0
    (args,) = seen
    return args


def option(command, name):
    values = [command[i + 1] for i, arg in enumerate(command) if arg == name]
    assert len(values) == 1, (name, command)
    return values[0]


def entrypoint(env, *args, tmp_path):
    """Run docker/entrypoint.sh as the image would, with the given environment."""
    full = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    full.update(env)
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=full, capture_output=True, text=True, check=False,
                          timeout=60)


def dry_run(tmp_path, name, *, enrolled=NAMES):
    """The peer command the entrypoint would exec for service ``name`` (key and IDs faked)."""
    svc = SERVICES[name]
    key_dir, state_dir, enrol = tmp_path / name / "key", tmp_path / name / "state", tmp_path / "enrol"
    key_dir.mkdir(parents=True)
    enrol.mkdir(exist_ok=True)
    (key_dir / "peer.key").write_bytes(b"not read in a dry run")
    (key_dir / "peer.id").write_text(FAKE_IDS[name] + "\n")
    for other in enrolled:
        (enrol / f"{other}.id").write_text(FAKE_IDS[other] + "\n")
    env = {k: str(v) for k, v in svc["environment"].items()}
    env.update(MEDSWARM_KEY_DIR=str(key_dir), MEDSWARM_STATE_DIR=str(state_dir), MEDSWARM_ENROL_DIR=str(enrol),
               MEDSWARM_DRY_RUN="1", MEDSWARM_ENROL_TIMEOUT="0")
    return entrypoint(env, *svc["command"], tmp_path=tmp_path), state_dir


# ------------------------------------------------------------------ the compose file
def test_four_hospitals_each_with_its_own_heart_site():
    assert len(NAMES) == 4
    sites = []
    for name in NAMES:
        command = SERVICES[name]["command"]
        assert option(command, "--data") == "heart" and option(command, "--partition") == "sites"
        assert option(command, "--sites") == "4"
        sites.append(int(option(command, "--site")))
    assert sorted(sites) == [0, 1, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_every_option_of_a_service_is_one_medswarm_peer_defines(name):
    parser = peer_parser()
    known = {s for action in parser._actions for s in action.option_strings}
    command = [str(c) for c in SERVICES[name]["command"]]
    flags = [arg for arg in command if arg.startswith("-")]
    assert flags and set(flags) <= known, set(flags) - known  # exact names: no abbreviations
    # and the values parse (types, choices), given what the entrypoint adds
    parser.parse_args([*command, "--key", "k", "--state-dir", "s"])


@pytest.mark.parametrize("name", NAMES)
def test_the_entrypoint_turns_each_service_into_a_command_medswarm_accepts(tmp_path, name, monkeypatch):
    proc, state_dir = dry_run(tmp_path, name)
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.splitlines()
    assert argv[0] == "medswarm"
    args = medswarm_args(argv[1:], monkeypatch)  # the real command line, -v and all
    assert args.command == "peer" and args.verbose
    assert args.key == tmp_path / name / "key" / "peer.key" and args.state_dir == state_dir
    assert args.status_port == int(option(SERVICES[name]["command"], "--status-port"))
    consortium = Consortium.from_toml(args.consortium)
    assert len(consortium) == 4 and all(consortium.allows(i) for i in FAKE_IDS.values())
    assert consortium.name_of(FAKE_IDS[name]) == name


@pytest.mark.parametrize("name", NAMES)
def test_the_first_hospital_is_everyone_elses_bootstrap(tmp_path, name, monkeypatch):
    first = NAMES[0]
    boot_name, boot_addr = SERVICES[name]["environment"]["MEDSWARM_BOOTSTRAP"].split("=", 1)
    assert boot_name == first
    assert boot_addr == option(SERVICES[first]["command"], "--listen")
    proc, _ = dry_run(tmp_path, name)
    args = medswarm_args(proc.stdout.splitlines()[1:], monkeypatch)
    expected = [] if name == first else [f"{boot_addr}/p2p/{FAKE_IDS[first]}"]
    assert args.bootstrap == expected


@pytest.mark.parametrize("name", NAMES)
def test_stopped_hospitals_wait_long_enough_for_one_whose_link_came_back(name):
    # a 5 s outage can take TCP up to about 7 s more to notice the link is back (tests/netns)
    assert float(option(SERVICES[name]["command"], "--linger")) >= 20


def test_environment_variables_are_ones_the_entrypoint_reads():
    script = ENTRYPOINT.read_text()
    read = set(re.findall(r"\$\{(MEDSWARM_[A-Z_]+)", script))
    for name in NAMES:
        env = SERVICES[name]["environment"]
        ours = {k for k in env if k.startswith("MEDSWARM_")}
        assert ours <= read, ours - read
        assert env["MEDSWARM_NAME"] == name
        assert env["MEDSWARM_MEMBERS"].split() == NAMES


def test_addresses_are_unique_static_and_what_each_peer_listens_on():
    (net_name, net), = COMPOSE["networks"].items()
    subnet = ipaddress.ip_network(net["ipam"]["config"][0]["subnet"])
    gateway = ipaddress.ip_address(net["ipam"]["config"][0]["gateway"])
    addresses = []
    for name in NAMES:
        address = ipaddress.ip_address(SERVICES[name]["networks"][net_name]["ipv4_address"])
        assert address in subnet and address != gateway
        listen = option(SERVICES[name]["command"], "--listen")
        assert listen == f"/ip4/{address}/tcp/4001"
        addresses.append(address)
    assert len(set(addresses)) == len(addresses)


def test_a_status_port_per_hospital_on_distinct_loopback_host_ports():
    host_ports = []
    for name in NAMES:
        svc = SERVICES[name]
        port = option(svc["command"], "--status-port")
        assert option(svc["command"], "--status-host") == "0.0.0.0"  # reachable through the mapping
        (mapping,) = svc["ports"]
        host_ip, host_port, container_port = mapping.split(":")
        assert host_ip == "127.0.0.1" and container_port == port
        host_ports.append(host_port)
    assert len(set(host_ports)) == len(host_ports)


def test_the_healthcheck_asks_each_hospitals_own_status_endpoint():
    for name in NAMES:
        svc = SERVICES[name]
        test = " ".join(svc["healthcheck"]["test"])
        assert f"http://127.0.0.1:{option(svc['command'], '--status-port')}/status" in test
        assert svc["healthcheck"]["test"][0] == "CMD"


def test_each_hospital_has_its_own_key_and_state_volume_and_shares_only_enrolment():
    declared = set(COMPOSE["volumes"])
    image_volumes = set(json.loads(re.search(r"^VOLUME (\[.*\])$", DOCKERFILE, re.MULTILINE)[1]))
    owners: dict[str, set[str]] = {}
    for name in NAMES:
        targets = {}
        for volume in SERVICES[name]["volumes"]:
            source, target = volume.split(":")[:2]
            assert source in declared and target in image_volumes
            targets[target] = source
            owners.setdefault(source, set()).add(name)
        assert set(targets) == {"/var/lib/medswarm/key", "/var/lib/medswarm/state", "/var/lib/medswarm/enrol"}
    shared = {v for v, users in owners.items() if len(users) > 1}
    assert shared == {"enrol"} and owners["enrol"] == set(NAMES)
    assert set(owners) == declared


def test_the_namespace_runner_reads_the_same_services():
    netns = load_script("netns_swarm")
    scenario = netns.load_scenario(ROOT / "docker-compose.yml")
    assert [s.name for s in scenario.services] == NAMES
    for service in scenario.services:
        assert service.command == tuple(str(c) for c in SERVICES[service.name]["command"])
        assert service.status_url == (f"http://{service.address}:"
                                      f"{option(SERVICES[service.name]['command'], '--status-port')}/status")
        assert {v.split(":")[1] for v in service.volumes} == set(netns.VOLUME_VARS)
    assert str(scenario.gateway) == COMPOSE["networks"]["swarm"]["ipam"]["config"][0]["gateway"]


# ------------------------------------------------------------------ the Dockerfile
def _instructions(text):
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_image_installs_the_pinned_cpu_torch_before_the_project():
    lines = _instructions(DOCKERFILE)
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    assert len(stages) == 2 and lines[stages[0]].endswith("AS build")
    build = lines[stages[0]:stages[1]]
    apt = next(line for line in build if "apt-get install" in line)
    assert "gcc" in apt.split() and "libgmp-dev" in apt.split()
    copy_constraints = next(i for i, line in enumerate(build) if line.startswith("COPY constraints.txt"))
    torch = next(i for i, line in enumerate(build) if "pip install" in line and line.split()[-1] == "torch")
    project = next(i for i, line in enumerate(build) if "pip install" in line and " . " in f"{line} ")
    assert copy_constraints < torch < project
    assert "-c constraints.txt" in build[torch] and "-c constraints.txt" in build[project]
    assert "/whl/cpu" in build[torch]  # the CPU wheel index, not a CUDA build
    pin = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==\d", pin, re.MULTILINE)


def test_the_image_runs_the_entrypoint_as_a_non_root_user():
    lines = _instructions(DOCKERFILE)
    runtime = lines[[i for i, line in enumerate(lines) if line.startswith("FROM ")][-1]:]
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not any("gcc" in line for line in runtime)  # no compilers in the runtime image
    entry = next(line for line in runtime if line.startswith("ENTRYPOINT "))
    (script,) = json.loads(entry.split(" ", 1)[1])
    assert f"COPY docker/entrypoint.sh {script}" in runtime
    assert all(SERVICES[n]["entrypoint"] == [script] for n in NAMES)
    assert os.access(ENTRYPOINT, os.X_OK)


def test_dockerignore_keeps_local_state_and_keys_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "*.key"} <= set(ignored)


# ------------------------------------------------------------------ the entrypoint
def test_first_start_creates_the_key_and_a_restart_reuses_it(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "medswarm"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m peers.cli "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT), "MEDSWARM_NAME": "solo",
           "MEDSWARM_MEMBERS": "solo", "MEDSWARM_KEY_DIR": str(tmp_path / "key"),
           "MEDSWARM_STATE_DIR": str(tmp_path / "state"), "MEDSWARM_ENROL_DIR": str(tmp_path / "enrol"),
           "MEDSWARM_DRY_RUN": "1"}
    first = entrypoint(env, "--site", "0", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    peer_id = (tmp_path / "key" / "peer.id").read_text().strip()
    assert peer_id.startswith("12D3KooW") and (tmp_path / "enrol" / "solo.id").read_text().strip() == peer_id
    assert (tmp_path / "key" / "peer.key").stat().st_mode & 0o077 == 0
    key_bytes = (tmp_path / "key" / "peer.key").read_bytes()
    again = entrypoint(env, "--site", "0", tmp_path=tmp_path)
    assert again.returncode == 0 and "created its key" not in again.stderr
    assert (tmp_path / "key" / "peer.key").read_bytes() == key_bytes


def test_a_member_that_never_enrols_is_a_one_line_error(tmp_path):
    proc, _ = dry_run(tmp_path, NAMES[1], enrolled=NAMES[:3])  # the last one is missing
    assert proc.returncode == 2
    assert NAMES[3] in proc.stderr and "did not enrol" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("medswarm-entrypoint: error:")


@pytest.mark.parametrize("env, needle", [
    ({"MEDSWARM_NAME": ""}, "MEDSWARM_NAME"),
    ({"MEDSWARM_NAME": "a;b"}, "MEDSWARM_NAME"),
    ({"MEDSWARM_NAME": "x", "MEDSWARM_MEMBERS": "a b"}, "not in MEDSWARM_MEMBERS"),
    ({"MEDSWARM_NAME": "a", "MEDSWARM_MEMBERS": "a", "MEDSWARM_ENROL_TIMEOUT": "soon"}, "whole seconds"),
])
def test_bad_entrypoint_settings_are_one_line_errors(tmp_path, env, needle):
    key_dir = tmp_path / "key"
    key_dir.mkdir()
    (key_dir / "peer.key").write_bytes(b"k")
    (key_dir / "peer.id").write_text(FAKE_IDS[NAMES[0]])
    base = {"MEDSWARM_KEY_DIR": str(key_dir), "MEDSWARM_STATE_DIR": str(tmp_path / "s"),
            "MEDSWARM_ENROL_DIR": str(tmp_path / "e"), "MEDSWARM_DRY_RUN": "1"}
    proc = entrypoint({**base, **env}, tmp_path=tmp_path)
    assert proc.returncode == 2 and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_forged_enrolment_file_never_reaches_the_consortium(tmp_path):
    name = NAMES[0]
    proc, state_dir = dry_run(tmp_path, name)
    assert proc.returncode == 0
    (tmp_path / "enrol" / f"{NAMES[2]}.id").write_text('x"\n[[member]]\nname = "evil"\n')
    proc = subprocess.run(["sh", str(ENTRYPOINT)], capture_output=True, text=True, check=False, env={
        "PATH": os.environ["PATH"], "MEDSWARM_NAME": name, "MEDSWARM_MEMBERS": " ".join(NAMES),
        "MEDSWARM_KEY_DIR": str(tmp_path / name / "key"), "MEDSWARM_STATE_DIR": str(state_dir),
        "MEDSWARM_ENROL_DIR": str(tmp_path / "enrol"), "MEDSWARM_DRY_RUN": "1"})
    assert proc.returncode == 2 and "does not hold a peer id" in proc.stderr
    assert "evil" not in (state_dir / "consortium.toml").read_text()
