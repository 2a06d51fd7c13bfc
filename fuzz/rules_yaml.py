"""A rules file (--rules-file): relay/rules.py load_rules_yaml, then the rule table.

Contract: RuleError (a ValueError) is bad input; anything else is a crash.
"""

from crosscast.relay.ruleindex import RuleTable
from crosscast.relay.rules import RuleError, format_rule_table, load_rules_yaml
from fuzz import text

EXPECTED = (RuleError,)


def one_input(data: bytes) -> None:
    rules = load_rules_yaml(text(data), "rules.yaml")
    RuleTable(rules)
    format_rule_table(rules)
