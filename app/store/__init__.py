"""Database access: roles, the spool, the exchange writer and the queries."""
