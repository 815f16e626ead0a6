"""Provider implementations: anthropic (the real SDK), mock (embedded), replay."""
