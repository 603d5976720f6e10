package store

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/internal/pgtest"
	"github.com/bbsim/bbsim/rim"
)

// copyFixture copies testdata/name into a fresh directory as push.db and returns the
// directory.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "push.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sqliteVersion reads the schema version of the SQLite store in dir, as another program
// would.
func sqliteVersion(t *testing.T, dir string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "push.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// fixturePushes is what testdata/push.db holds (README.md there): every push with its
// recipients' PIN, state, code and whether a reason and a transport time were kept.
var fixturePushes = []struct {
	id, source string
	recips     []string // PIN state code reason? transport?
}{
	{"r1", "", []string{"2100000A delivered 1000 - -"}},
	{"k1", "", []string{"2100000A failed 400 reason -"}},
	{"b1", "com.example.chat", []string{"2100000A delivered 1000 - -"}},
	{"p1", "", []string{"2100000A delivered 1000 - transport", "2100000B queued 0 - -"}},
	{"c1", "", []string{"2100000B cancelled 0 - -"}},
	{"q1", "", []string{"2100000A queued 0 - -"}},
}

// checkFixture checks that st holds the pushes of testdata/push.db, their states and their
// open recipients.
func checkFixture(t *testing.T, st Store) {
	t.Helper()
	for _, fp := range fixturePushes {
		ps, err := st.PushStatus(t.Context(), AnySource, fp.id)
		if err != nil {
			t.Fatalf("PushStatus(%s) = %v", fp.id, err)
		}
		if ps.Source != fp.source || ps.AcceptedAt.IsZero() || len(ps.Recipients) != len(fp.recips) {
			t.Fatalf("PushStatus(%s) = %+v, want source %q and %d recipients", fp.id, ps, fp.source, len(fp.recips))
		}
		for i, r := range ps.Recipients {
			reason, transport := "-", "-"
			if r.Reason != "" {
				reason = "reason"
			}
			if !r.TransportAt.IsZero() {
				transport = "transport"
			}
			if got := fmt.Sprintf("%s %s %d %s %s", r.PIN, r.State, r.Code, reason, transport); got != fp.recips[i] {
				t.Errorf("push %s recipient %d = %q, want %q", fp.id, i, got, fp.recips[i])
			}
		}
	}
	open, err := st.LoadOpen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range open {
		if !strings.Contains(string(o.Push.Header), "Browser-Message") || len(o.Push.Body) == 0 {
			t.Errorf("open push %s: headers %s, body %q", o.Push.ID, o.Push.Header, o.Push.Body)
		}
		for _, r := range o.Recipients {
			got = append(got, o.Push.ID+" "+r.PIN+" "+string(r.State))
		}
	}
	if want := []string{"p1 2100000B queued", "q1 2100000A queued"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("open recipients = %q, want %q", got, want)
	}
}

// TestOpenStoreOfLastRelease: the push store a release before schema versions left
// (testdata/push.db, pushes in every state) opens migrated to the current version, with
// every push and state; opening it again migrates nothing.
func TestOpenStoreOfLastRelease(t *testing.T) {
	t.Parallel()
	dir := copyFixture(t, "push.db")
	if v := sqliteVersion(t, dir); v != 0 {
		t.Fatalf("fixture at schema version %d, want 0 (unversioned)", v)
	}
	for i, wantApplied := range []int{len(sqliteMigrations), 0} {
		st, err := Open(t.Context(), Options{Dir: dir})
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		if got := st.(engine).core().applied; got != wantApplied {
			t.Errorf("open %d applied %d migrations, want %d", i+1, got, wantApplied)
		}
		checkFixture(t, st)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if v := sqliteVersion(t, dir); v != len(sqliteMigrations) {
			t.Fatalf("after open %d: schema version %d, want %d", i+1, v, len(sqliteMigrations))
		}
	}
}

// TestOpenStoreWithoutReason: a store from before recipients had a reason gets the column.
func TestOpenStoreWithoutReason(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "push.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := strings.Replace(sqliteV1, "reason TEXT NOT NULL DEFAULT '', -- the device's words when it refused the push", "", 1)
	if old == sqliteV1 {
		t.Fatal("no reason column in the schema to leave out")
	}
	_, err = db.Exec(old + `INSERT INTO pushes(push_id,source,headers,body,accepted_at) VALUES('old','','{}','x',1);
		INSERT INTO recipients(pid,pin,port,state,updated_at) VALUES(1,'2100000A',7874,'delivered',2)`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(t.Context(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetState(t.Context(), 1, Update{State: "failed", Code: 400, Reason: "refused", At: fromMs(3)}); err != nil {
		t.Fatal(err)
	}
	ps, err := st.PushStatus(t.Context(), AnySource, "old")
	if err != nil || len(ps.Recipients) != 1 || ps.Recipients[0].Reason != "refused" {
		t.Fatalf("PushStatus(old) = %+v, %v; want its recipient with reason refused", ps, err)
	}
}

// TestOpenNewerStore: a store at a schema version this bbsim does not know is refused,
// naming the store and its version, and left as it was.
func TestOpenNewerStore(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	for _, tc := range []struct {
		name, url string
		setNewer  string
		known     int
	}{
		{"sqlite", "", "PRAGMA user_version = 99", len(sqliteMigrations)},
		{"postgres", pg.NewDatabase(t), "UPDATE schema_version SET version = 99", len(pgMigrations)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := Open(t.Context(), Options{Dir: dir, URL: tc.url})
			if err != nil {
				t.Fatal(err)
			}
			where := st.(engine).core().d.where
			if _, err := st.(engine).core().db.Exec(tc.setNewer); err != nil {
				t.Fatal(err)
			}
			st.Close()
			_, err = Open(t.Context(), Options{Dir: dir, URL: tc.url})
			if !errors.Is(err, ErrNewer) {
				t.Fatalf("Open = %v, want ErrNewer", err)
			}
			for _, want := range []string{where, "schema version 99", fmt.Sprintf("up to %d", tc.known)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open = %q, want it to say %q", err, want)
				}
			}
		})
	}
}

// TestOpenPostgresOfLastRelease: a PostgreSQL store whose schema the releases before
// schema versions made (their script, kept as migration 1) opens migrated to the current
// version with its pushes; opening it again migrates nothing.
func TestOpenPostgresOfLastRelease(t *testing.T) {
	t.Parallel()
	url := pgtest.Start(t).NewDatabase(t)
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), pgV1); err != nil {
		t.Fatalf("the last release's schema: %v", err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO pushes(push_id,source,headers,body,accepted_at,gateway) VALUES('old','','{}','x',1,'default');
		INSERT INTO recipients(pid,pin,port,state,updated_at,gateway) SELECT id,'2100000A',7874,'queued',1,'default' FROM pushes;
		INSERT INTO recipients(pid,pin,port,state,code,reason,updated_at) SELECT id,'2100000B',7874,'failed',400,'refused',2 FROM pushes`); err != nil {
		t.Fatal(err)
	}
	for i, wantApplied := range []int{len(pgMigrations), 0} {
		st, err := Open(t.Context(), Options{URL: url})
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		if got := st.(engine).core().applied; got != wantApplied {
			t.Errorf("open %d applied %d migrations, want %d", i+1, got, wantApplied)
		}
		ps, err := st.PushStatus(t.Context(), AnySource, "old")
		if err != nil || len(ps.Recipients) != 2 || ps.Recipients[0].State != rim.StateQueued || ps.Recipients[1].Reason != "refused" {
			t.Fatalf("PushStatus(old) = %+v, %v", ps, err)
		}
		if open, err := st.LoadOpen(t.Context()); err != nil || len(open) != 1 || len(open[0].Recipients) != 1 {
			t.Fatalf("LoadOpen = %+v, %v; want the queued recipient", open, err)
		}
		st.Close()
		var v int
		if err := db.QueryRowContext(t.Context(), "SELECT version FROM schema_version").Scan(&v); err != nil || v != len(pgMigrations) {
			t.Fatalf("after open %d: schema version %d, %v; want %d", i+1, v, err, len(pgMigrations))
		}
	}
}

// TestMigrationsInOneTransaction: the migrations after a store's version run in order in
// one transaction, so when one fails the store stays at its version with none of them
// applied, and the error names the store, the version and the migration.
func TestMigrationsInOneTransaction(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms := []Migration{
		{"a table", Script("CREATE TABLE a(x INTEGER)")},
		{"a row", Script("INSERT INTO a VALUES(1)")},
		{"a mistake", Script("INSERT INTO nowhere VALUES(1)")},
	}
	if n, err := MigrateSQLite(t.Context(), db, "test store", path, ms[:1]); err != nil || n != 1 {
		t.Fatalf("MigrateSQLite(version 1) = %d, %v; want 1 applied", n, err)
	}
	_, err = MigrateSQLite(t.Context(), db, "test store", path, ms)
	for _, want := range []string{"test store " + path, "schema version 3", "a mistake", "nowhere"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MigrateSQLite(versions 2 and 3) = %v, want an error with %q", err, want)
		}
	}
	var v, rows int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 1 {
		t.Errorf("schema version after the failed migration = %d, %v; want 1", v, err)
	}
	if err := db.QueryRow("SELECT COUNT(*) FROM a").Scan(&rows); err != nil || rows != 0 {
		t.Errorf("rows of migration 2 after migration 3 failed = %d, %v; want 0", rows, err)
	}
	if n, err := MigrateSQLite(t.Context(), db, "test store", path, ms[:2]); err != nil || n != 1 {
		t.Fatalf("MigrateSQLite(version 2) = %d, %v; want 1 applied", n, err)
	}
	if n, err := MigrateSQLite(t.Context(), db, "test store", path, ms[:2]); err != nil || n != 0 {
		t.Fatalf("MigrateSQLite(version 2) again = %d, %v; want none applied", n, err)
	}
}
