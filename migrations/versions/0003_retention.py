"""Add llmtap.apply_retention, which deletes the oldest exchanges by age and size.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Deleted rows free no disk space by themselves. Autovacuum later marks their
# pages as free and new rows reuse them, so the files stop growing but rarely
# shrink. PostgreSQL 15 vacuums a table by default only once 20 % of it is
# dead, and a retention batch is a few percent, so these lower thresholds let
# autovacuum (naptime 1 min by default) make the space reusable within minutes.
AUTOVACUUM = """
    ALTER TABLE llmtap.exchange SET (
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_threshold = 1000,
        autovacuum_analyze_scale_factor = 0.05,
        toast.autovacuum_vacuum_scale_factor = 0.02,
        toast.autovacuum_vacuum_threshold = 1000
    )
"""

# One row: the size limit's row budget. The table's files keep their size
# after a delete, so the size alone cannot tell whether enough rows are gone.
# When the table first exceeds the limit, the function sets a budget of rows
# that fit in 90 % of it and from then on keeps the row count at the budget.
# It sets a new budget only after the table grew by a tenth of the limit past
# the size it had when the budget was set, and only once a vacuum ran since,
# because before that the freed space is not yet reusable and growth says
# nothing about the rows' size.
STATE_TABLE = """
    CREATE TABLE llmtap.retention_state (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        budget_rows bigint,
        budget_bytes bigint,
        budget_at timestamptz
    )
"""

FUNCTION = """
    CREATE FUNCTION llmtap.apply_retention(
        max_age interval, max_bytes bigint, batch integer
    ) RETURNS integer
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, llmtap
    AS $$
    DECLARE
        deleted integer := 0;
        removed integer;
        total_bytes bigint;
        live_rows bigint;
        vacuumed_at timestamptz;
        state llmtap.retention_state;
    BEGIN
        -- Several proxy workers call this; one of them works, the others skip.
        -- The key is an arbitrary constant that only this function uses.
        IF NOT pg_try_advisory_xact_lock(7008541031052733541) THEN
            RETURN 0;
        END IF;
        IF batch IS NULL OR batch <= 0 THEN
            RETURN 0;
        END IF;

        IF max_age IS NOT NULL AND max_age > interval '0' THEN
            DELETE FROM llmtap.exchange WHERE id IN (
                SELECT id FROM llmtap.exchange
                WHERE started_at < now() - max_age
                ORDER BY started_at
                LIMIT batch
            );
            GET DIAGNOSTICS deleted = ROW_COUNT;
        END IF;

        IF max_bytes IS NULL OR max_bytes <= 0 OR deleted >= batch THEN
            RETURN deleted;
        END IF;

        SELECT * INTO state FROM llmtap.retention_state FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO llmtap.retention_state DEFAULT VALUES RETURNING * INTO state;
        END IF;
        total_bytes := pg_total_relation_size('llmtap.exchange');
        IF total_bytes <= max_bytes THEN
            -- Under the limit (a raised limit, or VACUUM FULL): no budget.
            UPDATE llmtap.retention_state
            SET budget_rows = NULL, budget_bytes = NULL, budget_at = NULL;
            RETURN deleted;
        END IF;

        -- NOTE: an exact count reads the whole started_at index; at a few
        -- million rows that takes a second or so, once per batch.
        SELECT count(*) INTO live_rows FROM llmtap.exchange;
        SELECT greatest(last_vacuum, last_autovacuum) INTO vacuumed_at
        FROM pg_stat_user_tables WHERE relid = 'llmtap.exchange'::regclass;
        IF state.budget_rows IS NULL OR (
            total_bytes > state.budget_bytes + max_bytes / 10
            AND vacuumed_at > state.budget_at
        ) THEN
            -- Assumes rows of average size; bloat makes the budget smaller
            -- than needed, never larger.
            state.budget_rows := floor(live_rows * 0.9 * max_bytes / total_bytes);
            state.budget_bytes := total_bytes;
            state.budget_at := now();
            UPDATE llmtap.retention_state
            SET budget_rows = state.budget_rows,
                budget_bytes = state.budget_bytes,
                budget_at = state.budget_at;
        END IF;

        IF live_rows > state.budget_rows THEN
            DELETE FROM llmtap.exchange WHERE id IN (
                SELECT id FROM llmtap.exchange
                ORDER BY started_at
                LIMIT least(batch - deleted, live_rows - state.budget_rows)
            );
            GET DIAGNOSTICS removed = ROW_COUNT;
            deleted := deleted + removed;
        END IF;
        RETURN deleted;
    END
    $$
"""

SIGNATURE = "llmtap.apply_retention(interval, bigint, integer)"


def upgrade() -> None:
    op.execute(AUTOVACUUM)
    op.execute(STATE_TABLE)
    op.execute("INSERT INTO llmtap.retention_state DEFAULT VALUES")
    op.execute(FUNCTION)
    op.execute(f"ALTER FUNCTION {SIGNATURE} OWNER TO llmtap_owner")
    # Functions are executable by PUBLIC by default; only the proxy may run it.
    op.execute(f"REVOKE ALL ON FUNCTION {SIGNATURE} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {SIGNATURE} TO llmtap_proxy")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
    op.execute("DROP TABLE IF EXISTS llmtap.retention_state")
    op.execute(
        "ALTER TABLE llmtap.exchange RESET ("
        "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
        "autovacuum_analyze_scale_factor, toast.autovacuum_vacuum_scale_factor, "
        "toast.autovacuum_vacuum_threshold)"
    )
