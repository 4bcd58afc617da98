package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"
)

// serverError is an error reply, as go-redis returns them.
type serverError string

func (e serverError) Error() string { return string(e) }
func (serverError) RedisError()     {}

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name      string
		err       error
		wantClass string
		wantCode  string
	}{
		{"deadline", context.DeadlineExceeded, classTimeout, ""},
		{"wrapped_deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), classTimeout, ""},
		{"net_timeout", &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, classTimeout, ""},
		{"pool_timeout", goredis.ErrPoolTimeout, classTimeout, ""},
		{"refused", refused, classUnreachable, ""},
		{"eof", io.EOF, classUnreachable, ""},
		{"closed", goredis.ErrClosed, classClosed, ""},
		{"bad_reply", errBadReply, classBadReply, ""},
		{"readonly", serverError("READONLY You can't write against a read only replica."), classServer, "READONLY"},
		{"script_error_quoting_a_key", serverError("ERR user_script:1: offload:rl:x:abc"), classServer, "ERR"},
		{"lower_case_reply", serverError("weird reply"), classServer, ""},
		{"other", errors.New("something"), classOther, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class, code := classify(tt.err)
			if class != tt.wantClass || code != tt.wantCode {
				t.Errorf("classify = %q, %q; want %q, %q", class, code, tt.wantClass, tt.wantCode)
			}
		})
	}
}
