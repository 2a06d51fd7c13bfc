"""A rules file (--rules-file): relay/rules.py load_rules_yaml, then the rule table.

Contract: RuleError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.relay.rules import RuleError, load_rules_yaml
from fuzz import text
from fuzz.world import tabulate

EXPECTED = (RuleError,)


def one_input(data: bytes) -> None:
    tabulate(load_rules_yaml(text(data), "rules.yaml"))
