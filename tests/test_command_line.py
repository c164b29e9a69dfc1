"""The command line as a new user meets it: output onto a terminal, progress labels,
`--help`, defaults, `-` for stdin, and paths that are not what they should be."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA, make_conf, run_cli

from layered_image.archive.docker_archive import write_docker_archive
from layered_image.archive.image import ImageMeta
from layered_image.archive.layer_source import LayerSource
from layered_image.archive.output import Output
from layered_image.cli import build_parser
from layered_image.platform import Platform
from layered_image.progress import Progress

INTERNAL_COMMANDS = [
    "build",
    "write-attr",
    "write-launcher",
    "write-push-launcher",
    "write-image",
    "customise",
]
GRAPH = DATA / "scipy.json"


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a run that failed as a user's mistake should: exit 1, one line, no output."""
    error = result.stderr.decode()
    assert result.returncode == 1 and error.count("\n") == 1 and "Traceback" not in error, error
    assert result.stdout == b""
    return error


# -- output onto a terminal ------------------------------------------------------------------


def run_onto_a_terminal(*args: str) -> tuple[int, str, bytes]:
    """Run the command line with a pseudo-terminal as its stdout: exit code, stderr and
    what reached the terminal."""
    controller, terminal = pty.openpty()
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "layered_image", *args], stdout=terminal, stderr=subprocess.PIPE
        )
        os.close(terminal)
        shown = bytearray()
        while child.poll() is None or select.select([controller], [], [], 0)[0]:
            if select.select([controller], [], [], 0.1)[0]:
                try:
                    shown += os.read(controller, 1 << 16)
                except OSError:  # the child closed the terminal
                    break
        return child.wait(), child.stderr.read().decode(), bytes(shown)
    finally:
        os.close(controller)


def test_stream_refuses_to_write_an_image_onto_a_terminal(tmp_path, fake_store):
    conf = make_conf(tmp_path, [[str(next(fake_store.iterdir()))]], store_dir=str(fake_store))
    code, error, shown = run_onto_a_terminal("stream", str(conf))
    assert code == 1 and shown == b"", shown[:200]
    assert error.count("\n") == 1 and "refusing to write the image to a terminal" in error
    assert "-o" in error and "Traceback" not in error


def test_stream_writes_to_a_file_when_stdout_is_a_terminal(tmp_path, fake_store):
    conf = make_conf(tmp_path, [[str(next(fake_store.iterdir()))]], store_dir=str(fake_store))
    code, error, _ = run_onto_a_terminal("stream", str(conf), "-q", "-o", str(tmp_path / "image.tar"))
    assert code == 0, error
    assert (tmp_path / "image.tar").stat().st_size > 0


def test_from_paths_refuses_a_terminal_before_asking_nix(tmp_path):
    env = os.environ | {"PATH": str(tmp_path)}  # no nix: the refusal must come first
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "layered_image", "from-paths", "/nix/store/" + "a" * 32 + "-x"],
            stdout=terminal, stderr=subprocess.PIPE, env=env, check=False,
        )  # fmt: skip
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 1 and b"refusing to write the image to a terminal" in result.stderr


# -- progress ------------------------------------------------------------------------------------


class RecordingProgress(Progress):
    """The label in force when each piece of the output is written (start offset, label)."""

    def __init__(self) -> None:
        super().__init__(None, stream=io.StringIO())
        self.seen: list[tuple[int, str]] = []

    def advance(self, count: int) -> None:
        start = self.done
        super().advance(count)
        self.seen.append((start, self.label))


def test_progress_label_names_what_is_being_written_not_what_was_queued():
    piece = 256 << 10  # sent as it is, one queue entry each: the writer lags far behind
    layers = [
        LayerSource(measure=lambda: 4 * piece, chunks=lambda: [bytes(piece)] * 4, comment=f"layer {n}")
        for n in range(3)
    ]
    meta = ImageMeta(
        repo_tag="a:b", platform=Platform("amd64", None), created="1970-01-01T00:00:01Z", mtime=1,
        config=None, base_history=None, base_layers=0, held_by_base=(),
    )  # fmt: skip
    reader, writer = os.pipe()
    drained = threading.Thread(target=slow_drain, args=(reader,))
    drained.start()
    progress = RecordingProgress()
    try:
        with Output(writer, progress) as out:
            write_docker_archive(out, layers, meta)
    finally:
        os.close(writer)
        drained.join()
        os.close(reader)
    layer_bytes = 512 + 4 * piece
    for start, label in progress.seen:
        if start < 3 * layer_bytes:
            assert label.startswith(f"layer {start // layer_bytes + 1}/3"), (start, label)
        else:
            assert label == "config and manifest", (start, label)


