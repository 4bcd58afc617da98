package offload

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestProviderCanceled(t *testing.T) {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	late, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name  string
		ctx   context.Context
		code  string
		class string
		cause error
	}{
		{"client left", gone, CodeProviderRequestFailed, "canceled", context.Canceled},
		{"deadline", late, CodeProviderTimeout, "deadline", context.DeadlineExceeded},
		{"ctx still live", context.Background(), CodeProviderRequestFailed, "canceled", context.Canceled},
	}
	for _, tt := range tests {
		err := ProviderCanceled(tt.ctx, "openai", "canceled", 2)
		var pe *ProviderError
		if !errors.As(err, &pe) || ErrorCode(err) != tt.code || pe.Class != tt.class || pe.Provider != "openai" || pe.Attempts != 2 || !errors.Is(err, tt.cause) {
			t.Errorf("%s: %v (%+v), want code %s class %s cause %v", tt.name, err, pe, tt.code, tt.class, tt.cause)
		}
	}
}

func TestTokenCount(t *testing.T) {
	for in, want := range map[int64]int{-5: 0, 0: 0, 42: 42, math.MaxInt64: math.MaxInt32} {
		if got := TokenCount(in); got != want {
			t.Errorf("TokenCount(%d) = %d, want %d", in, got, want)
		}
	}
}
