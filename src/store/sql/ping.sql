-- Health check: the database answers. No parameters.
SELECT 1 AS ok
