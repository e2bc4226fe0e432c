-- Post-deploy verification: one row per verified deployment. `result` moves from `pending` to a
-- final verdict (`passed`, `failed`, `inconclusive`) exactly once; `ended_at` is set with it, and
-- every replica folds final rows into deploywatch_deployment_verifications_total once per process.
CREATE TABLE deployment_verifications (
    deployment_id TEXT PRIMARY KEY,
    app           TEXT NOT NULL,
    result        TEXT NOT NULL,
    -- The verdict's reasons and evidence, as JSON.
    detail        TEXT NOT NULL,
    started_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX deployment_verifications_app ON deployment_verifications (app, started_at);
