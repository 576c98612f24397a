"""Alembic environment: migrations run on the connection rag.store.db.migrate hands over."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=False)
with context.begin_transaction():
    context.run_migrations()
