"""Queries that compare the summary tables with the exchanges they summarise."""

from typing import Any

# Insert %s generated exchanges 7 minutes apart, ending 2 hours ago so that
# they share no summary row with traffic the recorder writes during a test.
GENERATED_EXCHANGES = """
    INSERT INTO llmtap.exchange (
        id, started_at, method, path, endpoint, outcome, error_kind,
        http_status, model, user_id, session_id, session_name, prompt_tokens,
        completion_tokens, cost_usd, latency_ms, ttft_ms, tokens_per_s
    )
    SELECT gen_random_uuid(),
           now() - interval '2 hours' - i * interval '7 minutes',
           'POST', '/v1/chat/completions', 'openai.chat',
           CASE WHEN i %% 13 = 0 THEN 'upstream_timeout'
                WHEN i %% 17 = 0 THEN 'upstream_http_error'
                ELSE 'success' END,
           CASE WHEN i %% 13 = 0 THEN 'header_timeout' END,
           CASE WHEN i %% 17 = 0 THEN 502 WHEN i %% 13 = 0 THEN 504 ELSE 200 END,
           'summary-model-' || i %% 3,
           CASE WHEN i %% 5 <> 0 THEN 'summary-user-' || i %% 4 END,
           'summary-session-' || i / 40,
           CASE WHEN i %% 80 = 0 THEN 'chat ' || i / 40 END,
           CASE WHEN i %% 7 <> 0 THEN i %% 50 + 1 END,
           CASE WHEN i %% 7 <> 0 THEN i %% 30 + 1 END,
           CASE WHEN i %% 7 <> 0 THEN (i %% 50) * 0.0001 END,
           CASE WHEN i %% 11 <> 0 THEN 50 + (i * 37) %% 5000 END,
           CASE WHEN i %% 3 = 0 THEN 5 + (i * 13) %% 400 END,
           CASE WHEN i %% 4 = 0 THEN 10 + i %% 90 END
    FROM generate_series(1, %s) AS i
"""


# The hour summaries as the exchanges give them, computed without the
# migration's statements.
EXPECTED_HOURS = """
    WITH sums AS (
        SELECT date_trunc('hour', started_at, 'UTC') AS hour, count(*) AS exchanges,
               count(*) FILTER (WHERE outcome <> 'success') AS errors,
               sum(prompt_tokens) AS prompt_tokens, sum(cost_usd) AS cost_usd
        FROM llmtap.exchange GROUP BY 1
    ), bins AS (
        SELECT date_trunc('hour', started_at, 'UTC') AS hour,
               llmtap.hist_bin(latency_ms) AS bin, count(*) AS n
        FROM llmtap.exchange WHERE latency_ms IS NOT NULL GROUP BY 1, 2
    ), hists AS (
        SELECT hour, jsonb_object_agg(bin, n) AS hist FROM bins GROUP BY 1
    )
    SELECT sums.*, coalesce(hists.hist, '{}') AS latency_hist
    FROM sums LEFT JOIN hists USING (hour)
"""
STORED_HOURS = """
    SELECT hour, exchanges, errors, prompt_tokens, cost_usd, latency_hist
    FROM llmtap.summary_hour
"""
EXPECTED_USER_DAYS = """
    SELECT date_trunc('day', started_at, 'UTC') AS day, user_id AS key,
           count(*) AS exchanges, count(latency_ms) AS latency_n,
           min(started_at) AS first_seen, max(started_at) AS last_seen
    FROM llmtap.exchange WHERE user_id IS NOT NULL GROUP BY 1, 2
"""
STORED_USER_DAYS = """
    SELECT day, key, exchanges, latency_n, first_seen, last_seen
    FROM llmtap.summary_day WHERE dimension = 'user'
"""
EXPECTED_SESSIONS = """
    SELECT session_id, max(session_name) AS session_name, count(*) AS exchanges,
           count(DISTINCT user_id) AS users, sum(cost_usd) AS cost_usd,
           min(started_at) AS first_seen, max(started_at) AS last_seen
    FROM llmtap.exchange WHERE session_id IS NOT NULL GROUP BY 1
"""
STORED_SESSIONS = """
    SELECT session_id, session_name, exchanges, cardinality(user_ids) AS users,
           cost_usd, first_seen, last_seen
    FROM llmtap.summary_session
"""
PAIRS = {
    "summary_hour": (EXPECTED_HOURS, STORED_HOURS),
    "summary_day": (EXPECTED_USER_DAYS, STORED_USER_DAYS),
    "summary_session": (EXPECTED_SESSIONS, STORED_SESSIONS),
}


def mismatch_query(table: str) -> str:
    """Return a query counting the rows of a summary table that differ from it."""
    expected, stored = PAIRS[table]
    return (
        f"SELECT count(*) AS n FROM (({expected}) EXCEPT ({stored})"
        f" UNION ALL (({stored}) EXCEPT ({expected}))) AS differing"
    )


def summary_mismatches(appliance: Any) -> dict[str, int]:
    """Return, per summary table, how many of its rows differ from the exchanges."""
    found = {}
    for table in PAIRS:
        found[table] = appliance.query(mismatch_query(table))[0]["n"]
    return found
