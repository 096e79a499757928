// Package controlplane is the router's WebSocket client of the control plane
// (docs/spec.md section 6): hello/config/ack/nack, the last-known-good (LKG) file and the
// jittered exponential reconnect backoff.
package controlplane

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"pingora-parity/go-baseline/internal/config"
)

// LKGFile is the LKG file's name inside the state directory.
const LKGFile = "last-known-good.json"

// CorruptSuffix is appended to an LKG file that fails to parse or validate.
const CorruptSuffix = ".corrupt"

// WriteLKG stores doc as <dir>/last-known-good.json atomically: a temp file in the same
// directory, fsync, rename over the old file, fsync of the directory.
func WriteLKG(dir string, doc []byte) error {
	f, err := os.CreateTemp(dir, LKGFile+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(doc); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, LKGFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadLKG reads and validates <dir>/last-known-good.json (no stale check). A missing file
// gives (nil, nil). A file that cannot be read, parsed or validated is renamed to
// last-known-good.json.corrupt (replacing an older one) and reported as the error, with
// a nil config: the router then starts without a config.
func LoadLKG(dir string) (*config.Config, []byte, error) {
	path := filepath.Join(dir, LKGFile)
	doc, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	var reason error
	if err != nil {
		reason = err
	} else if cfg, verr := config.Validate(doc); verr != nil {
		reason = verr
	} else {
		return cfg, doc, nil
	}
	if rerr := os.Rename(path, path+CorruptSuffix); rerr != nil {
		return nil, nil, fmt.Errorf("%s is invalid (%v) and could not be set aside: %v", path, reason, rerr)
	}
	return nil, nil, fmt.Errorf("%s is invalid (%v); moved to %s", path, reason, LKGFile+CorruptSuffix)
}
