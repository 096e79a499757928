package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/design-go.md's package table names every package of the module with exactly its
// non-test files, so the table stays true to the tree.
func TestDesignDocPackageTable(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "..", "docs", "design-go.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `((?:internal|cmd)/[a-z]+)` \\(([^)]*)\\) \\|")
	documented := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		var files []string
		for _, f := range strings.Split(m[2], ",") {
			files = append(files, strings.Trim(strings.TrimSpace(f), "`"))
		}
		slices.Sort(files)
		documented[m[1]] = files
	}
	if len(documented) < 10 {
		t.Fatalf("found %d package rows in docs/design-go.md", len(documented))
	}
	actual := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		actual[filepath.ToSlash(dir)] = append(actual[filepath.ToSlash(dir)], filepath.Base(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir, files := range actual {
		slices.Sort(files)
		if !slices.Equal(documented[dir], files) {
			t.Errorf("%s: the table says %v, the tree has %v", dir, documented[dir], files)
		}
	}
	for dir := range documented {
		if actual[dir] == nil {
			t.Errorf("%s is in the table but not in the tree", dir)
		}
	}
}
