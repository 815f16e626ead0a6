"""The seed's callback module, beside the spec: found by the spec-folder rule, no PYTHONPATH."""
