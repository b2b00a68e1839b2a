"""Alembic environment: runs the migrations as the schema owner, llmtap_owner."""

from alembic import context
from sqlalchemy import create_engine, pool

from app.settings import get_settings
from app.store.db import sqlalchemy_url


def run_migrations() -> None:
    url = context.config.get_main_option("sqlalchemy.url") or sqlalchemy_url(
        get_settings(), "owner"
    )
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table_schema="llmtap",
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
