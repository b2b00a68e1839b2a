"""Database access: connection settings, the exchange writer and the dashboard queries."""
