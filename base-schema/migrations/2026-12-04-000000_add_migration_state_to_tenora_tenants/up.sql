-- Migration state: what each tenant's last migration run left applied.
ALTER TABLE tenora_tenants ADD COLUMN migration_version VARCHAR(64);
ALTER TABLE tenora_tenants ADD COLUMN migration_fingerprint VARCHAR(64);
