package store

// Device secrets: the hash of each PIN's proof of identity on the device link, which the
// gateway keeps since the PIN's first attach (pushserver's secret.go).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// deviceSecretsV2 is migration 2 of both stores: the device_secrets table.
const deviceSecretsV2 = `CREATE TABLE device_secrets(
	pin TEXT PRIMARY KEY,
	hash TEXT NOT NULL, -- SHA-256 of the device's secret, in hex
	issued_at BIGINT NOT NULL
)`

// DeviceSecret reads the hash of pin's device secret, "" when it has none.
func (st *base) DeviceSecret(ctx context.Context, pin string) (string, error) {
	var hash string
	err := st.db.QueryRowContext(ctx, st.d.bind("SELECT hash FROM device_secrets WHERE pin=?"), pin).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read device secret of %s: %w", pin, err)
	}
	return hash, nil
}

// DeviceSecrets reads every device secret's hash, by PIN.
func (st *base) DeviceSecrets(ctx context.Context) (map[string]string, error) {
	rows, err := st.db.QueryContext(ctx, "SELECT pin, hash FROM device_secrets")
	if err != nil {
		return nil, fmt.Errorf("load device secrets: %w", err)
	}
	defer rows.Close()
	m := map[string]string{}
	for rows.Next() {
		var pin, hash string
		if err := rows.Scan(&pin, &hash); err != nil {
			return nil, fmt.Errorf("load device secrets: %w", err)
		}
		m[pin] = hash
	}
	return m, rows.Err()
}

const (
	issueSecretSQL   = "INSERT INTO device_secrets(pin,hash,issued_at) VALUES(?,?,?) ON CONFLICT(pin) DO NOTHING"
	replaceSecretSQL = "INSERT INTO device_secrets(pin,hash,issued_at) VALUES(?,?,?) ON CONFLICT(pin) DO UPDATE SET hash=excluded.hash, issued_at=excluded.issued_at"
)

// IssueSecret stores the hash of pin's device secret. Without replace it stores nothing
// and reports false when the PIN has one already (another attach, maybe at another
// gateway, stored it first).
func (st *base) IssueSecret(ctx context.Context, pin, hash string, replace bool, at time.Time) (bool, error) {
	q := issueSecretSQL
	if replace {
		q = replaceSecretSQL
	}
	var stored bool
	err := st.do(ctx, &op{
		fn: func(tx *wtx) error {
			res, err := tx.exec(q, pin, hash, unixMs(at))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			stored = n > 0
			return err
		},
		pipe: func(b *pgx.Batch, _ *error) {
			b.Queue(st.d.bind(q), pin, hash, unixMs(at)).Exec(func(ct pgconn.CommandTag) error {
				stored = ct.RowsAffected() > 0
				return nil
			})
		},
		single: true,
	})
	if err != nil {
		return false, fmt.Errorf("store the device secret of %s: %w", pin, err)
	}
	return stored, nil
}

// ForgetSecret deletes pin's device secret ("": every PIN's).
func (st *base) ForgetSecret(ctx context.Context, pin string) error {
	q, args := "DELETE FROM device_secrets WHERE pin=?", []any{pin}
	what := pin
	if pin == "" {
		q, args, what = "DELETE FROM device_secrets", nil, "every PIN"
	}
	err := st.do(ctx, &op{
		fn: func(tx *wtx) error {
			_, err := tx.exec(q, args...)
			return err
		},
		pipe:   func(b *pgx.Batch, _ *error) { b.Queue(st.d.bind(q), args...) },
		single: true,
	})
	if err != nil {
		return fmt.Errorf("forget the device secret of %s: %w", what, err)
	}
	return nil
}
