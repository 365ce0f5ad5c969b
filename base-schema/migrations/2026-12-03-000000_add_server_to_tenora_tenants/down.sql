ALTER TABLE tenora_tenants DROP COLUMN server;
