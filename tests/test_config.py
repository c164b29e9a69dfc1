import json

import pytest
from conftest import run_cli

from layered_image.config import validate_config, validate_timestamp
from layered_image.platform import validate_platform

VALID = [
    {},
    {"Cmd": None, "Entrypoint": None, "Volumes": None, "Labels": None},
    {"Cmd": ["/bin/sh", "-c", "echo"], "Entrypoint": ["/init"], "Shell": ["/bin/bash", "-c"]},
    {"Env": ["PATH=/bin", "EMPTY="], "WorkingDir": "/srv", "User": "1000:1000"},
    {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}, "9/sctp": {}, "65535/tcp": {}, "0": {}}},
    {"Volumes": {"/data": {}}, "Labels": {"org.opencontainers.image.title": "x"}},
    {"StopSignal": "SIGTERM"},
    {"StopSignal": "TERM"},
    {"StopSignal": "SIGRTMIN+3"},
    {"StopSignal": "9"},
    {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 0, "Timeout": 1000000, "Retries": 0}},
    {"Healthcheck": {"Test": ["NONE"]}},
    {"Healthcheck": {"Test": []}},
    {"ArgsEscaped": False, "OnBuild": ["RUN true"]},
]

INVALID = [
    ({"Cmd": "echo hi"}, "config.Cmd: must be a list of strings"),
    ({"Entrypoint": "/init"}, "config.Entrypoint: must be a list of strings"),
    ({"Shell": "/bin/sh"}, "config.Shell: must be a list of strings"),
    ({"OnBuild": "RUN x"}, "config.OnBuild: must be a list of strings"),
    ({"Cmd": ["ls", 1]}, "config.Cmd[1]: must be a string"),
    ({"Entrypoint": [None]}, "config.Entrypoint[0]: must be a string"),
    ({"Env": "A=1"}, "config.Env: must be a list"),
    ({"Env": ["NOEQUALS"]}, 'config.Env[0]: must be "NAME=value"'),
    ({"Env": ["=value"]}, 'config.Env[0]: must be "NAME=value" with a non-empty NAME'),
    ({"ExposedPorts": ["80/tcp"]}, "config.ExposedPorts: must be an object"),
    ({"ExposedPorts": {"65536/tcp": {}}}, 'config.ExposedPorts["65536/tcp"]: is not PORT'),
    ({"ExposedPorts": {"80/icmp": {}}}, 'config.ExposedPorts["80/icmp"]: is not PORT'),
    ({"ExposedPorts": {"80/tcp": True}}, 'config.ExposedPorts["80/tcp"]: must be {}'),
    ({"ExposedPorts": {"80/tcp": {"a": 1}}}, 'config.ExposedPorts["80/tcp"]: must be {}'),
    ({"Volumes": ["/data"]}, "config.Volumes: must be an object"),
    ({"Volumes": {"/data": "x"}}, 'config.Volumes["/data"]: must be {}'),
    ({"WorkingDir": "srv"}, "config.WorkingDir: must be an absolute path"),
    ({"Labels": {"version": 2}}, "config.Labels.version: label values must be strings"),
    ({"User": 0}, "config.User: must be a string"),
    ({"StopSignal": "SIGFOO"}, "config.StopSignal: must be a signal name"),
    ({"StopSignal": "0"}, "config.StopSignal: must be a signal name"),
    ({"StopSignal": 9}, "config.StopSignal: must be a signal name"),
    ({"Healthcheck": {"Test": ["RUN", "x"]}}, 'config.Healthcheck.Test[0]: must start with "NONE"'),
    ({"Healthcheck": {"Test": "CMD true"}}, "config.Healthcheck.Test: must be a list"),
    ({"Healthcheck": {"Interval": 999}}, "config.Healthcheck.Interval: must be integer nanoseconds"),
    ({"Healthcheck": {"Timeout": "30s"}}, "config.Healthcheck.Timeout: must be integer nanoseconds"),
    ({"Healthcheck": {"StartPeriod": 1.5e9}}, "config.Healthcheck.StartPeriod: must be integer nanoseconds"),
    ({"Healthcheck": {"Retries": -1}}, "config.Healthcheck.Retries: must be a non-negative integer"),
    ({"ArgsEscaped": "yes"}, "config.ArgsEscaped: must be true or false"),
    ({"Entrypiont": ["/init"]}, "config.Entrypiont: unknown key (did you mean 'Entrypoint'?)"),
    ({"cmd": ["/init"]}, "config.cmd: unknown key (did you mean 'Cmd'?)"),
    ({"workingdir": "/"}, "config.workingdir: unknown key (did you mean 'WorkingDir'?)"),
    ({"Frobnicate": 1}, "config.Frobnicate: unknown key; known keys: User"),
]


@pytest.mark.parametrize("config", VALID)
def test_valid_configs_pass(config):
    assert validate_config(config) == []


@pytest.mark.parametrize(("config", "expected"), INVALID)
def test_invalid_configs_name_the_field(config, expected):
    problems = validate_config(config)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected), problems


def test_every_problem_is_reported_one_per_line():
    problems = validate_config({"Cmd": "x", "Env": ["=1", "B"], "WorkingDir": "rel", "Usr": "x"})
    assert len(problems) == 5
    assert any("did you mean 'User'" in p for p in problems)


def test_null_config_is_allowed():
    assert validate_config(None) == []


@pytest.mark.parametrize(
    ("arch", "variant", "ok"),
    [
        ("amd64", None, True),
        ("arm64", "v8", True),
        ("arm", "v7", True),
        ("riscv64", None, True),
        ("x86_64", None, False),
        ("aarch64", None, False),
        ("amd64", "v9", False),
        ("s390x", "v1", False),
    ],
)
def test_architecture_and_variant(arch, variant, ok):
    problems = validate_platform(arch, variant)
    assert (problems == []) is ok, problems
    if arch == "x86_64":
        assert "did you mean amd64" in problems[0]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("now", True),
        ("1970-01-01T00:00:01Z", True),
        ("2024-02-29T12:00:00.123+02:00", True),
        ("2023-02-29T12:00:00Z", False),
        ("yesterday", False),
        ("2024-01-01", False),
        (5, False),
    ],
)
def test_timestamps(value, ok):
    assert (validate_timestamp("created", value) == []) is ok


def test_validate_config_cli(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"Cmd": ["/bin/sh"]}))
    bad.write_text(json.dumps({"Cmd": "sh", "Entrypiont": []}))
    assert run_cli("validate-config", str(good)).returncode == 0
    result = run_cli("validate-config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert lines[0].startswith("config.Entrypiont: unknown key (did you mean 'Entrypoint'?)")
    assert lines[1].startswith("config.Cmd: must be a list of strings")
    (tmp_path / "broken.json").write_text("{")
    result = run_cli("validate-config", str(tmp_path / "broken.json"))
    assert result.returncode == 1 and result.stderr.decode().count("\n") == 1
