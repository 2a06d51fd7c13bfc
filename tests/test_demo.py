"""`crosscast demo` without root: what it says when it cannot run, its subcommand, its output."""

from __future__ import annotations

import argparse
import io

import pytest

from crosscast import cli, demo


@pytest.fixture
def not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 1000)


@pytest.mark.usefixtures("not_root")
def test_without_root_one_line_on_stderr_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.run(argparse.Namespace()) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("crosscast demo: needs root")


@pytest.mark.usefixtures("not_root")
def test_the_cli_runs_the_demo_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo"]) == 2
    assert "needs root" in capsys.readouterr().err


def test_without_linux_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo.sys, "platform", "darwin")
    assert demo.run(argparse.Namespace()) == 2
    assert capsys.readouterr().err == "crosscast demo: needs Linux (network namespaces)\n"


def test_without_iproute2_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo.os, "geteuid", lambda: 0)
    monkeypatch.setattr(demo.shutil, "which", lambda _name: None)
    assert demo.why_not_here() == "needs iproute2 (`ip`)"


def test_help_describes_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    assert "namespaces" in capsys.readouterr().out


def test_report_marks_checks_with_ticks_on_a_utf8_stream() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    report = demo.Report(out)
    report.check(True, "crossed")
    report.check(False, "passed text", "failed text")
    out.seek(0)
    assert out.read().splitlines() == ["  ✓ crossed", "  ✗ failed text"]
    assert (report.passed, report.failed, report.all_passed) == (1, 1, False)


def test_report_falls_back_to_ok_and_fail_without_utf8() -> None:
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    report = demo.Report(out)
    report.check(True, "crossed")
    report.fail("did not cross")
    out.seek(0)
    assert out.read().splitlines() == ["  ok crossed", "  FAIL did not cross"]


def test_report_with_no_check_has_not_passed() -> None:
    assert not demo.Report(io.StringIO()).all_passed
