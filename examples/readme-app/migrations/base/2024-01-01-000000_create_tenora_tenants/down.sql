DROP TABLE tenora_tenants;
