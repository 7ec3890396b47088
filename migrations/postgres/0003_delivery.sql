-- What delivery did with a notice: the channel and language used, the text sent (erased by the
-- retention purge), the provider's id, attempts, and when it went out.
ALTER TABLE notices ADD COLUMN channel TEXT;
ALTER TABLE notices ADD COLUMN language TEXT;
ALTER TABLE notices ADD COLUMN body TEXT;
ALTER TABLE notices ADD COLUMN provider_id TEXT;
ALTER TABLE notices ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notices ADD COLUMN sent_at BIGINT;
