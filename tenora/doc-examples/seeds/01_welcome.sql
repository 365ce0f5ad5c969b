INSERT INTO notes (body) VALUES ('Welcome!');
