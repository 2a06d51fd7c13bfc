"""Fixtures shared across the unit-test folders."""

from tests.relay.test_check_golden import run_check  # noqa: F401 -- `crosscast relay --check`
