"""Jobs as people see them: the record and event schema, and their store in Redis."""
