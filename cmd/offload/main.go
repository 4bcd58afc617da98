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
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(interrupted{sig}) // run says "interrupted" and returns 130
		<-sigs
		os.Exit(interruptedCode(ctx)) // a second Ctrl-C does not wait for the clean-up
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
