"""AWS list prices used for cost estimates (us-east-1, USD, on-demand; checked 2026-11).

Estimates only: free tiers, taxes, data transfer and CloudWatch Logs are left out.
"""

from __future__ import annotations

API_GATEWAY_REST_PER_MILLION_REQUESTS = 3.50
LAMBDA_PER_MILLION_REQUESTS = 0.20
LAMBDA_ARM64_PER_GB_SECOND = 0.0000133334
KINESIS_PROVISIONED_PER_MILLION_PUT_PAYLOAD_UNITS = 0.014  # one unit = a record of up to 25 KB
KINESIS_PROVISIONED_PER_SHARD_HOUR = 0.015
DYNAMODB_ON_DEMAND_PER_MILLION_WRITE_UNITS = 0.625
DYNAMODB_ON_DEMAND_PER_MILLION_READ_UNITS = 0.125
# Lambda reading a DynamoDB stream or a Kinesis stream through an event source mapping: no request charge.
