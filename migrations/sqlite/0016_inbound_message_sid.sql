-- Inbound SMS already answered, by the provider's message id (Twilio's MessageSid). A webhook
-- delivered twice (a provider's retry, or a signed request replayed by whoever captured it)
-- finds its sid here and changes nothing: an OUT is counted once, a STOP or a YES acted on once.
-- A row is a sid and a time; inbound replies are few, so rows are kept (a signature does not
-- expire, so neither may the memory of what it signed).
CREATE TABLE inbound_messages (
    message_sid TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
