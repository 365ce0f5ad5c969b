-- Every new tenant starts with one admin user.
INSERT INTO users (email, name) VALUES ('admin@example.com', 'Admin');
