package store

// Schema migrations. Each kind of store has its own numbered list; a store records the
// version it is at (SQLite: PRAGMA user_version; PostgreSQL: the schema_version table), and
// opening it applies the migrations after that version in order, in one transaction, so a
// store is at one version or the next, never between. A store at a version newer than this
// bbsim knows is refused: its schema may mean what this code cannot read or would undo.
//
// Version 1 is the schema of the releases before stores had versions. Those stores are at
// version 0 with their tables in place, some without the columns added later, so migration
// 1 is written to adopt any of them (CREATE … IF NOT EXISTS, a column added where it is
// missing) as well as to create an empty store. Every later migration runs exactly once, on
// a store at the version before it, and needs no such guards: to change the schema, append
// a migration to both lists and never edit one that was released.

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/bbsim/bbsim/internal/statedir"
)

// A Migration takes a store's schema from the version before it to its own (its place in
// the list, from 1).
type Migration struct {
	Name string
	Up   func(ctx context.Context, tx *sql.Tx) error
}

// Script is a migration step that runs SQL statements.
func Script(stmts string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, stmts)
		return err
	}
}

// migrate applies to the store (what, at where), whose schema is at version have, the
// migrations of ms after it, in tx, and returns how many it applied. afresh tells the user
// what to do about a store newer than ms knows.
func migrate(ctx context.Context, tx *sql.Tx, what, where string, have int, ms []Migration, afresh string) (int, error) {
	if have > len(ms) {
		return 0, fmt.Errorf("%w: %s %s has schema version %d, and this bbsim knows versions up to %d: a newer bbsim wrote it; run that one%s",
			ErrNewer, what, where, have, len(ms), afresh)
	}
	if have < 0 {
		return 0, fmt.Errorf("%s %s has schema version %d, which no bbsim writes", what, where, have)
	}
	for v := have + 1; v <= len(ms); v++ {
		if err := ms[v-1].Up(ctx, tx); err != nil {
			return 0, fmt.Errorf("migrate %s %s to schema version %d (%s): %w", what, where, v, ms[v-1].Name, err)
		}
	}
	return len(ms) - have, nil
}

// MigrateSQLite brings the schema of the SQLite store (what, at path) to the last version
// of ms, in one transaction, recording it in PRAGMA user_version, and returns how many
// migrations it applied. A store at a newer version is refused (ErrNewer).
func MigrateSQLite(ctx context.Context, db *sql.DB, what, path string, ms []Migration) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return 0, fmt.Errorf("read %s %s schema version: %w", what, path, err)
	}
	n, err := migrate(ctx, tx, what, path, have, ms, "; "+statedir.Afresh)
	if err != nil || n == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(ms))); err != nil {
		return 0, fmt.Errorf("record %s %s schema version: %w", what, path, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate %s %s: %w", what, path, err)
	}
	return n, nil
}
