-- One dead letter per bad message: a redelivery of the same bytes on the same topic
-- bumps `seen` instead of adding a copy.
ALTER TABLE dead_letters ADD COLUMN digest text;
ALTER TABLE dead_letters ADD COLUMN seen integer NOT NULL DEFAULT 1;
CREATE UNIQUE INDEX dead_letters_digest ON dead_letters (digest);
