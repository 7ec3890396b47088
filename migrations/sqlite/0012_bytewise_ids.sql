-- PostgreSQL's 0012 makes customer and fault ids compare bytewise; SQLite's default collation
-- (BINARY) already does. Numbered to keep the two in step.
SELECT 1;
