"""The logging proxy: forwards every request and records each exchange."""
