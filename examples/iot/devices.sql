-- The device dimension table of examples/iot: load it once with
--   psql -h 127.0.0.1 -U postgres test -f examples/iot/devices.sql
CREATE TABLE IF NOT EXISTS iot_devices (
    device   text PRIMARY KEY,
    site     text NOT NULL,
    owner    text,
    max_temp float8
);
INSERT INTO iot_devices VALUES
    ('d1', 'berlin-north', 'facilities', 80),
    ('d2', 'berlin-north', 'facilities', 60),
    ('d3', 'hangzhou-east', 'lab', NULL)
ON CONFLICT (device) DO NOTHING;
