"""The example microservice's business logic: pure functions over the event envelope, no AWS.

`DOMAIN` is the domain the handlers serve.
"""

from domain.ledger import Ledger
from domain.schema import Domain, Problem

DOMAIN: Domain = Ledger()

__all__ = ["DOMAIN", "Domain", "Ledger", "Problem"]
