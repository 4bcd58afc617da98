package postgres

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Redact describes the database a connection string points at for a log
// line or a progress message: postgres://host:port/database, with the
// fallback hosts of a multi-host string. The user, the password and every
// parameter (a password may be one) are left out. A string that does not
// parse gives "postgres://(invalid)".
//
// It reads the string as Open does (pgconn.ParseConfig), so it also accepts
// the key=value form and names the host that PGHOST and the defaults give.
func Redact(connString string) string {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return "postgres://(invalid)"
	}
	hosts := []string{hostPort(cfg.Host, cfg.Port)}
	for _, fb := range cfg.Fallbacks {
		hp := hostPort(fb.Host, fb.Port)
		if hp != hosts[len(hosts)-1] {
			hosts = append(hosts, hp)
		}
	}
	return "postgres://" + strings.Join(hosts, ",") + "/" + url.PathEscape(cfg.Database)
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") { // a Unix socket folder
		return "(socket " + host + ")"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}
