"""Whatever a graph, config or conf holds, the answer is exit 0 or one line and exit 1,
never a traceback: hypothesis feeds the command line arbitrary and mutated JSON."""

import json
from pathlib import Path

import pytest
from conftest import DATA, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layered_image.cli import main

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
GRAPH_KEYS = ["path", "references", "narSize", "narHash", "closureSize"]
CONF_KEYS = ["config", "architecture", "store_dir", "from_image", "store_layers", "customisation_layer",
             "repo_tag", "created", "mtime", "uid", "gid", "uname", "gname"]  # fmt: skip
CONFIG_KEYS = ["Cmd", "Entrypoint", "Env", "ExposedPorts", "Volumes", "WorkingDir", "Labels", "User",
               "StopSignal", "Healthcheck", "ArgsEscaped", "Shell", "OnBuild"]  # fmt: skip


def one_line_or_success(capsys, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 1)
    if code == 1 and argv[0] != "validate-config":
        assert err.count("\n") == 1, err


settings_ = settings(
    max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@settings_
@given(st.lists(st.fixed_dictionaries({}, optional={k: json_values for k in GRAPH_KEYS}), max_size=5))
def test_arbitrary_graph_entries(tmp_path: Path, capsys, entries):
    file = tmp_path / "graph.json"
    file.write_text(json.dumps(entries))
    one_line_or_success(capsys, ["layers", str(file)])


@settings_
@given(st.binary(max_size=200), st.integers(0, 10_000))
def test_truncated_and_flipped_graph_files(tmp_path: Path, capsys, noise, cut):
    data = bytearray((DATA / "scipy.json").read_bytes()[: cut * 5])
    if data and noise:
        data[len(data) // 2] ^= noise[0]
    file = tmp_path / "graph.json"
    file.write_bytes(bytes(data) + noise)
    one_line_or_success(capsys, ["layers", str(file)])


@settings_
@given(st.fixed_dictionaries({}, optional={k: json_values for k in CONFIG_KEYS}) | json_values)
def test_arbitrary_configs(tmp_path: Path, capsys, config):
    file = tmp_path / "config.json"
    file.write_text(json.dumps(config))
    one_line_or_success(capsys, ["validate-config", str(file)])


@settings_
@given(st.fixed_dictionaries({}, optional={k: json_values for k in CONF_KEYS}) | json_values)
def test_arbitrary_confs(tmp_path: Path, capsys, conf):
    file = tmp_path / "conf.json"
    file.write_text(json.dumps(conf))
    one_line_or_success(capsys, ["stream", str(file), "-q", "-o", str(tmp_path / "out.tar")])


@pytest.mark.parametrize("depth", [10_000])
def test_deep_nesting_is_one_line(tmp_path: Path, capsys, depth):
    file = tmp_path / "deep.json"
    file.write_text("[" * depth + "]" * depth)
    for argv in (["layers", str(file)], ["stream", str(file)], ["validate-config", str(file)]):
        assert main(argv) == 1
        assert capsys.readouterr().err.count("\n") in (1, 2)
