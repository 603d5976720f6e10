package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/statedir"
)

// secretsName is the file in Options.Dir where the fleet keeps its handsets' device
// secrets: one "PIN SECRET" line per secret issued, the last line of a PIN standing. The
// fleet's handsets keep no journal of their own (a thousand would cost a thousand files),
// so this is what makes a restarted fleet the same devices to the gateway.
const secretsName = "device-secrets"

// secretFile is the fleet's device secrets, appended to as the gateway issues them.
type secretFile struct {
	path  string
	lock  *os.File // statedir.Lock on the directory: one fleet appends to the file
	mu    sync.Mutex
	f     *os.File
	byPIN map[string]string
}

// openSecrets locks dir for this fleet, reads its device secrets, rewrites the file as one
// line per PIN, and opens it for appending. A second fleet on the same dir is refused.
func openSecrets(dir string) (_ *secretFile, err error) {
	if err := statedir.Mkdir(dir); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	lock, err := statedir.Lock(dir)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	sf := &secretFile{path: filepath.Join(dir, secretsName), lock: lock, byPIN: map[string]string{}}
	lines := 0
	if f, err := os.Open(sf.path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			pin, secret, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			if p, valid := handset.NormalizePIN(pin); ok && valid && secret != "" {
				sf.byPIN[p] = secret
			}
			lines++
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("fleet: read %s: %w", sf.path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if lines > len(sf.byPIN) {
		if err := sf.compact(); err != nil {
			return nil, err
		}
	}
	f, err := statedir.OpenFile(sf.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	sf.f = f
	return sf, nil
}

// compact rewrites the file as one line per PIN, swapped in by a rename.
func (sf *secretFile) compact() error {
	tmp := sf.path + ".tmp"
	f, err := statedir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	w := bufio.NewWriter(f)
	for pin, secret := range sf.byPIN {
		fmt.Fprintf(w, "%s %s\n", pin, secret)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, sf.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fleet: rewrite %s: %w", sf.path, err)
	}
	return nil
}

// get returns the secret kept for pin, "" when none.
func (sf *secretFile) get(pin string) string {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return sf.byPIN[pin]
}

// keep appends pin's new secret, in one write.
func (sf *secretFile) keep(pin, secret string) error {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if _, err := sf.f.WriteString(pin + " " + secret + "\n"); err != nil {
		return fmt.Errorf("fleet: keep the device secret of %s in %s: %w", pin, sf.path, err)
	}
	sf.byPIN[pin] = secret
	return nil
}

func (sf *secretFile) close() error {
	if sf == nil || sf.f == nil {
		return nil
	}
	err := sf.f.Close()
	sf.f = nil
	return errors.Join(err, sf.lock.Close()) // after the last write
}
