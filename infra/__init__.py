"""The Pulumi program's components (one per subsystem) and the Lambda bundle builder; see docs/deploy.md."""
