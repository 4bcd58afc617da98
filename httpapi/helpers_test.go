package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
)

type testResponseRecorder = httptest.ResponseRecorder

func newRequest(method, path, body string) *http.Request {
	return httptest.NewRequest(method, path, strings.NewReader(body))
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
