-- Tenora's tenant registry: one row per tenant database.
CREATE TABLE tenora_tenants (
    id VARCHAR(63) NOT NULL PRIMARY KEY,
    password TEXT,
    state VARCHAR(16) NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
