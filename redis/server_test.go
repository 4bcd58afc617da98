package redis_test

import (
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/offload-app/offload/redis/redistest"
)

// server is the test's own redis-server (package redistest).
type server struct{ *redistest.Server }

func startServer(t testing.TB) *server { return &server{redistest.Start(t)} }

func freePort(t testing.TB) int { return redistest.FreePort(t) }

func (s *server) restart(t testing.TB) { s.Restart(t) }

func (s *server) kill() { s.Kill() }

func (s *server) raw(t testing.TB) *goredis.Client { return s.Raw(t) }

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer = redistest.Buffer
