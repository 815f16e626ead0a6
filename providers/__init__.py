"""Provider implementations: anthropic (the real SDK), mock (embedded), replay."""

from ._mock import MockProvider as MockProvider
