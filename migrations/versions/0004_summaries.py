"""Add summary tables that triggers keep in step with llmtap.exchange.

Revision ID: 0004
Revises: 0003

The overview, the users and models lists over long ranges, and the sessions
list read these instead of every exchange in the range:

- summary_hour: per UTC hour, counts, tokens, cost and latency histograms;
- summary_failure_hour: per UTC hour, failed exchanges by outcome and error;
- summary_day: per UTC day and model or user, the same plus first and last seen;
- summary_session: per session, its whole totals.

Statement triggers with transition tables add each insert's rows in one pass
per table, in the same transaction as the insert, so the summaries never
disagree with the exchanges. A delete (retention) recomputes the summary rows
of the time span and sessions it touched from the exchanges that remain.

A latency histogram is a jsonb object from bin number to count. Bin b holds
values from 2^(b/8) to 2^((b+1)/8) ms, so a percentile read from it is within
4.5 % of the exact one.
"""

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Created in this order: each function uses the ones before it. The bodies are
# SQL-standard ones, parsed once here, so the API roles that read the views
# need no access to schema llmtap to run them.
HISTOGRAM_FUNCTIONS = (
    """
    CREATE FUNCTION llmtap.hist_bin(ms double precision) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN floor(8 * ln(greatest(ms, 0.01)) / 0.6931471805599453)::integer
    """,
    # The histogram of one value, or NULL for a missing one.
    """
    CREATE FUNCTION llmtap.hist_of(ms double precision) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN ms IS NOT NULL
        THEN jsonb_build_object(llmtap.hist_bin(ms), 1) END
    """,
    # The union of some histograms, where NULL elements count as empty.
    """
    CREATE FUNCTION llmtap.hist_merge(hists jsonb[]) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT coalesce(jsonb_object_agg(bin, n), '{}'::jsonb)
        FROM (
            SELECT entry.key AS bin, sum(entry.value::bigint) AS n
            FROM unnest(hists) AS hist, jsonb_each_text(hist) AS entry
            GROUP BY 1
        ) AS merged;
    END
    """,
    """
    CREATE FUNCTION llmtap.hist_add(a jsonb, b jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN llmtap.hist_merge(ARRAY[a, b])
    """,
    # The q-quantile of a histogram: the geometric middle of the first bin at
    # which the running count reaches q of the total.
    """
    CREATE FUNCTION llmtap.hist_quantile(hist jsonb, q double precision)
    RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    BEGIN ATOMIC
        SELECT power(2.0, (bin + 0.5) / 8)
        FROM (
            SELECT bin, sum(n) OVER (ORDER BY bin) AS running,
                   sum(n) OVER () AS total
            FROM (
                SELECT key::integer AS bin, value::bigint AS n
                FROM jsonb_each_text(hist)
            ) AS entries
        ) AS counted
        WHERE running >= q * total
        ORDER BY bin
        LIMIT 1;
    END
    """,
)

# Columns that several summary tables share: the counts, and the latency and
# time span of the hour-less summaries.
COUNT_COLUMNS = """exchanges bigint NOT NULL,
        errors bigint NOT NULL,
        prompt_tokens bigint,
        completion_tokens bigint,
        cost_usd numeric(30, 10)"""
SPAN_COLUMNS = """latency_sum double precision,
        latency_n bigint NOT NULL,
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL"""

TABLES = (
    f"""
    CREATE TABLE llmtap.summary_hour (
        hour timestamptz PRIMARY KEY,
        {COUNT_COLUMNS},
        tokens_per_s_sum double precision,
        tokens_per_s_n bigint NOT NULL,
        latency_hist jsonb NOT NULL,
        ttft_hist jsonb NOT NULL
    )
    """,
    """
    CREATE TABLE llmtap.summary_failure_hour (
        hour timestamptz NOT NULL,
        outcome text NOT NULL,
        error_kind text,
        http_status integer,
        exchanges bigint NOT NULL,
        UNIQUE NULLS NOT DISTINCT (hour, outcome, error_kind, http_status)
    )
    """,
    f"""
    CREATE TABLE llmtap.summary_day (
        dimension text NOT NULL CHECK (dimension IN ('model', 'user')),
        day timestamptz NOT NULL,
        key text NOT NULL,
        {COUNT_COLUMNS},
        {SPAN_COLUMNS},
        latency_hist jsonb NOT NULL,
        PRIMARY KEY (dimension, day, key)
    )
    """,
    f"""
    CREATE TABLE llmtap.summary_session (
        session_id text PRIMARY KEY,
        session_name text,
        user_ids text[] NOT NULL,
        {COUNT_COLUMNS},
        {SPAN_COLUMNS}
    )
    """,
    """
    CREATE INDEX summary_session_last_seen_idx
        ON llmtap.summary_session (last_seen DESC, session_id DESC)
    """,
)

