"""PostgreSQL: typed models, engine/session factories and migrations."""
