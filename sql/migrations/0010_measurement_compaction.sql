-- Long experiments stay bounded: measurements older than the full-resolution horizon are thinned to one
-- row per host, arm, phase and bucket (control_plane/compaction.py). The row that is kept records how
-- many samples it stands for, and the analysis weights it by that count.
ALTER TABLE experiment_measurements ADD COLUMN represents integer NOT NULL DEFAULT 1;
-- One host's samples in time order: the analysis reads an experiment host by host.
CREATE INDEX experiment_measurements_host_ts ON experiment_measurements (experiment_id, host_id, ts);
