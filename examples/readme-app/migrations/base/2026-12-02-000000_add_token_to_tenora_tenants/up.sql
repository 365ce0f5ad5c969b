-- Proof of ownership: the token Tenora writes onto each tenant's database objects.
ALTER TABLE tenora_tenants ADD COLUMN token VARCHAR(64);
