-- Channels that failed permanently for a notice, |-separated: delivery falls back past them.
ALTER TABLE notices ADD COLUMN failed_channels TEXT NOT NULL DEFAULT '';
