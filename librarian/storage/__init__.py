"""Where the library lives: the catalog (PostgreSQL), files (disk or S3) and vectors (Qdrant)."""
