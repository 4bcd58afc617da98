package openapi

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestAssetsListedInSpec keeps GET /docs/{asset}'s enum equal to the files
// DocsHandler serves.
func TestAssetsListedInSpec(t *testing.T) {
	var doc struct {
		Paths map[string]struct {
			Get struct {
				Parameters []struct {
					Name   string `json:"name"`
					Schema struct {
						Enum []string `json:"enum"`
					} `json:"schema"`
				} `json:"parameters"`
			} `json:"get"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(Spec(), &doc); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, p := range doc.Paths[DocsPath+"/{asset}"].Get.Parameters {
		if p.Name == "asset" {
			listed = p.Schema.Enum
		}
	}
	var served []string
	for p := range docsFiles() {
		if name, ok := strings.CutPrefix(p, DocsPath+"/"); ok {
			served = append(served, name)
		}
	}
	slices.Sort(listed)
	slices.Sort(served)
	if len(served) == 0 || !slices.Equal(listed, served) {
		t.Errorf("GET /docs/{asset} lists %q, DocsHandler serves %q", listed, served)
	}
}
