-- An administrator's consent (an Ed25519 signature over the chain's
-- adoption payload) for this gateway to register the devices it pairs as
-- theirs. NULL: devices are registered unowned and claimed one by one.
ALTER TABLE gateway_admins ADD COLUMN adoption BLOB;
