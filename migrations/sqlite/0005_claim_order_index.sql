-- A claim takes the first queued task in (priority, created_at, id) order. The old index stopped at
-- created_at, so tasks created in one group commit (one created_at) were sorted in full on every
-- claim: ~190 ms per claim with 8,000 queued. With id in the index the claim reads one entry.
CREATE INDEX tasks_claim_order ON tasks (queue, state, priority, created_at, id);
DROP INDEX tasks_claim;
