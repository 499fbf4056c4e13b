"""The SQL store: jobs, pods, events, users; SQLite (WAL) or PostgreSQL, Alembic-migrated."""