def slow_drain(fd: int) -> None:
    while os.read(fd, 64 << 10):
        time.sleep(0.01)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_names_store_paths_by_name_not_by_hash():
    screen = Terminal()
    progress = Progress(100, stream=screen)
    hashes = ["0" * 32, "1" * 32]
    progress.step(
        f"layer 3/9: store paths: /nix/store/{hashes[0]}-hello-2.12 /nix/store/{hashes[1]}-glibc-2.40"
    )
    progress.advance(50)
    progress.finish()
    assert "layer 3/9: hello-2.12 glibc-2.40" in screen.getvalue()
    assert hashes[0][:8] not in screen.getvalue()


def test_progress_summary_of_a_quick_write_is_not_zero_seconds():
    screen = io.StringIO()
    progress = Progress(2_000_000, stream=screen)
    progress.advance(2_000_000)
    progress.finish()
    summary = screen.getvalue().splitlines()[-1]
    assert summary.startswith("wrote 2.0 MB in ") and " in 0.0 s" not in summary, summary


# -- mistakes on the command line ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["strem", "c.json"],
            "layered-image: error: argument COMMAND: invalid choice: 'strem'; did you mean 'stream'?",
        ),
        (["stream", "c.json", "--format", "docker"], "did you mean 'docker-archive'?"),
        (["layers", "g.json", "--strategy", "stabel"], "did you mean 'stable'?"),
        (
            ["stream", "c.json", "other.json"],
            "layered-image stream: error: unrecognized arguments: other.json",
        ),
        (
            ["push", "c.json", "docker://h/r:1", "--tls-verify=no"],
            "layered-image push: error: argument --tls-verify",
        ),
    ],
)
def test_command_line_mistakes_are_one_line_exit_1(argv, says):
    error = one_line_error(run_cli(*argv))
    assert says in error and error.rstrip().endswith("--help"), error


def test_a_conf_where_a_config_or_a_graph_belongs_is_named_as_such(tmp_path, fake_store):
    conf = make_conf(tmp_path, [[str(next(fake_store.iterdir()))]], store_dir=str(fake_store))
    assert "is an image conf, not an image config" in one_line_error(run_cli("validate-config", str(conf)))
    assert "is an image conf, not a closure graph" in one_line_error(run_cli("layers", str(conf)))


def test_a_missing_auth_file_is_one_plain_line(tmp_path, fake_store):
    conf = make_conf(tmp_path, [[str(next(fake_store.iterdir()))]], store_dir=str(fake_store))
    missing = tmp_path / "no-such" / "auth.json"
    result = run_cli("push", str(conf), "docker://127.0.0.1:1/x:1", "--authfile", str(missing))
    error = one_line_error(result)
    assert f"cannot read the auth file {missing}: No such file or directory" in error and "Errno" not in error


def test_stream_script_flag_mistakes_are_one_line_exit_1(capsys):
    from layered_image.stream import stream_script_main

    with pytest.raises(SystemExit) as exited:
        stream_script_main("{}", ["--format", "tar"])
    error = capsys.readouterr().err
    assert exited.value.code == 1 and error.count("\n") == 1 and "invalid choice: 'tar'" in error, error


# -- --help ----------------------------------------------------------------------------------------


def test_help_lists_only_the_commands_people_type():
    shown = run_cli("--help").stdout.decode()
    assert "stream" in shown and "from-paths" in shown
    for name in INTERNAL_COMMANDS:
        assert name not in shown.split(), name
    assert "inside Nix builds" not in shown


def test_a_mistyped_command_is_not_offered_the_internal_ones():
    error = run_cli("strem").stderr.decode()
    assert "'stream'" in error and "write-attr" not in error and "customise" not in error


@pytest.mark.parametrize("name", INTERNAL_COMMANDS)
def test_internal_commands_still_parse(name):
    args = build_parser().parse_args([name, "x"] if name == "write-attr" else [name])
    assert args.command == name


def test_strategy_help_names_the_choices_and_the_default():
    shown = " ".join(run_cli("layers", "--help").stdout.decode().split())
    assert "stable (default)" in shown and "popularity" in shown and "auto" in shown


