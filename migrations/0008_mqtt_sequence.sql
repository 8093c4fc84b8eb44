-- The highest report sequence number accepted from each MQTT device, so a
-- restarted gateway still refuses replays of older reports.
ALTER TABLE mqtt_users ADD COLUMN last_seq INTEGER;
