-- Placement: the database server that holds each tenant's database.
ALTER TABLE tenora_tenants ADD COLUMN server VARCHAR(63) NOT NULL DEFAULT 'default';
