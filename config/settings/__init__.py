"""Settings modules: base (shared), development, production, test."""
