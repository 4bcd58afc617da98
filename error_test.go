package offload

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestErrorCode(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&Error{Code: CodeConsentRequired}, CodeConsentRequired},
		{fmt.Errorf("wrapped: %w", &Error{Code: CodeValidation}), CodeValidation},
		{&ProviderError{Failure: ProviderTimeout}, CodeProviderTimeout},
		{&ProviderError{Failure: ProviderUnavailable}, CodeProviderUnavailable},
		{&ProviderError{Failure: ProviderRequestFailed}, CodeProviderRequestFailed},
		{&ProviderError{Failure: ProviderInvalidResponse}, CodeProviderInvalidResponse},
		{fmt.Errorf("commit: %w", ErrStorage), CodeStorageUnavailable},
		{context.Canceled, CodeInternal},
		{errors.New("boom"), CodeInternal},
	}
	for _, tt := range tests {
		if got := ErrorCode(tt.err); got != tt.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestClaimsContext(t *testing.T) {
	if _, ok := ClaimsFrom(context.Background()); ok {
		t.Fatal("claims in an empty context")
	}
	c := Claims{InstallID: "install-1"}
	got, ok := ClaimsFrom(WithClaims(context.Background(), c))
	if !ok || got != c {
		t.Fatalf("got %+v, %v", got, ok)
	}
}
