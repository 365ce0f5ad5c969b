ALTER TABLE tenora_tenants DROP COLUMN migration_fingerprint;
ALTER TABLE tenora_tenants DROP COLUMN migration_version;
