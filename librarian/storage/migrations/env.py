"""Alembic environment for the catalog. Run through :func:`librarian.storage.catalog.migrate`."""

from alembic import context
from sqlalchemy import text

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="catalog_schema_version")
with context.begin_transaction():
    # Several processes may start at once; one migrates, the others wait and find nothing to do.
    connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    context.run_migrations()
