-- An eval of only the first N cases of its dataset (`eval --limit N`) proves nothing about
-- its version's gates: promotion and experiment eligibility read only complete evals.

ALTER TABLE evals ADD COLUMN case_limit BIGINT;