@pytest.mark.parametrize("command", ["layers", "explain", "diff", "from-paths"])
def test_max_layers_means_store_layers_with_one_default_everywhere(command):
    arguments = {"layers": ["g"], "explain": ["g"], "diff": ["a", "b"], "from-paths": ["/nix/store/x"]}
    assert build_parser().parse_args([command, *arguments[command]]).max_layers == 99
    shown = " ".join(run_cli(command, "--help").stdout.decode().split())
    assert "store layers" in shown and "default 99" in shown


# -- `-` is stdin ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["layers"], ["explain", "--json"]])
def test_a_graph_from_stdin(command):
    from_file = run_cli(*command, str(GRAPH))
    from_stdin = run_cli(*command, "-", input=GRAPH.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr.decode()
    assert from_stdin.stdout == from_file.stdout


def test_diff_reads_one_graph_from_stdin_and_refuses_two():
    result = run_cli("diff", "-", str(GRAPH), input=GRAPH.read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["registry_new_bytes"] == 0
    assert "stdin" in one_line_error(run_cli("diff", "-", "-", input=GRAPH.read_bytes()))


def test_graph_and_pipeline_cannot_both_be_stdin():
    result = run_cli("layers", "-", "--pipeline", "-", input=GRAPH.read_bytes())
    assert "stdin" in one_line_error(result)


def test_a_conf_from_stdin(tmp_path, fake_store):
    conf = make_conf(tmp_path, [[str(next(fake_store.iterdir()))]], store_dir=str(fake_store))
    from_file = run_cli("stream", str(conf), "-q")
    from_stdin = run_cli("stream", "-", "-q", input=conf.read_bytes())
    assert from_stdin.returncode == 0, from_stdin.stderr.decode()
    assert from_stdin.stdout == from_file.stdout


def test_validate_config_from_stdin():
    assert run_cli("validate-config", "-", input=b'{"Cmd": ["/bin/sh"]}').returncode == 0
    assert run_cli("validate-config", "-", input=b'{"Cmd": 1}').returncode == 1


def test_a_config_from_stdin_for_from_paths(tmp_path, busybox_path):
    config = json.dumps({"Cmd": ["/bin/sh"], "User": "7"}).encode()
    image = tmp_path / "image.tar"
    result = run_cli("from-paths", busybox_path, "--config", "-", "-q", "-o", str(image), input=config)
    assert result.returncode == 0, result.stderr.decode()
    import tarfile

    with tarfile.open(image) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]
        assert json.load(archive.extractfile(manifest["Config"]))["config"]["User"] == "7"


# -- paths that are not what they should be ----------------------------------------------------


@pytest.mark.parametrize("layering", [[], ["--strategy", "popularity"], ["--pipeline", "-"]])
def test_an_exclude_path_the_graph_does_not_hold_is_refused(layering):
    missing = "/nix/store/" + "0" * 32 + "-not-in-the-graph"
    pipeline = b'[["popularity_contest"], ["limit_layers", 5]]'
    result = run_cli("layers", str(GRAPH), "--exclude", missing, *layering, input=pipeline)
    error = one_line_error(result)
    assert missing in error and "not in the closure graph" in error


def test_an_exclude_path_the_graph_holds_is_left_out():
    held = json.loads(GRAPH.read_text())[0]["path"]
    result = run_cli("layers", str(GRAPH), "--exclude", held)
    assert result.returncode == 0 and held not in result.stdout.decode()


def test_from_paths_says_a_path_outside_the_store_is_not_a_store_path(tmp_path):
    env = os.environ | {"PATH": str(tmp_path)}  # no nix: refused before nix is asked
    error = one_line_error(run_cli("from-paths", "/tmp", "-o", str(tmp_path / "i.tar"), env=env))
    assert "/tmp is not a store path" in error and "flake" not in error


def test_from_paths_takes_a_link_into_the_store(tmp_path, busybox_path):
    link = tmp_path / "result"
    link.symlink_to(busybox_path)
    result = run_cli("from-paths", str(link), "-q", "-o", str(tmp_path / "i.tar"))
    assert result.returncode == 0, result.stderr.decode()


def test_readme_loads_a_zstd_tarball_through_a_redirect():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "zstd -dc result" not in readme and "zstd -dc < result" in readme
