package pgtest

import (
	"database/sql"
	"testing"
)

func TestStart(t *testing.T) {
	s := Start(t)
	db, err := sql.Open("pgx", s.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow("SHOW server_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	t.Log(v)
}
