"""The example microservice's business logic: pure functions over the event envelope, no AWS.

`DOMAIN` is the domain with the current rules. Functions that decide outcomes (the write function, and any
consumer that folds an aggregate to know what was applied) take theirs from `from_environment`, so a setting
(`ES_LEDGER_RULES`) can select a release's rules: the devstack demo "deploys" a bug fix that way.
"""

from collections.abc import Mapping

from domain.ledger import CURRENT_RULES, RULES_RELEASES, Ledger
from domain.schema import Domain, HistoryRequired, NotReversible, Problem
from domain.upcasting import UnknownSchemaVersion

RULES_SETTING = "ES_LEDGER_RULES"

DOMAIN: Domain = Ledger()


def from_environment(environ: Mapping[str, str]) -> Domain:
    """The domain with the rules `ES_LEDGER_RULES` names (the current release when unset); ValueError for a
    release that does not exist."""
    rules = (environ.get(RULES_SETTING) or "").strip() or CURRENT_RULES
    return DOMAIN if rules == CURRENT_RULES else Ledger(rules)


__all__ = [
    "DOMAIN",
    "RULES_RELEASES",
    "RULES_SETTING",
    "Domain",
    "HistoryRequired",
    "Ledger",
    "NotReversible",
    "Problem",
    "UnknownSchemaVersion",
    "from_environment",
]