# Each statement adds the summaries of the exchanges in {rows}. The trigger
# runs them on its transition table, the back-fill on the whole table. The
# {counts} and {span} fragments fill the columns of the same names above.
HOUR = """
    INSERT INTO llmtap.summary_hour AS s
    SELECT date_trunc('hour', started_at, 'UTC'), {counts},
           sum(tokens_per_s), count(tokens_per_s),
           llmtap.hist_merge(array_agg(llmtap.hist_of(latency_ms))),
           llmtap.hist_merge(array_agg(llmtap.hist_of(ttft_ms)))
    FROM {rows}
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (hour) DO UPDATE SET
        {add_counts},
        {add_tokens_per_s},
        tokens_per_s_n = s.tokens_per_s_n + excluded.tokens_per_s_n,
        latency_hist = llmtap.hist_add(s.latency_hist, excluded.latency_hist),
        ttft_hist = llmtap.hist_add(s.ttft_hist, excluded.ttft_hist)
"""

FAILURE_HOUR = """
    INSERT INTO llmtap.summary_failure_hour AS s
    SELECT date_trunc('hour', started_at, 'UTC'), outcome, error_kind,
           http_status, count(*)
    FROM {rows}
    WHERE outcome <> 'success'
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    ON CONFLICT (hour, outcome, error_kind, http_status) DO UPDATE SET
        exchanges = s.exchanges + excluded.exchanges
"""

DAY = """
    INSERT INTO llmtap.summary_day AS s
    SELECT '{dimension}', date_trunc('day', started_at, 'UTC'), {column},
           {counts}, {span},
           llmtap.hist_merge(array_agg(llmtap.hist_of(latency_ms)))
    FROM {rows}
    WHERE {column} IS NOT NULL
    GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (dimension, day, key) DO UPDATE SET
        {add_counts},
        {add_span},
        latency_hist = llmtap.hist_add(s.latency_hist, excluded.latency_hist)
"""

SESSION = """
    INSERT INTO llmtap.summary_session AS s
    SELECT session_id, max(session_name),
           coalesce(array_agg(DISTINCT user_id)
                    FILTER (WHERE user_id IS NOT NULL), '{{}}'),
           {counts}, {span}
    FROM {rows}
    WHERE session_id IS NOT NULL
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (session_id) DO UPDATE SET
        session_name = greatest(s.session_name, excluded.session_name),
        user_ids = ARRAY(SELECT DISTINCT u
                         FROM unnest(s.user_ids || excluded.user_ids) AS u
                         ORDER BY u),
        {add_counts},
        {add_span}
"""

COUNTS = (
    "count(*), count(*) FILTER (WHERE outcome <> 'success'),"
    " sum(prompt_tokens), sum(completion_tokens), sum(cost_usd)"
)
SPAN = "sum(latency_ms), count(latency_ms), min(started_at), max(started_at)"


def add(column: str) -> str:
    """Return the update of a summed column, where a NULL sum takes the new value.

    NULL + x is NULL, so coalesce falls back to whichever side is not NULL.
    """
    return (
        f"{column} = coalesce(s.{column} + excluded.{column},"
        f" s.{column}, excluded.{column})"
    )


ADD_COUNTS = ", ".join(
    [
        "exchanges = s.exchanges + excluded.exchanges",
        "errors = s.errors + excluded.errors",
        add("prompt_tokens"),
        add("completion_tokens"),
        add("cost_usd"),
    ]
)
ADD_SPAN = ", ".join(
    [
        add("latency_sum"),
        "latency_n = s.latency_n + excluded.latency_n",
        "first_seen = least(s.first_seen, excluded.first_seen)",
        "last_seen = greatest(s.last_seen, excluded.last_seen)",
    ]
)


