package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// Error classes: the only words about a failure that reach logs and errors.
// A driver or server message may quote an address or, in a script error, a
// key; none is ever passed on.
const (
	classTimeout     = "timeout"
	classUnreachable = "unreachable"
	classClosed      = "closed"
	classServer      = "server_error"
	classBadReply    = "bad_reply"
	classOther       = "other"
)

// classify returns err's class and, for an error reply from the server, its
// code ("READONLY", "OOM", "NOSCRIPT", …) when it is one upper-case word.
func classify(err error) (class, code string) {
	var rerr goredis.Error
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, goredis.ErrPoolTimeout):
		return classTimeout, ""
	case errors.As(err, &nerr) && nerr.Timeout():
		return classTimeout, ""
	case errors.Is(err, goredis.ErrClosed):
		return classClosed, ""
	case errors.Is(err, errBadReply):
		return classBadReply, ""
	case errors.As(err, &rerr):
		return classServer, replyCode(rerr.Error())
	case errors.As(err, &nerr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return classUnreachable, ""
	default:
		return classOther, ""
	}
}

// replyCode is the first word of a server error when it is a code (2 to 20
// upper-case letters), else "".
func replyCode(msg string) string {
	word, _, _ := strings.Cut(msg, " ")
	if len(word) < 2 || len(word) > 20 {
		return ""
	}
	for i := 0; i < len(word); i++ {
		if word[i] < 'A' || word[i] > 'Z' {
			return ""
		}
	}
	return word
}
