-- One running experiment per prompt, whoever starts it and however many start at once.
CREATE UNIQUE INDEX experiments_one_running ON experiments (prompt) WHERE state = 'running';
