-- Receipts find their notice by the id in the status callback's URL (`notice=`), not by the
-- provider's message id. Provider ids are random, so their index took an insert at a random
-- leaf per notice sent: in a fan-out, a page written per notice at every commit, more than all
-- the other work of recording a send (docs/PERFORMANCE.md). Callbacks without the id (messages
-- sent before this change) are still found by provider id, by a scan.
DROP INDEX notices_provider;
