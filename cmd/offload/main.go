// Command offload is the Offload app in a terminal: it breaks tasks down on
// the device, or with the user's consent in the cloud, keeps the anonymous
// session and the provisional usage counts, and checks a deployment end to
// end (offload doctor). Run "offload --help" for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
