-- The business KPI of a workflow as people record it (`shopfloor outcomes record`), and the
-- indexes the outcome figures group by.
CREATE TABLE kpi_values (
    id             TEXT PRIMARY KEY,
    workflow       TEXT NOT NULL,
    value          DOUBLE PRECISION NOT NULL,
    at_ms          BIGINT NOT NULL,
    note           TEXT,
    recorded_by    TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL
);

CREATE INDEX kpi_values_workflow ON kpi_values (workflow, at_ms);
-- Outcomes read a workflow's decided reviews by the time of their run.
CREATE INDEX reviews_workflow_created ON reviews (workflow, created_at_ms);
