-- PostgreSQL's 0011 turns the notices' fault index into a bloom BRIN; SQLite has no BRIN and
-- keeps its B-tree (its fan-out meets its targets with it). Numbered to keep the two in step.
SELECT 1;
