"""The registry database (``registry.db``): nodes, their events, join tokens, jobs, holdings.

Version 1 is the schema of release 0.1.0, kept verbatim (``IF NOT EXISTS``), so a 0.1.0
database takes version 1 without a change. Never edit a released migration: append one.
"""

from __future__ import annotations

from gpuhive.migrations import Migration, check_order

V1_RELEASE_0_1_0 = """
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    public_key TEXT NOT NULL DEFAULT '',
    host_key TEXT NOT NULL DEFAULT '',
    forward_port INTEGER,
    address TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL DEFAULT '',
    hardware TEXT,
    status TEXT NOT NULL,
    status_reason TEXT NOT NULL DEFAULT '',
    agent_state TEXT NOT NULL DEFAULT '',
    registered_at REAL NOT NULL,
    last_heartbeat REAL,
    connected_since REAL,
    public_addr TEXT NOT NULL DEFAULT '',
    removed_at REAL,
    software TEXT NOT NULL DEFAULT '{}',
    policy TEXT NOT NULL DEFAULT '{}',
    reliability TEXT NOT NULL DEFAULT '{}',
    tasks TEXT NOT NULL DEFAULT '{}',
    thermal_events TEXT NOT NULL DEFAULT '[]',
    link TEXT NOT NULL DEFAULT '{}',
    overlay TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_live_name ON nodes(name) WHERE removed_at IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS nodes_live_port ON nodes(forward_port)
    WHERE removed_at IS NULL AND forward_port IS NOT NULL;
CREATE TABLE IF NOT EXISTS node_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    at REAL NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS node_events_node ON node_events(node_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    max_uses INTEGER NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    nodes TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    reason TEXT NOT NULL DEFAULT '',
    events TEXT NOT NULL DEFAULT '[]'
);
"""

# issue 12: what every job and replica holds on a node (core/holdings), kept after release
# for the ledger; the partial index keeps placement's read of the live ones cheap
V2_HOLDINGS = """
CREATE TABLE holdings (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    node_id TEXT NOT NULL,
    node TEXT NOT NULL,
    gpus TEXT NOT NULL DEFAULT '[]',
    vram_mib INTEGER NOT NULL DEFAULT 0,
    ram_mib INTEGER NOT NULL DEFAULT 0,
    processes INTEGER NOT NULL DEFAULT 0,
    client TEXT NOT NULL DEFAULT 'owner',
    placed_at REAL NOT NULL,
    released_at REAL,
    release_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX holdings_live ON holdings(node_id) WHERE released_at IS NULL;
CREATE INDEX holdings_owner ON holdings(owner);
CREATE INDEX holdings_released ON holdings(released_at);
"""

REGISTRY_MIGRATIONS = (
    Migration(1, "release 0.1.0: nodes, node events, join tokens, jobs", V1_RELEASE_0_1_0),
    Migration(2, "holdings: GPUs, RAM and processes each job and replica holds", V2_HOLDINGS),
)
check_order(REGISTRY_MIGRATIONS)
