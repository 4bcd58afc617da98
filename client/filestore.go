package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Files of the state directory. Each store has its own small file so a
// corrupt one costs only that store, and all are written 0600.
const (
	InstallIDFile = "install_id.json"
	SessionFile   = "session.json"
	ConsentFile   = "consent.json"
	UsageFile     = "usage.json"

	stateVersion    = 1
	maxStateFileLen = 1 << 20
)

var (
	_ TokenStore   = (*FileTokenStore)(nil)
	_ ConsentStore = (*FileConsentStore)(nil)
	_ UsageCounter = (*FileUsageCounter)(nil)
)

// State is the client's state directory.
type State struct {
	Dir       string
	InstallID string // "" from ReadState when none is stored
	// Temporary is set by TemporaryState: InstallID lives only as long as
	// this process, and the session and counts should not be kept under it.
	Temporary bool
	Tokens    *FileTokenStore
	Consent   *FileConsentStore
	Usage     *FileUsageCounter
}

func newState(dir, installID string) *State {
	return &State{
		Dir:       dir,
		InstallID: installID,
		Tokens:    NewFileTokenStore(filepath.Join(dir, SessionFile)),
		Consent:   NewFileConsentStore(filepath.Join(dir, ConsentFile)),
		Usage:     NewFileUsageCounter(filepath.Join(dir, UsageFile)),
	}
}

// OpenState creates dir (mode 0700) if needed, loads the install id from it
// or makes one (a random UUID, persisted once), and returns the file-backed
// stores that live in it.
func OpenState(dir string) (*State, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	id, err := LoadOrCreateInstallID(filepath.Join(dir, InstallIDFile))
	if err != nil {
		return nil, err
	}
	return newState(dir, id), nil
}

// ReadState is OpenState that creates nothing: with no directory or no
// install id file, InstallID is "". For a caller that only reads or
// removes state, such as State.Forget.
func ReadState(dir string) (*State, error) {
	id, found, err := loadInstallID(filepath.Join(dir, InstallIDFile))
	if err != nil {
		return nil, err
	}
	if !found {
		id = ""
	}
	return newState(dir, id), nil
}

// TemporaryState is the State to carry on with when OpenState fails (the
// directory cannot be created or written, the install id file is corrupt):
// a random install id for this process, the stores on the same files, so a
// readable consent still counts. Callers should keep the session and the
// counts in memory (Temporary is set) rather than under a throwaway id.
func TemporaryState(dir string) *State {
	st := newState(dir, uuid.NewString())
	st.Temporary = true
	return st
}

// LoadOrCreateInstallID returns the install id kept in the file at path,
// creating the file with a new random UUID when there is none. Creation is
// atomic and first-wins, so two processes starting at once agree on one id.
func LoadOrCreateInstallID(path string) (string, error) {
	if id, found, err := loadInstallID(path); err != nil || found {
		return id, err
	}
	data, err := json.Marshal(struct {
		Version   int    `json:"version"`
		InstallID string `json:"install_id"`
	}{stateVersion, uuid.NewString()})
	if err != nil {
		return "", err
	}
	if err := createAtomic(path, data); err != nil {
		return "", err
	}
	id, _, err := loadInstallID(path)
	return id, err
}

func loadInstallID(path string) (id string, found bool, err error) {
	var f struct {
		Version   int    `json:"version"`
		InstallID string `json:"install_id"`
	}
	found, err = readStateFile(path, &f)
	if err != nil || !found {
		return "", found, err
	}
	if f.Version != stateVersion {
		return "", true, &CorruptStateError{Path: path, Reason: "unsupported version"}
	}
	if !runesBetween(f.InstallID, 8, 128) || !printable(f.InstallID, 128) {
		return "", true, &CorruptStateError{Path: path, Reason: "install_id missing or malformed"}
	}
	return f.InstallID, true, nil
}

// FileTokenStore is a TokenStore in one JSON file of mode 0600.
type FileTokenStore struct {
	path string
	mu   sync.Mutex
}

// NewFileTokenStore returns a token store kept at path.
func NewFileTokenStore(path string) *FileTokenStore { return &FileTokenStore{path: path} }

// Path returns the file's path.
func (s *FileTokenStore) Path() string { return s.path }

type sessionFile struct {
	Version   int    `json:"version"`
	Token     string `json:"session_token"`
	ExpiresAt string `json:"expires_at"`
	InstallID string `json:"install_id"`
}

func (s *FileTokenStore) Load() (Session, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f sessionFile
	found, err := readStateFile(s.path, &f)
	if err != nil || !found {
		return Session{}, false, err
	}
	if f.Version != stateVersion {
		return Session{}, false, &CorruptStateError{Path: s.path, Reason: "unsupported version"}
	}
	if f.Token == "" || !printable(f.Token, maxTokenLen) {
		return Session{}, false, &CorruptStateError{Path: s.path, Reason: "session_token missing or malformed"}
	}
	exp, err := time.Parse(time.RFC3339, f.ExpiresAt)
	if err != nil {
		return Session{}, false, &CorruptStateError{Path: s.path, Reason: "expires_at missing or malformed"}
	}
	return Session{Token: Token(f.Token), ExpiresAt: exp.UTC(), InstallID: f.InstallID}, true, nil
}

func (s *FileTokenStore) Save(sess Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.Marshal(sessionFile{
		Version:   stateVersion,
		Token:     string(sess.Token),
		ExpiresAt: sess.ExpiresAt.UTC().Format(time.RFC3339),
		InstallID: sess.InstallID,
	})
	if err != nil {
		return err
	}
	return writeAtomic(s.path, data)
}

