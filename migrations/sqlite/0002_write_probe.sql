-- One row that readiness rewrites while writes are failing, to notice when the store recovers.
CREATE TABLE write_probe (
    id BIGINT PRIMARY KEY,
    at BIGINT NOT NULL
);
