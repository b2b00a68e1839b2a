"""Add the dashboard's indexes and the PostgREST views over exchanges.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Full-text search over the prompt snippet, the answer and the request body.
# The expression must match app.store.queries.SEARCH_DOCUMENT exactly, or the
# planner ignores the index. Each text is capped so that the tsvector of a
# 1 MiB body stays under PostgreSQL's 1 MiB limit, which would otherwise make
# the proxy's insert fail.
SEARCH_INDEX = """
    CREATE INDEX exchange_search_idx ON llmtap.exchange USING gin ((
        to_tsvector('simple'::regconfig,
            left(coalesce(prompt_text, ''), 20000) || ' ' ||
            left(coalesce(response_text, ''), 80000) || ' ' ||
            left(coalesce(request_body::text, ''), 80000))
    ))
"""

# The overview and the models and users lists read only these columns over a
# time range, so a covering index lets them run as index-only scans instead of
# visiting every heap page.
OVERVIEW_INDEX = """
    CREATE INDEX exchange_overview_idx ON llmtap.exchange (started_at)
    INCLUDE (outcome, prompt_tokens, completion_tokens, cost_usd, latency_ms,
             ttft_ms, tokens_per_s, model, user_id)
"""

SUMMARY_COLUMNS = """
    id, started_at, recorded_at, method, path, query, endpoint, is_stream,
    model, http_status, upstream_status, outcome, error_kind, prompt_tokens,
    completion_tokens, total_tokens, cached_tokens, reasoning_tokens,
    usage_source, cost_usd, latency_ms, ttft_ms, first_byte_ms, tokens_per_s,
    user_id, user_name, session_id, session_path, session_name, properties,
    finish_reason
"""

# Aggregates shared by the per-session, per-user and per-model views.
AGGREGATES = """
    count(*) AS exchanges,
    count(*) FILTER (WHERE outcome <> 'success') AS errors,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    avg(latency_ms) AS avg_latency_ms,
    min(started_at) AS first_seen,
    max(started_at) AS last_seen
"""


def upgrade() -> None:
    _create_indexes()
    _create_api_views()
    _grant_api_views()
    # PostgREST caches the schema; this makes it read the new views at once.
    op.execute("NOTIFY pgrst, 'reload schema'")


def _create_indexes() -> None:
    op.execute(SEARCH_INDEX)
    op.execute(OVERVIEW_INDEX)
    # Live mode follows exchanges in the order they are recorded, which differs
    # from started_at because a long stream is recorded only when it ends.
    op.execute(
        "CREATE INDEX exchange_recorded_idx ON llmtap.exchange (recorded_at, id)"
    )
    op.execute(
        "CREATE INDEX exchange_error_idx ON llmtap.exchange (started_at DESC, id DESC)"
        " WHERE outcome <> 'success'"
    )


def _create_api_views() -> None:
    op.execute(
        f"CREATE VIEW api.exchange_summaries AS SELECT {SUMMARY_COLUMNS}"
        " FROM llmtap.exchange"
    )
    create_aggregate_views()


def create_aggregate_views() -> None:
    """Create the per-session, per-user and per-model views over the exchanges."""
    op.execute(
        f"""
        CREATE VIEW api.sessions AS
        SELECT session_id, max(session_name) AS session_name, {AGGREGATES},
               count(DISTINCT user_id) AS users
        FROM llmtap.exchange WHERE session_id IS NOT NULL
        GROUP BY session_id
        """
    )
    op.execute(
        f"""
        CREATE VIEW api.users AS
        SELECT user_id, max(user_name) AS user_name, {AGGREGATES}
        FROM llmtap.exchange WHERE user_id IS NOT NULL
        GROUP BY user_id
        """
    )
    op.execute(
        f"""
        CREATE VIEW api.models AS
        SELECT model, {AGGREGATES},
               percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms)
                   AS p50_latency_ms,
               percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms)
                   AS p95_latency_ms
        FROM llmtap.exchange WHERE model IS NOT NULL
        GROUP BY model
        """
    )


def _grant_api_views() -> None:
    views = "api.exchange_summaries, api.sessions, api.users, api.models"
    op.execute(f"GRANT SELECT ON {views} TO llmtap_api_reader")
    # Anonymous access, when the operator turns it on, reaches only views that
    # carry no bodies and no headers; api.exchanges stays token-only.
    op.execute(f"GRANT SELECT ON {views} TO llmtap_api_anon")


def downgrade() -> None:
    for view in ("models", "users", "sessions", "exchange_summaries"):
        op.execute(f"DROP VIEW IF EXISTS api.{view}")
    for index in ("error", "recorded", "overview", "search"):
        op.execute(f"DROP INDEX IF EXISTS llmtap.exchange_{index}_idx")
    op.execute("NOTIFY pgrst, 'reload schema'")
