"""Log formats: JSON lines for shippers, plain lines with and without a timestamp (journald)."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

import pytest

from crosscast.relay.logformat import JSON, PLAIN, make_formatter, stderr_is_journal


def record(msg: str = "relayed %d frames", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("crosscast.relay", logging.INFO, __file__, 1, msg, args or (3,), None)
    rec.created = 1_700_000_000.25
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_line_has_time_level_logger_message() -> None:
    line = make_formatter(JSON, journal=False).format(record())
    assert json.loads(line) == {
        "time": "2023-11-14T22:13:20.250+00:00",
        "level": "info",
        "logger": "crosscast.relay",
        "message": "relayed 3 frames",
    }


def test_json_carries_extra_fields_and_stays_one_line() -> None:
    rec = record("bad\nframe from %s", "10.0.1.5", peer=("10.0.1.5", 7124), reason="hop-limit")
    line = make_formatter(JSON, journal=False).format(rec)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "bad\nframe from 10.0.1.5"
    assert entry["peer"] == ["10.0.1.5", 7124]
    assert entry["reason"] == "hop-limit"


def test_json_includes_the_exception() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record()
        rec.exc_info = sys.exc_info()
    entry = json.loads(make_formatter(JSON, journal=False).format(rec))
    assert "RuntimeError: boom" in entry["exception"]


def test_plain_line_starts_with_a_timestamp() -> None:
    line = make_formatter(PLAIN, journal=False).format(record())
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO crosscast.relay: relayed 3 frames", line
    )


def test_plain_line_under_journald_has_no_timestamp() -> None:
    line = make_formatter(PLAIN, journal=True).format(record())
    assert line == "INFO crosscast.relay: relayed 3 frames"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        make_formatter("xml", journal=False)


def test_journal_stream_matching_stderr_is_the_journal(tmp_path: Path) -> None:
    with (tmp_path / "stream").open("w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, stderr_fd=stream.fileno())


def test_inherited_journal_stream_for_another_file_is_not_the_journal(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, b.fileno())


@pytest.mark.parametrize("value", [None, "", "garbage", "1:", ":2"])
def test_missing_or_malformed_journal_stream_is_not_the_journal(value: str | None) -> None:
    assert not stderr_is_journal({} if value is None else {"JOURNAL_STREAM": value})
