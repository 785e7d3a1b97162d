"""Alembic environment: always run by ezlink on a connection it hands over.

`ezlink.accounts.store.database.migrate` calls Alembic with the connection in
``config.attributes["connection"]``, so there is no alembic.ini and no URL here.
"""

from __future__ import annotations

from alembic import context

from ezlink.accounts.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
