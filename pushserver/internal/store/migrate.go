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
)

// A migration takes a store's schema from the version before it to its own (its place in
// the list, from 1).
type migration struct {
	name string
	up   func(ctx context.Context, tx *sql.Tx) error
}

// script is a migration step that runs SQL statements.
func script(stmts string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, stmts)
		return err
	}
}

// migrate applies to the store at where, whose schema is at version have, the migrations
// of ms after it, in tx, and returns how many it applied. afresh tells the user what to do
// about a store newer than ms knows.
func migrate(ctx context.Context, tx *sql.Tx, where string, have int, ms []migration, afresh string) (int, error) {
	if have > len(ms) {
		return 0, fmt.Errorf("%w: push store %s has schema version %d, and this bbsim knows versions up to %d: a newer bbsim wrote it; run that one%s",
			ErrNewer, where, have, len(ms), afresh)
	}
	if have < 0 {
		return 0, fmt.Errorf("push store %s has schema version %d, which no bbsim writes", where, have)
	}
	for v := have + 1; v <= len(ms); v++ {
		if err := ms[v-1].up(ctx, tx); err != nil {
			return 0, fmt.Errorf("migrate push store %s to schema version %d (%s): %w", where, v, ms[v-1].name, err)
		}
	}
	return len(ms) - have, nil
}
