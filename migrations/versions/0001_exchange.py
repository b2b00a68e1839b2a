"""Create the exchange table, its indexes and the read-only API views.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


# The dashboard pages newest first with a keyset on (started_at, id); the
# other indexes serve its filters and the per-user and per-model pages.
INDEXES = (
    ("exchange_started_idx", "(started_at DESC, id DESC)"),
    ("exchange_model_idx", "(model, started_at DESC)"),
    ("exchange_user_idx", "(user_id, started_at DESC)"),
    ("exchange_session_idx", "(session_id, started_at)"),
    ("exchange_outcome_idx", "(outcome, started_at DESC)"),
    ("exchange_path_idx", "(path, started_at DESC)"),
    ("exchange_properties_idx", "USING gin (properties jsonb_path_ops)"),
)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE llmtap.exchange (
            id uuid PRIMARY KEY,
            started_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            method text NOT NULL,
            path text NOT NULL,
            query text,
            target_url text,
            endpoint text NOT NULL,
            is_stream boolean NOT NULL DEFAULT false,
            model text,
            http_status integer,
            upstream_status integer,
            outcome text NOT NULL,
            error_kind text,
            error_message text,
            prompt_tokens integer,
            completion_tokens integer,
            total_tokens integer,
            cached_tokens integer,
            reasoning_tokens integer,
            usage_source text NOT NULL DEFAULT 'none',
            cost_usd numeric(20, 10),
            latency_ms double precision,
            ttft_ms double precision,
            first_byte_ms double precision,
            tokens_per_s double precision,
            user_id text,
            user_name text,
            user_email text,
            user_role text,
            user_source text,
            session_id text,
            session_path text,
            session_name text,
            properties jsonb NOT NULL DEFAULT '{}'::jsonb,
            client_addr text,
            request_headers jsonb,
            response_headers jsonb,
            request_body jsonb,
            response_body jsonb,
            request_bytes bigint,
            response_bytes bigint,
            request_truncated boolean NOT NULL DEFAULT false,
            response_truncated boolean NOT NULL DEFAULT false,
            request_omitted boolean NOT NULL DEFAULT false,
            response_omitted boolean NOT NULL DEFAULT false,
            prompt_text text,
            response_text text,
            reasoning_text text,
            tool_calls jsonb,
            choices jsonb,
            finish_reason text,
            timeline jsonb,
            notes jsonb NOT NULL DEFAULT '[]'::jsonb,
            sanitized boolean NOT NULL DEFAULT false,
            CONSTRAINT exchange_outcome_check CHECK (outcome IN (
                'success', 'upstream_http_error', 'in_stream_error',
                'upstream_incomplete', 'upstream_timeout',
                'client_disconnected', 'proxy_error'
            )),
            CONSTRAINT exchange_usage_source_check
                CHECK (usage_source IN ('reported', 'estimated', 'none'))
        )
        """
    )
    for name, definition in INDEXES:
        op.execute(f"CREATE INDEX {name} ON llmtap.exchange {definition}")

    op.execute("GRANT USAGE ON SCHEMA llmtap TO llmtap_proxy, llmtap_web")
    # ON CONFLICT (id) DO NOTHING reads the arbiter column, so the proxy also
    # needs SELECT on id; it is given nothing else to read.
    op.execute("GRANT INSERT ON llmtap.exchange TO llmtap_proxy")
    op.execute("GRANT SELECT (id) ON llmtap.exchange TO llmtap_proxy")
    op.execute("GRANT SELECT ON llmtap.exchange TO llmtap_web")

    _create_api_views()


def _create_api_views() -> None:
    op.execute(
        """
        CREATE VIEW api.exchanges AS
        SELECT id, started_at, method, path, query, target_url, endpoint,
               is_stream, model, http_status, upstream_status, outcome,
               error_kind, error_message, prompt_tokens, completion_tokens,
               total_tokens, cached_tokens, reasoning_tokens, usage_source,
               cost_usd, latency_ms, ttft_ms, first_byte_ms, tokens_per_s,
               user_id, user_name, user_email, user_role, session_id,
               session_path, session_name, properties, request_headers,
               response_headers, request_body, response_body, prompt_text,
               response_text, reasoning_text, tool_calls, choices,
               finish_reason, notes
        FROM llmtap.exchange
        """
    )
    op.execute("GRANT USAGE ON SCHEMA api TO llmtap_api_reader, llmtap_api_anon")
    op.execute("GRANT SELECT ON api.exchanges TO llmtap_api_reader")


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS api.exchanges")
    op.execute("DROP TABLE IF EXISTS llmtap.exchange")
