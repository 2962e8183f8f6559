"""`stepalign-train toy ...`: the subcommands are registered, their flags parse, bad input gets a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.cli import build_parser, main


def test_the_toy_subcommands_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["toy", "pretrain", "--out", "solver", "--quick", "--minutes", "2", "--gap", "100"])
    assert (args.command, args.toy_command, args.quick, args.minutes, args.gap) == ("toy", "pretrain", True, 2.0, 100)
    assert args.toy_handler.__name__ == "_pretrain"
    with pytest.raises(SystemExit):  # a time budget or a number of examples, not both
        parser.parse_args(["toy", "pretrain", "--out", "s", "--minutes", "2", "--examples", "100"])
    assert parser.parse_args(["toy", "gap", "--model", "s"]).toy_handler.__name__ == "_gap"
    assert parser.parse_args(["toy", "advantages", "--model", "s"]).wrong == 50


def test_a_folder_without_a_solver_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["toy", "gap", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a toy solver folder" in err and "stepalign-train toy pretrain --out" in err
