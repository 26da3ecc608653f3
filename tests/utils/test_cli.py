"""The checkpoint argument's one name across the entry points, and its former spellings."""
import argparse

import pytest

import inference
import main
from models import convert_official
from utils.cli import add_checkpoint_argument, device_choice, require

ENTRY_POINTS = {  # parse_args of each command, its former spelling, the other required arguments
    "main.py": (main.parse_args, "--trained_model", ["--config_exp", "c.yml"]),
    "inference.py": (inference.parse_args, "--ckp_path", ["--image_path", "i", "--save_dir", "o"]),
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_entry_point_takes_checkpoint_and_its_old_spelling_with_a_notice(name, capsys):
    parse, old, rest = ENTRY_POINTS[name]
    assert parse([*rest, "--checkpoint", "a.pth"]).checkpoint == "a.pth"
    assert capsys.readouterr().err == ""
    assert parse([*rest, old, "b.pth"]).checkpoint == "b.pth"
    assert capsys.readouterr().err == f"note: {old} is now --checkpoint (the old spelling still works)\n"


def test_old_spellings_are_hidden_from_help(capsys):
    with pytest.raises(SystemExit):
        inference.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--checkpoint CKPT" in out and "--ckp_path" not in out


def test_the_converter_takes_checkpoint_and_src(tmp_path, capsys):
    absent = str(tmp_path / "absent.pth")
    assert convert_official.main(["--checkpoint", absent, "--dst", str(tmp_path / "o.pth")]) == 2
    assert "absent.pth" in capsys.readouterr().err
    assert convert_official.main(["--src", absent, "--dst", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("note: --src is now --checkpoint") and "absent.pth" in err


def test_a_missing_checkpoint_argument_is_argparses_usage_error(capsys):
    parser = argparse.ArgumentParser(prog="x")
    add_checkpoint_argument(parser, "help", old=("--old",))
    with pytest.raises(SystemExit) as exit_info:
        require(parser, parser.parse_args([]), "checkpoint")
    assert exit_info.value.code == 2
    assert "the following arguments are required: --checkpoint" in capsys.readouterr().err


def test_device_choice():
    assert [device_choice(v) for v in ("auto", "cpu", "cuda", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    with pytest.raises(argparse.ArgumentTypeError, match="use auto, cpu, cuda or cuda:N"):
        device_choice("gpu")
