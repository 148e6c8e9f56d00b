"""docs/deploy.md's figures about what `pulumi up` deploys are the program's: the number of alarms, and what
they cost at rest. (It said 23 in one place and 17 in another.)"""

from __future__ import annotations

import re
from pathlib import Path

from tests.infra.harness import deploy

DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ALARM_PRICE = 0.10  # USD per standard-resolution alarm and month


def test_deploy_md_counts_and_prices_the_alarms_the_program_creates() -> None:
    alarms = len(deploy().mocks.of_type(ALARM))
    text = DEPLOY_MD.read_text()
    counts = [int(n) for n in re.findall(r"\b(\d+) alarms\b", text)]
    priced = re.findall(
        r"CloudWatch alarms \((\d+) x \$(\d+\.\d\d)\) \| \$(\d+\.\d\d) \| \$(\d+\.\d\d) \|", text
    )
    assert counts == [alarms], f"deploy.md says {counts} alarms; the program creates {alarms}"
    assert len(priced) == 1, "deploy.md's cost table has no 'CloudWatch alarms (N x $0.10) | $X | $X |' row"
    (count, price, provisioned, on_demand) = priced[0]
    assert (int(count), float(price)) == (alarms, ALARM_PRICE)
    assert float(provisioned) == float(on_demand) == round(alarms * ALARM_PRICE, 2)
