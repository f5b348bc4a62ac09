"""The job store's schema: tables, states, row types, and the database engine set-up.

One ``requests`` table is both the API's record of a request and the queue item; beside it the
request logs, the webhook outbox, API keys and server secrets. SQLAlchemy Core, created by
``metadata.create_all`` on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event

# How a request ended badly: its one stored shape lives with the error model.
from stillreel.errors import Failure  # noqa: F401 (re-exported)

QUEUED, RUNNING, CANCELING = "QUEUED", "RUNNING", "CANCELING"
SUCCEEDED, FAILED, CANCELED, TIMED_OUT = "SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"
TERMINAL = (SUCCEEDED, FAILED, CANCELED, TIMED_OUT)
ACTIVE = (RUNNING, CANCELING)
PRIORITIES = {"low": 0, "normal": 1, "high": 2}

metadata = sa.MetaData()

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("endpoint_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=1),
    sa.Column("input", sa.JSON, nullable=False),
    sa.Column("plan", sa.JSON, nullable=False),
    sa.Column("engine", sa.JSON, nullable=False),
    sa.Column("base_url", sa.String(500), nullable=False),
    sa.Column("key_id", sa.String(64)),
    sa.Column("webhook_url", sa.Text),
    sa.Column("start_deadline", sa.Float),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("worker_id", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("result", sa.JSON),
    sa.Column("error", sa.JSON),  # written and read only by stillreel.errors.Failure (to_row / from_row)
    sa.Column("error_type", sa.String(64)),
    sa.Column("error_status", sa.Integer),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("inference_time", sa.Float),
    sa.Index("ix_requests_queue", "status", "priority", "seq"),
    sa.Index("ix_requests_key", "key_id", "seq"),
)

request_logs = sa.Table(
    "request_logs",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
)

webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(36), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, default="pending"),  # pending|delivered|failed
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.Float),
    sa.Index("ix_outbox_due", "state", "next_attempt_at"),
)

# Outputs being stored: a worker writes the row before it uploads and removes it once its finish
# recorded the file (or it deleted the file itself). A row whose attempt can no longer finish is an
# orphan upload (a worker killed or cut off between upload and finish); jobs/uploads.py sweeps it.
output_uploads = sa.Table(
    "output_uploads",
    metadata,
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

server_secrets = sa.Table(
    "server_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    endpoint_id: str
    status: str
    priority: int
    input: dict
    plan: dict
    engine: dict
    base_url: str
    key_id: str | None
    webhook_url: str | None
    start_deadline: float | None
    attempts: int
    worker_id: str | None
    lease_until: float | None
    progress: float
    result: dict | None
    error: dict | None
    error_type: str | None
    error_status: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    inference_time: float | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class QueueFull(Exception):
    def __init__(self, length: int):
        super().__init__(f"the queue is full ({length} requests waiting)")
        self.length = length


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; take the write lock up front so that
        # read-then-write transactions never deadlock on lock upgrades.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


# Any constant shared by every stillreel process: the advisory lock that serialises schema creation.
_SCHEMA_LOCK = 0x5354494C  # "STIL"


def create_schema(engine: sa.Engine, tables: sa.MetaData = metadata) -> None:
    """Create the tables of ``tables`` that are missing. On PostgreSQL, under an advisory lock: two
    replicas starting on one empty database would otherwise race in CREATE TABLE and one would fail."""
    if engine.dialect.name != "postgresql":
        tables.create_all(engine)
        if "requests" in tables.tables:
            install_queue_depth(engine)
        return
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
        tables.create_all(conn)


# SQLite: the queue's length per priority, kept by triggers in every transaction that puts a
# request into the queue or takes one out (whichever code or version of stillreel writes it), so
# that a group of submits reads its queue positions from a row per priority instead of counting
# the queue (a scan of every queued row: ~0.5 ms at 10,000, inside the write lock that every
# process's writes wait for). Triggers are safe here because SQLite has one writer at a time; on
# PostgreSQL, rows locked in different orders by concurrent transactions could deadlock, so it
# counts (``submits._write_at_once``).
QUEUE_DEPTH_DDL = (
    "CREATE TABLE IF NOT EXISTS queue_depth (priority INTEGER PRIMARY KEY, queued INTEGER NOT NULL)",
    f"""CREATE TRIGGER IF NOT EXISTS queue_depth_insert AFTER INSERT ON requests
        WHEN NEW.status = '{QUEUED}' BEGIN
          INSERT INTO queue_depth (priority, queued) VALUES (NEW.priority, 1)
            ON CONFLICT (priority) DO UPDATE SET queued = queued + 1;
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS queue_depth_delete AFTER DELETE ON requests
        WHEN OLD.status = '{QUEUED}' BEGIN
          UPDATE queue_depth SET queued = queued - 1 WHERE priority = OLD.priority;
        END""",
    f"""CREATE TRIGGER IF NOT EXISTS queue_depth_update AFTER UPDATE OF status, priority ON requests
        WHEN OLD.status = '{QUEUED}' OR NEW.status = '{QUEUED}' BEGIN
          UPDATE queue_depth SET queued = queued - 1 WHERE OLD.status = '{QUEUED}' AND priority = OLD.priority;
          INSERT INTO queue_depth (priority, queued) SELECT NEW.priority, 1 WHERE NEW.status = '{QUEUED}'
            ON CONFLICT (priority) DO UPDATE SET queued = queued + 1;
        END""",
)
QUEUE_DEPTH_TRIGGERS = ("queue_depth_insert", "queue_depth_delete", "queue_depth_update")
QUEUE_DEPTH_SQL = "SELECT priority, queued FROM queue_depth WHERE queued > 0"  # what submits read


def install_queue_depth(engine: sa.Engine) -> None:
    """The table and its triggers, where missing; then the table filled from a count of the queue,
    in the same transaction (BEGIN IMMEDIATE: no other writer between the count and the triggers),
    so a database made by an older version starts exact. Read first: a start where all is in place
    (every start but the first) takes no write lock."""

    def installed(conn) -> bool:
        have = {name for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        return set(QUEUE_DEPTH_TRIGGERS) <= have

    with engine.connect() as conn:
        if installed(conn):
            return
        conn.rollback()  # end the read; the write transaction below looks again under the lock
        conn.info["write"] = True
        with conn.begin():
            if installed(conn):  # another process installed them meanwhile
                return
            for ddl in QUEUE_DEPTH_DDL:
                conn.exec_driver_sql(ddl)
            conn.exec_driver_sql("DELETE FROM queue_depth")
            conn.exec_driver_sql("INSERT INTO queue_depth (priority, queued) SELECT priority, count(*) FROM requests "
                                 f"WHERE status = '{QUEUED}' GROUP BY priority")
