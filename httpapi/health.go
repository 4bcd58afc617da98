package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/offload-app/offload"
)

func handleHealth(environment, version string) http.Handler {
	// The answer never changes: encode it once.
	body, err := json.Marshal(struct {
		Status      string `json:"status"`
		Service     string `json:"service"`
		Version     string `json:"version"`
		Environment string `json:"environment"`
	}{"ok", offload.ServiceName, version, environment})
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeRaw(w, http.StatusOK, body)
	})
}