def summarise(template: str, rows: str, **names: str) -> str:
    """Return a summary statement over the relation rows."""
    return template.format(
        rows=rows,
        counts=COUNTS,
        span=SPAN,
        add_counts=ADD_COUNTS,
        add_span=ADD_SPAN,
        add_tokens_per_s=add("tokens_per_s_sum"),
        **names,
    )


def statements(rows: str) -> list[str]:
    """Return every summary statement over the relation rows, in a fixed order."""
    return [
        summarise(HOUR, rows),
        summarise(FAILURE_HOUR, rows),
        summarise(DAY, rows, dimension="model", column="model"),
        summarise(DAY, rows, dimension="user", column="user_id"),
        summarise(SESSION, rows),
    ]


# After a delete, the rows in the span [low, high) and the touched sessions are
# recomputed from the exchanges that remain. Retention deletes the oldest
# exchanges, so the span is the oldest hours and days.
RECOMPUTE_SPAN = (
    "(SELECT * FROM llmtap.exchange WHERE started_at >= low AND started_at < high)"
    " AS remaining"
)
RECOMPUTE_SESSIONS = (
    "(SELECT * FROM llmtap.exchange WHERE session_id IN"
    " (SELECT DISTINCT session_id FROM changed)) AS remaining"
)


def trigger_function() -> str:
    """Return the trigger function that keeps the summaries in step."""
    inserted = ";\n".join(statements("changed"))
    span = ";\n".join(statements(RECOMPUTE_SPAN)[:-1])
    sessions = summarise(SESSION, RECOMPUTE_SESSIONS)
    return f"""
    CREATE FUNCTION llmtap.summarise_exchanges() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, llmtap
    AS $$
    DECLARE
        low timestamptz;
        high timestamptz;
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {inserted};
            RETURN NULL;
        END IF;

        SELECT date_trunc('day', min(started_at), 'UTC'),
               date_trunc('day', max(started_at), 'UTC') + interval '1 day'
        INTO low, high FROM changed;
        IF low IS NULL THEN
            RETURN NULL;
        END IF;
        DELETE FROM llmtap.summary_hour WHERE hour >= low AND hour < high;
        DELETE FROM llmtap.summary_failure_hour
            WHERE hour >= low AND hour < high;
        DELETE FROM llmtap.summary_day WHERE day >= low AND day < high;
        DELETE FROM llmtap.summary_session
            WHERE session_id IN (SELECT session_id FROM changed);
        {span};
        {sessions};
        RETURN NULL;
    END
    $$
    """


CLEAR_FUNCTION = """
    CREATE FUNCTION llmtap.clear_summaries() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, llmtap
    AS $$
    BEGIN
        TRUNCATE llmtap.summary_hour, llmtap.summary_failure_hour,
                 llmtap.summary_day, llmtap.summary_session;
        RETURN NULL;
    END
    $$
"""

# Transition tables allow one event per trigger, so insert and delete each get
# their own trigger on the same function.
TRIGGERS = (
    """
    CREATE TRIGGER exchange_summarise_insert AFTER INSERT ON llmtap.exchange
        REFERENCING NEW TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION llmtap.summarise_exchanges()
    """,
    """
    CREATE TRIGGER exchange_summarise_delete AFTER DELETE ON llmtap.exchange
        REFERENCING OLD TABLE AS changed
        FOR EACH STATEMENT EXECUTE FUNCTION llmtap.summarise_exchanges()
    """,
    """
    CREATE TRIGGER exchange_summarise_truncate AFTER TRUNCATE ON llmtap.exchange
        FOR EACH STATEMENT EXECUTE FUNCTION llmtap.clear_summaries()
    """,
)

