-- Bluetooth mesh nodes this gateway provisioned over a real radio, so a
-- restarted gateway still knows them: the unicast address it gave each,
-- its BLE address (to find its proxy again) and its device key, sealed
-- with AES-256-GCM under a key derived from the gateway's secret seed
-- (nonce || ciphertext || tag; the device id is the associated data).
CREATE TABLE mesh_nodes (
    address INTEGER PRIMARY KEY,
    device TEXT NOT NULL UNIQUE,
    ble_address TEXT NOT NULL,
    device_key BLOB NOT NULL
);

-- The sequence numbers this gateway's mesh element may have used: it
-- reserves a block before sending from it, so after a restart it resumes
-- above anything a node has seen and its messages are not taken for
-- replays.
CREATE TABLE mesh_sequence (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    reserved INTEGER NOT NULL
);
