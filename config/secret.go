package config

import (
	"fmt"
	"io"
	"log/slog"
)

const redacted = "[REDACTED]"

// Format makes every fmt verb and flag (%v, %+v, %#v, %s, %q, %x, %d, …)
// print the redaction marker; String alone would leave some verbs to reflection.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// LogValue keeps slog from printing the key when a Secret is logged directly.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }
