-- The notices' unique key compares text on every insert, some twenty comparisons a row. Under
-- a locale's collation (what a cluster gets from its locale: C.UTF-8, en_US.UTF-8, ICU) each
-- comparison goes through strcoll or ICU; "C" compares bytes. A million rows into the unique
-- index alone, psql COPY: 2.53 s under C.UTF-8, 3.28 s under en-US ICU, 2.38 s under "C". The
-- key's order means nothing to anyone (ids and fixed words), so it is bytewise whatever the
-- cluster's locale. No query compares these columns with another table's, so no comparison
-- meets two collations.
ALTER TABLE notices
    ALTER COLUMN customer_id TYPE TEXT COLLATE "C",
    ALTER COLUMN kind TYPE TEXT COLLATE "C",
    ALTER COLUMN variant TYPE TEXT COLLATE "C",
    ALTER COLUMN fault_id TYPE TEXT COLLATE "C";