# The API's aggregate views read the summaries too, so that reading one of
# them costs a few thousand summary rows, not every exchange.
API_VIEWS = (
    """
    CREATE VIEW api.sessions AS
    SELECT session_id, session_name, exchanges, errors, prompt_tokens,
           completion_tokens, cost_usd,
           latency_sum / nullif(latency_n, 0) AS avg_latency_ms,
           first_seen, last_seen, cardinality(user_ids) AS users
    FROM llmtap.summary_session
    """,
    """
    CREATE VIEW api.users AS
    SELECT key AS user_id,
           (SELECT user_name FROM llmtap.exchange
            WHERE user_id = day.key ORDER BY started_at DESC LIMIT 1) AS user_name,
           {totals}
    FROM llmtap.summary_day AS day WHERE dimension = 'user'
    GROUP BY key
    """,
    """
    CREATE VIEW api.models AS
    SELECT model, exchanges, errors, prompt_tokens, completion_tokens, cost_usd,
           avg_latency_ms, first_seen, last_seen,
           llmtap.hist_quantile(latency, 0.5) AS p50_latency_ms,
           llmtap.hist_quantile(latency, 0.95) AS p95_latency_ms
    FROM (
        SELECT key AS model, {totals},
               llmtap.hist_merge(array_agg(latency_hist)) AS latency
        FROM llmtap.summary_day WHERE dimension = 'model'
        GROUP BY key
    ) AS merged
    """,
)
API_TOTALS = """
    sum(exchanges)::bigint AS exchanges, sum(errors)::bigint AS errors,
    sum(prompt_tokens)::bigint AS prompt_tokens,
    sum(completion_tokens)::bigint AS completion_tokens,
    sum(cost_usd) AS cost_usd,
    sum(latency_sum) / nullif(sum(latency_n), 0) AS avg_latency_ms,
    min(first_seen) AS first_seen, max(last_seen) AS last_seen
"""
API_VIEW_NAMES = "api.sessions, api.users, api.models"

SUMMARY_TABLES = (
    "llmtap.summary_hour",
    "llmtap.summary_failure_hour",
    "llmtap.summary_day",
    "llmtap.summary_session",
)
FUNCTIONS = (
    "summarise_exchanges()",
    "clear_summaries()",
    "hist_quantile(jsonb, double precision)",
    "hist_add(jsonb, jsonb)",
    "hist_merge(jsonb[])",
    "hist_of(double precision)",
    "hist_bin(double precision)",
)


def upgrade() -> None:
    for statement in (*HISTOGRAM_FUNCTIONS, *TABLES):
        op.execute(statement)

    # The lock holds the proxy's inserts back until the back-fill and the
    # triggers are both in place, so no exchange is counted twice or missed.
    op.execute("LOCK TABLE llmtap.exchange IN SHARE MODE")
    for statement in statements("llmtap.exchange"):
        op.execute(statement)
    for statement in (trigger_function(), CLEAR_FUNCTION, *TRIGGERS):
        op.execute(statement)

    op.execute(f"GRANT SELECT ON {', '.join(SUMMARY_TABLES)} TO llmtap_web")
    replace_api_views()


def replace_api_views() -> None:
    op.execute(f"DROP VIEW {API_VIEW_NAMES}")
    for view in API_VIEWS:
        op.execute(view.format(totals=API_TOTALS))
    # The same grants as the views they replace: no body or header is in them.
    op.execute(f"GRANT SELECT ON {API_VIEW_NAMES} TO llmtap_api_reader")
    op.execute(f"GRANT SELECT ON {API_VIEW_NAMES} TO llmtap_api_anon")
    op.execute("NOTIFY pgrst, 'reload schema'")


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {API_VIEW_NAMES}")
    dashboard = context.script.get_revision("0002").module
    dashboard.create_aggregate_views()
    op.execute(f"GRANT SELECT ON {API_VIEW_NAMES} TO llmtap_api_reader")
    op.execute(f"GRANT SELECT ON {API_VIEW_NAMES} TO llmtap_api_anon")
    for event in ("insert", "delete", "truncate"):
        op.execute(
            f"DROP TRIGGER IF EXISTS exchange_summarise_{event} ON llmtap.exchange"
        )
    op.execute(f"DROP TABLE IF EXISTS {', '.join(SUMMARY_TABLES)}")
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS llmtap.{signature}")
