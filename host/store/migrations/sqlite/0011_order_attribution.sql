-- What placed each order: the version of the agent, and the event it was handling (for a
-- trade executor, the signal) as JSON {event, topic, source, source_version}.
ALTER TABLE orders ADD COLUMN agent_version INTEGER;
ALTER TABLE orders ADD COLUMN trigger TEXT;
