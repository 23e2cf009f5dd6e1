"""Real servers for tests: a fault-injecting fake LLM API and the local SmolLM2 server."""