func (s *FileTokenStore) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := removeStateFile(s.path)
	return err
}

// removeStateFile removes the file at path durably; a missing file is no
// error, and existed says whether there was one.
func removeStateFile(path string) (existed bool, err error) {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("remove %s: %w", path, err)
	}
	return true, syncDir(filepath.Dir(path))
}

// FileConsentStore is a ConsentStore in one JSON file. A missing file is off.
type FileConsentStore struct {
	path string
	mu   sync.Mutex
}

// NewFileConsentStore returns a consent store kept at path.
func NewFileConsentStore(path string) *FileConsentStore { return &FileConsentStore{path: path} }

// Path returns the file's path.
func (s *FileConsentStore) Path() string { return s.path }

func (s *FileConsentStore) CloudEnabled() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f struct {
		Version int   `json:"version"`
		Enabled *bool `json:"cloud_ai_enabled"`
	}
	found, err := readStateFile(s.path, &f)
	if err != nil || !found {
		return false, err
	}
	if f.Version != stateVersion {
		return false, &CorruptStateError{Path: s.path, Reason: "unsupported version"}
	}
	if f.Enabled == nil {
		return false, &CorruptStateError{Path: s.path, Reason: "cloud_ai_enabled missing"}
	}
	return *f.Enabled, nil
}

func (s *FileConsentStore) SetCloudEnabled(on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, err := json.Marshal(struct {
		Version int  `json:"version"`
		Enabled bool `json:"cloud_ai_enabled"`
	}{stateVersion, on})
	if err != nil {
		return err
	}
	return writeAtomic(s.path, data)
}

// FileUsageCounter is a UsageCounter in one JSON file. Each change reads
// and rewrites the whole (small) file, so a crash loses at most the change
// in flight. Changes from two processes at the same instant may lose one
// increment; the counts are provisional and the server keeps the max.
type FileUsageCounter struct {
	path string
	mu   sync.Mutex
}

// NewFileUsageCounter returns a usage counter kept at path.
func NewFileUsageCounter(path string) *FileUsageCounter { return &FileUsageCounter{path: path} }

// Path returns the file's path.
func (s *FileUsageCounter) Path() string { return s.path }

type usageFile struct {
	Version  int      `json:"version"`
	Features usageMap `json:"features"`
}

func (s *FileUsageCounter) load() (usageMap, error) {
	var f usageFile
	found, err := readStateFile(s.path, &f)
	if err != nil || !found {
		return usageMap{}, err
	}
	if f.Version != stateVersion {
		return nil, &CorruptStateError{Path: s.path, Reason: "unsupported version"}
	}
	for name, c := range f.Features {
		if !runesBetween(name, 1, 64) || c.Local < 0 || c.Mirror < 0 || c.Remaining < 0 {
			return nil, &CorruptStateError{Path: s.path, Reason: "bad feature name or negative count"}
		}
	}
	if f.Features == nil {
		f.Features = usageMap{}
	}
	return f.Features, nil
}

func (s *FileUsageCounter) update(change func(*usageMap) FeatureUsage) (FeatureUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return FeatureUsage{}, err
	}
	u := change(&m)
	data, err := json.Marshal(usageFile{Version: stateVersion, Features: m})
	if err != nil {
		return FeatureUsage{}, err
	}
	if err := writeAtomic(s.path, data); err != nil {
		return FeatureUsage{}, err
	}
	return u, nil
}

func (s *FileUsageCounter) Increment(feature string) (FeatureUsage, error) {
	return s.update(func(m *usageMap) FeatureUsage { return m.increment(feature) })
}

func (s *FileUsageCounter) RaiseMirror(feature string, rec Reconciliation) (FeatureUsage, error) {
	return s.update(func(m *usageMap) FeatureUsage { return m.raise(feature, rec) })
}

// Clear removes the file.
func (s *FileUsageCounter) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := removeStateFile(s.path)
	return err
}

func (s *FileUsageCounter) Get(feature string) (FeatureUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return FeatureUsage{}, err
	}
	return m.get(feature), nil
}

func (s *FileUsageCounter) All() ([]FeatureUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	return m.all(), nil
}

// readStateFile decodes the JSON file at path into v. A missing file is
// (false, nil); an unreadable one an I/O error; an empty, oversized or
// undecodable one a *CorruptStateError.
func readStateFile(path string, v any) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		// ENOTDIR: a parent is a file, so there is no such file either.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFileLen+1))
	if err != nil {
		return false, fmt.Errorf("read state: %w", err)
	}
	switch {
	case len(data) == 0:
		return true, &CorruptStateError{Path: path, Reason: "empty file"}
	case len(data) > maxStateFileLen:
		return true, &CorruptStateError{Path: path, Reason: "file too large"}
	case decodeJSON(data, v) != nil:
		return true, &CorruptStateError{Path: path, Reason: "not valid JSON of the expected shape"}
	}
	return true, nil
}

// writeAtomic replaces the file at path with data, mode 0600: it writes a
// temp file in the same directory, syncs it, renames it over path and syncs
// the directory. A crash leaves either the old or the new file, plus at
// worst a stray temp file that readers never look at.
func writeAtomic(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

// createAtomic is writeAtomic that never replaces an existing file: the
// synced temp file is hard-linked into place, which fails if path exists.
func createAtomic(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write state: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(path string, data []byte) (string, error) {
	// CreateTemp makes the file 0600, which is what every state file wants.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write state: %w", err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write state: %w", werr)
	}
	return f.Name(), nil
}

// syncDir makes a rename or remove in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be opened for sync there
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync state dir: %w", err)
	}
	return nil
}
