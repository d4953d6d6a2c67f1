"""Errors speak to the user: one sentence (file, field, fix), exit status 2 through the CLI."""

import pytest

from vdm3d.cli.main import main
from vdm3d.errors import CameraError, ConfigError, InputError, OutputExistsError, Vdm3dError, describe


def test_describe_composes_one_sentence():
    msg = describe(path="scene/poses.json", field="frame 3 field c2w", problem="has NaN", fix="drop that frame")
    assert msg == "scene/poses.json: frame 3 field c2w has NaN; drop that frame."
    assert describe(problem="is wrong.") == "is wrong."
    e = InputError(path="a.png", problem="is empty (0 bytes)", fix="pass a valid image")
    assert str(e) == "a.png: is empty (0 bytes); pass a valid image." and e.path == "a.png"
    assert str(InputError("plain message.")) == "plain message."


def test_hierarchy_and_exit_codes():
    for cls in (InputError, CameraError, ConfigError, OutputExistsError):
        assert issubclass(cls, Vdm3dError) and cls.exit_code == 2
    assert issubclass(CameraError, InputError)


def test_cli_prints_error_and_exits_2(tmp_path, capsys):
    assert main(["trajectory", "info", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert main(["trajectory", "info", str(tmp_path / "none.json"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_command_and_usage_errors(capsys):
    assert main(["no-such-command"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert main(["trajectory", "make", "orbit", "--frames", "many", "--out", "x.json"]) == 2


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_overview_and_version(argv, capsys):
    assert main(argv) == 0
    assert capsys.readouterr().out
