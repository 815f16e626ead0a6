"""sluiceway.testing: a kit to test handlers and pipelines (fake Messages API, recorder, strategies)."""
