"""One-line forwarding rules (--rule, the RULES env var): relay/rules.py parse_rules_text, then
the rule table and its printout, which every accepted rule set must survive.

Contract: RuleError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.relay.rules import RuleError, parse_rules_text
from fuzz import text
from fuzz.world import tabulate

EXPECTED = (RuleError,)


def one_input(data: bytes) -> None:
    tabulate(parse_rules_text(text(data), "RULES"))
