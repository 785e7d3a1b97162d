"""The accounts database: SQLAlchemy tables, Alembic migrations, queries."""
