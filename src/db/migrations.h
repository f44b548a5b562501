/*
 * The SQL migrations (sql/NNN_name.sql), embedded in the binary at build time by
 * cmake/migrations.cmake. `revd db migrate` applies them in order.
 */
#ifndef REVD_DB_MIGRATIONS_H
#define REVD_DB_MIGRATIONS_H

#include <stddef.h>

struct db_migration {
	int version;      /* NNN: 1, 2, ... consecutive */
	const char *name; /* the file name without .sql, e.g. "001_schema" */
	const char *sql;  /* the whole file; it records its version in revd_schema */
};

/* In version order; db_migrations[db_migrations_count - 1] is the newest. */
extern const struct db_migration db_migrations[];
extern const size_t db_migrations_count;

/* pg_advisory_xact_lock(DB_MIGRATE_LOCK_CLASS, DB_MIGRATE_LOCK_OBJECT) serialises
 * migrations: 'revd' and 1. */
#define DB_MIGRATE_LOCK_CLASS 0x72657664
#define DB_MIGRATE_LOCK_OBJECT 1

#endif
