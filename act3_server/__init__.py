"""act3_server: the reference ACT3 credits service (FastAPI + SQLAlchemy Core, SQLite or PostgreSQL)."""

__version__ = "0.1.0"
