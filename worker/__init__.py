"""The reconciliation worker: webhook events, authorize commands, outbox relay and sweeper."""
