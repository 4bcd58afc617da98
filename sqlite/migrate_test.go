package sqlite

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestEmbeddedMigrationsLoad(t *testing.T) {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || ms[0].Name != "001_python_table.sql" || ms[2].Name != "003_python_compatible.sql" {
		t.Fatalf("migrations %+v", ms)
	}
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for _, tc := range []struct {
		name  string
		files fstest.MapFS
		want  string
	}{
		{"Gap", fstest.MapFS{"migrations/001_a.sql": file, "migrations/003_c.sql": file}, "has version 3, want 2"},
		{"StartsAtTwo", fstest.MapFS{"migrations/002_b.sql": file}, "has version 2, want 1"},
		{"Duplicate", fstest.MapFS{"migrations/001_a.sql": file, "migrations/001_b.sql": file}, "has version 1, want 2"},
		{"Misnamed", fstest.MapFS{"migrations/001_a.sql": file, "migrations/2_b.sql": file}, "not named NNN_name.sql"},
		{"NotSQL", fstest.MapFS{"migrations/001_a.txt": file}, "not named NNN_name.sql"},
		{"Empty", fstest.MapFS{"migrations/.keep": &fstest.MapFile{}}, "not named"},
		{"NoFolder", fstest.MapFS{}, "read migrations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadMigrations(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
	ms, err := loadMigrations(fstest.MapFS{"migrations/001_a.sql": file, "migrations/002_b.sql": file})
	if err != nil || len(ms) != 2 {
		t.Fatalf("good set: %v, %v", ms, err)
	}
}
